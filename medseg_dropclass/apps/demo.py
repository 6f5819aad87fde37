"""The README's demo: ``compare`` with two arms (baseline and the bundle's DropClass) and one seed.

Generates the embedded 2D phantoms, trains both arms of the ``phantom2d_dropclass`` bundle (the same
network and seed, ``dropclass`` switched off for the baseline) for two thirds of the bundle's budget (80 of its
120 epochs), both at once with one thread each, so that the demo ends within 5 minutes on 2 cores (``--max-epochs
120`` for the full recipe), evaluates both with the bundle's one
evaluator on every labelled test split (in distribution and context-shifted), and writes the
per-class report next to the TensorBoard logs. One seed: an illustration of the pipeline, not
evidence about DropClass (the multi-seed study is ``compare``, docs/RESULTS.md).
"""

import argparse
import pathlib
from typing import List, Optional

__all__ = ["DEMO_ARMS", "DEMO_MAX_EPOCHS", "DEMO_JOBS", "run_demo"]

# the recipe's baseline and the paper's DropClass on top of it (the variants and controls are in compare)
DEMO_ARMS = ("baseline", "dropclass")
# two thirds of the bundle's 120 epochs, both arms trained side by side (one thread each: ~1.75x faster than one
# after the other on 2 cores): both arms, both 300-case test splits and the figures in under 5 minutes on 2 cores
DEMO_MAX_EPOCHS = 80
DEMO_JOBS = 2


def run_demo(
    output_dir: str = "outputs/demo",
    max_epochs: int = DEMO_MAX_EPOCHS,
    seed: int = 0,
    figures: bool = True,
    dataset_dir: Optional[str] = None,
    jobs: int = DEMO_JOBS,
) -> pathlib.Path:
    """Train, evaluate and report both arms for ``max_epochs`` each (``dataset_dir``: a
    phantom dataset in the Decathlon layout, default the embedded phantoms generated into ``output_dir``); return
    ``report.md``."""
    from medseg_dropclass.study.compare import run_study, write_figures
    from medseg_dropclass.study.report import write_report

    results = run_study(output_dir, DEMO_ARMS, [seed], max_epochs, dataset_dir, jobs=jobs)
    report = write_report(
        results, output_dir, title=f"Demo: baseline vs DropClass on the 2D phantoms, one seed, {max_epochs} epochs"
    )
    if figures:
        write_figures(results, output_dir)
    print(report.read_text())
    return report


def demo_main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass demo", description=__doc__)
    parser.add_argument(
        "--output-dir", default="outputs/demo", help="the study folder: runs, report.md, TensorBoard logs"
    )
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=DEMO_MAX_EPOCHS,
        help=f"epochs per arm (default {DEMO_MAX_EPOCHS} of the bundle's 120, to end within 5 minutes on 2 cores)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the one seed of both arms")
    parser.add_argument("--no-figures", action="store_true", help="skip the similarity heatmaps and Grad-CAM overlays")
    parser.add_argument(
        "--dataset-dir",
        default=None,
        help="phantoms of your own (make_phantoms.py) instead of the embedded default set",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=DEMO_JOBS,
        help="arms trained side by side (default %(default)s; 1: one after the other)",
    )
    args = parser.parse_args(argv)
    if args.max_epochs < 1 or args.jobs < 1:
        parser.error(f"--max-epochs and --jobs must be >= 1, got {args.max_epochs} and {args.jobs}")
    report = run_demo(args.output_dir, args.max_epochs, args.seed, not args.no_figures, args.dataset_dir, args.jobs)
    out = report.parent
    print(f"\nreport:      {report}\nresults:     {out / 'results.json'}\nruns:        {out}/<arm>/seed{args.seed}/run")
    print(f"tensorboard: tensorboard --logdir {out}   (then open http://localhost:6006)")
