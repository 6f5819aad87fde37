"""The README's demo: both arms of the ``phantom2d_dropclass`` bundle, side by side, on the embedded 2D phantoms.

Runs MONAI's bundle workflow in this process: generates the phantom dataset, trains the DropClass
arm and the baseline arm (the same network and seed, ``dropclass`` switched off), evaluates both on
the in-distribution and the context-shifted test split, and writes a per-class Dice/IoU report
next to the TensorBoard logs. One seed and a short budget: an illustration of the pipeline, not
evidence about DropClass (the multi-seed study is separate).
"""

import argparse
import csv
import json
import pathlib
import time
from typing import Dict, List, Optional


__all__ = ["run_demo", "read_metrics"]

BUNDLE = pathlib.Path(__file__).resolve().parents[1] / "bundles" / "phantom2d_dropclass" / "configs"
ARMS = {"baseline": False, "dropclass": True}
SPLITS = ("test", "test_shifted")


def read_metrics(path: pathlib.Path) -> Dict[str, float]:
    """``metrics.csv`` written by MONAI's ``MetricsSaver`` -> ``{name: value}``."""
    with path.open() as handle:
        return {row[0]: float(row[1]) for row in csv.reader(handle) if len(row) == 2}


def run_demo(output_dir: str = "outputs/demo", max_epochs: int = 60, seed: int = 0) -> pathlib.Path:
    """Train, evaluate and report both arms; return the path of ``report.md``."""
    from monai.bundle import run

    from medseg_dropclass.data import PHANTOM_CLASSES, decathlon_class_counts

    out = pathlib.Path(output_dir).resolve()
    dataset_dir = out / "data" / "phantom2d"
    train, evaluate = str(BUNDLE / "train.yaml"), str(BUNDLE / "evaluate.yaml")
    val_interval = max(1, min(10, max_epochs // 6 or max_epochs))  # validate several times, and at the last epoch
    while max_epochs % val_interval:
        val_interval -= 1
    common = {
        "dataset_dir": str(dataset_dir),
        "max_epochs": max_epochs,
        "val_interval": val_interval,
        "seed": seed,
        "bundle_root": str(BUNDLE.parent),
    }
    seconds = {}
    for arm, dropclass in ARMS.items():
        arm_dir = out / arm
        start = time.perf_counter()
        run(config_file=train, output_dir=str(arm_dir), dropclass=dropclass, **common)
        seconds[arm] = time.perf_counter() - start
        for split in SPLITS:
            run(config_file=[train, evaluate], output_dir=str(arm_dir), dropclass=dropclass, eval_split=split, **common)
        print(f"{arm}: trained {max_epochs} epochs in {seconds[arm]:.0f} s", flush=True)

    metrics = {arm: {split: read_metrics(out / arm / f"eval_{split}" / "metrics.csv") for split in SPLITS} for arm in ARMS}
    counts = decathlon_class_counts(dataset_dir / "dataset.json")["counts"]
    share = {name: float(counts[k] / counts.sum()) for k, name in enumerate(PHANTOM_CLASSES)}
    lines = [
        "# DropClass demo: phantom2d_dropclass, both arms (one seed, short budget: an illustration, not evidence)",
        "",
        f"2D UNet, {max_epochs} epochs per arm on the embedded phantoms; DropClass with the bundle's defaults "
        "(alpha = 1, p linear 0 -> 1, uniform class sampling; the paper's alpha = 10 collapsed a class in 1 of 3 "
        "seeds, docs/RESULTS.md). `test`: in-distribution; `shifted`: lesions "
        "outside their usual host organ. Training time: "
        + ", ".join(f"{arm} {seconds[arm]:.0f} s" for arm in ARMS)
        + ".",
        "",
        "| class | train share | Dice base | Dice DropClass | IoU base | IoU DropClass | Dice base (shifted) | Dice DropClass (shifted) | IoU base (shifted) | IoU DropClass (shifted) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in PHANTOM_CLASSES:
        cells = [
            f"{metrics[arm][split][f'{kind}/{name}']:.3f}"
            for split in SPLITS
            for kind in ("dice", "iou")
            for arm in ARMS
        ]
        lines.append(f"| {name} | {100 * share[name]:.3f}% | " + " | ".join(cells) + " |")
    lines.append(
        "| **mean (foreground)** | | "
        + " | ".join(
            f"{metrics[arm][split]['val_mean_dice' if kind == 'dice' else 'mean_iou']:.3f}"
            for split in SPLITS
            for kind in ("dice", "iou")
            for arm in ARMS
        )
        + " |"
    )
    lines += [
        "",
        "A class scored 0.000 was not segmented at all. TensorBoard logs (loss terms, p, dropped classes,",
        f"per-class validation metrics, overlays, class-weight similarity): `tensorboard --logdir {out}`.",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"class_share": share, "seconds": seconds, "metrics": metrics}, indent=2))
    print("\n".join(lines))
    return report


def demo_main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass demo", description=__doc__)
    parser.add_argument("--output-dir", default="outputs/demo")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.max_epochs < 1:
        parser.error(f"--max-epochs must be >= 1, got {args.max_epochs}")
    report = run_demo(args.output_dir, args.max_epochs, args.seed)
    out = report.parent
    print(f"\nreport:      {report}\nresults:     {out / 'results.json'}\ncheckpoints: {out}/<arm>/checkpoints")
    print(f"tensorboard: tensorboard --logdir {out}   (then open http://localhost:6006)")
