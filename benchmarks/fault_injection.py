"""Kill a phantom2d training run at many points and check that every restarted run ends bitwise equal to an
uninterrupted one (weights, optimizer state, model.pt, best epoch, files left in the checkpoint folder).

    python benchmarks/fault_injection.py --trials 10 --kills-per-trial 3 --max-epochs 20

Each trial chains ``--kills-per-trial`` kills (a random moment of the run, then alternately a kill inside one of
the restarted run's first saves -- half of the temporary file written, or just after the rename -- and another
random moment; ``tests.engine.fault_injection.random_kill_points``) and then lets the run finish.
Prints one line per trial and the totals: kill points tried, how many hit a running process, how many runs
ended equal. Same thread count as the reference run (this process's environment); CPU only.
"""

import argparse
import dataclasses
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.engine.fault_injection import (  # noqa: E402
    differences,
    final_state,
    random_kill_points,
    run_with_kills,
    timed,
    train_command,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--kills-per-trial", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--val-interval", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()

    from medseg_dropclass.data.phantoms import DEFAULT_2D, make_phantom_dataset

    work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="fault_injection_"))
    data = work / "data"
    if not (data / "dataset.json").is_file():
        make_phantom_dataset(
            str(data), dataclasses.replace(DEFAULT_2D, size=48, num_train=10, num_test=2, num_shifted=2), progress=False
        )
    options = {"max_epochs": args.max_epochs, "val_interval": args.val_interval, "batch_size": 2}
    duration = timed(train_command(data, work / "straight", **options))
    reference = final_state(work / "straight")
    saves = args.max_epochs + args.max_epochs // args.val_interval
    print(
        f"reference run: {duration:.1f} s, {reference['iteration']} iterations, model.pt from epoch {reference['best']['best_epoch']}"
    )

    tried = killed = equal = 0
    start = time.perf_counter()
    for trial in range(args.trials):
        points = random_kill_points(args.kills_per_trial, duration, saves, seed=args.seed * 1000 + trial)
        log = run_with_kills(train_command(data, work / f"trial{trial}", **options), points)
        problems = differences(reference, final_state(work / f"trial{trial}"))
        tried += len(points)
        killed += sum("killed" in line for line in log)
        equal += not problems
        print(
            f"trial {trial}: {'; '.join(log)} -> {'bitwise equal' if not problems else 'DIFFERS: ' + ', '.join(problems[:3])}"
        )
    print(
        f"\n{tried} kill points tried, {killed} hit a running process; {equal}/{args.trials} restarted runs bitwise equal "
        f"to the uninterrupted one ({time.perf_counter() - start:.0f} s; runs in {work})"
    )
    sys.exit(0 if equal == args.trials else 1)


if __name__ == "__main__":
    main()
