"""The README's demo: ``compare`` with two arms (baseline and the bundle's DropClass) and one seed.

Generates the embedded 2D phantoms, trains both arms of the ``phantom2d_dropclass`` bundle (the same
network and seed, ``dropclass`` switched off for the baseline), evaluates both with the bundle's one
evaluator on every labelled test split (in distribution and context-shifted), and writes the
per-class report next to the TensorBoard logs. One seed: an illustration of the pipeline, not
evidence about DropClass (the multi-seed study is ``compare``, docs/RESULTS.md).
"""

import argparse
import pathlib
from typing import List, Optional

__all__ = ["DEMO_ARMS", "run_demo"]

# the bundle's defaults: the baseline, and DropClass with alpha = 1 (the paper's alpha = 10 collapsed a class, docs/RESULTS.md)
DEMO_ARMS = ("baseline", "dropclass_alpha1")


def run_demo(output_dir: str = "outputs/demo", max_epochs: int = 60, seed: int = 0, figures: bool = True) -> pathlib.Path:
    """Train, evaluate and report both arms; return the path of ``report.md``."""
    from medseg_dropclass.analysis.compare import run_study, write_figures, write_report

    results = run_study(output_dir, DEMO_ARMS, [seed], max_epochs)
    report = write_report(results, output_dir)
    if figures:
        write_figures(results, output_dir)
    text = report.read_text()
    header = (
        "> One seed and a short budget: an illustration of the pipeline, not evidence (no interval can be given "
        "with one seed). The multi-seed study is `python -m medseg_dropclass compare`, docs/RESULTS.md.\n\n"
    )
    report.write_text(header + text)
    print(header + text)
    return report


def demo_main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass demo", description=__doc__)
    parser.add_argument("--output-dir", default="outputs/demo")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-figures", action="store_true", help="skip the similarity heatmaps and Grad-CAM overlays")
    args = parser.parse_args(argv)
    if args.max_epochs < 1:
        parser.error(f"--max-epochs must be >= 1, got {args.max_epochs}")
    report = run_demo(args.output_dir, args.max_epochs, args.seed, not args.no_figures)
    out = report.parent
    print(f"\nreport:      {report}\nresults:     {out / 'results.json'}\nruns:        {out}/<arm>/seed{args.seed}/run")
    print(f"tensorboard: tensorboard --logdir {out}   (then open http://localhost:6006)")
