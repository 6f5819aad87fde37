"""Every broken dataset of the corpus (``tests/data/broken_datasets.py``) through the 2D and the 3D phantom bundle,
repeated: each training must end with exit 1 and a last ``error:`` line naming the file and the problem. Counts
exits of 134 (an abort after the message: ITK still reading in a cache thread) separately.

    python benchmarks/broken_datasets.py --repeats 5
"""

import argparse
import collections
import dataclasses
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.data.broken_datasets import PROBLEMS, break_dataset, judge, train_on  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--spatial-dims", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    args = parser.parse_args()

    from tqdm import tqdm

    from medseg_dropclass.data.phantoms import DEFAULT_2D, DEFAULT_3D, make_phantom_dataset

    work = pathlib.Path(tempfile.mkdtemp(prefix="broken_datasets_"))
    sources = {}
    for dims, config in (
        (2, dataclasses.replace(DEFAULT_2D, size=48, num_train=6, num_test=2, num_shifted=2)),
        (3, dataclasses.replace(DEFAULT_3D, size=32, num_train=3, num_test=1, num_shifted=1)),
    ):
        if dims in args.spatial_dims:
            sources[dims] = work / f"phantom{dims}d"
            make_phantom_dataset(str(sources[dims]), config, progress=False)
    outcomes = collections.Counter()
    failures = []
    start = time.perf_counter()
    runs = [
        (dims, problem, repeat)
        for dims in args.spatial_dims
        for problem in args.problems
        for repeat in range(args.repeats)
    ]
    for dims, problem, repeat in tqdm(runs, desc="trainings", unit="run"):
        case = work / f"{dims}d_{problem}_{repeat}"
        named = break_dataset(sources[dims], case / "data", problem)
        done = train_on(case / "data", case / "out", dims)
        verdict = judge(done, named, PROBLEMS[problem], dims)
        outcomes[(dims, "exit 134" if done.returncode == 134 else "ok" if not verdict else "wrong")] += 1
        if verdict:
            failures.append(f"{dims}D {problem} #{repeat}: {verdict}")
    print(
        f"\n{len(runs)} trainings in {time.perf_counter() - start:.0f} s ({len(args.problems)} problems x {args.repeats} repeats x "
        f"{len(args.spatial_dims)} bundles)"
    )
    for dims in args.spatial_dims:
        print(
            f"  {dims}D: {outcomes[(dims, 'ok')]} ended with exit 1 and the file and problem last; "
            f"{outcomes[(dims, 'exit 134')]} exits of 134; {outcomes[(dims, 'wrong')]} other"
        )
    for line in failures:
        print(f"  {line}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
