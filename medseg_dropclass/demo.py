"""A short side-by-side run on the embedded 2D phantoms: the same UNet with DropClass and without.

Generates the default 2D phantom dataset (Decathlon layout, NIfTI), trains both arms for the same
iterations on the same crops, evaluates both on the in-distribution and the context-shifted test
splits, and writes a per-class IoU/Dice report. One seed and a short budget: an illustration of the
pipeline, not evidence about DropClass (the multi-seed study is separate).
"""

import argparse
import json
import math
import pathlib
import time
from typing import Dict, List, Optional

import torch
from monai.data import DataLoader
from tqdm import tqdm

from medseg_dropclass.data import DEFAULT_2D, PHANTOM_CLASSES, decathlon_dataset, make_phantom_dataset
from medseg_dropclass.losses import DropClassLoss
from medseg_dropclass.metrics import confusion_matrix, summarize
from medseg_dropclass.networks import build_network
from medseg_dropclass.sampling import DropClassSampler
from medseg_dropclass.schedules import LinearSchedule

__all__ = ["train_arm", "evaluate", "run_demo"]

NETWORK = {"feature_channels": 16, "channels": (16, 32, 64, 128), "strides": (2, 2, 2)}
BATCH = 8  # whole 96x96 images: the UNet's instance norm then sees the same statistics as at evaluation


def train_arm(dataset, dropclass: bool, iterations: int, seed: int, alpha: float) -> torch.nn.Module:
    """Train one arm for ``iterations`` steps on batches of ``dataset``."""
    torch.manual_seed(seed)
    num_classes = len(PHANTOM_CLASSES)
    net = build_network("unet", 2, 1, num_classes, dropclass=dropclass, **NETWORK)
    loss_fn = DropClassLoss(alpha=alpha)
    sampler, schedule = DropClassSampler(num_classes, seed=seed), LinearSchedule()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, generator=generator, num_workers=0, drop_last=True)
    net.train()
    step = 0
    bar = tqdm(total=iterations, desc="DropClass" if dropclass else "baseline ", leave=False)
    while step < iterations:
        for batch in loader:
            if step >= iterations:
                break
            progress = schedule(step, iterations) if dropclass else 0.0
            drop_class = sampler(progress) if dropclass else None
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(batch["image"], drop_class=drop_class), batch["label"], progress=progress)
            loss.backward()
            optimizer.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", p=f"{progress:.2f}")
    bar.close()
    return net


def evaluate(net: torch.nn.Module, dataset) -> Dict[str, Dict[str, float]]:
    """Per-class IoU/Dice over a whole split (one confusion matrix)."""
    net.eval()
    matrix = torch.zeros(len(PHANTOM_CLASSES), len(PHANTOM_CLASSES), dtype=torch.long)
    with torch.no_grad():
        for sample in dataset:
            prediction = net(sample["image"][None]).argmax(1)
            matrix += confusion_matrix(prediction, sample["label"][:, ...].long(), len(PHANTOM_CLASSES))
    return summarize(matrix, PHANTOM_CLASSES)


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def run_demo(output_dir: str = "outputs/demo", iterations: int = 400, seed: int = 0, alpha: float = 10.0) -> pathlib.Path:
    """Generate data, train and evaluate both arms, write ``report.md`` and ``results.json``."""
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset_json = make_phantom_dataset(str(out / "phantom2d"), DEFAULT_2D, progress=False)
    train = decathlon_dataset(dataset_json, "training", train=True, pixdim=DEFAULT_2D.spacing)
    tests = {
        split: decathlon_dataset(dataset_json, split, train=False, pixdim=DEFAULT_2D.spacing)
        for split in ("test", "test_shifted")
    }
    share = {}
    counts = torch.zeros(len(PHANTOM_CLASSES))
    for item in decathlon_dataset(dataset_json, "training", train=False, pixdim=DEFAULT_2D.spacing):
        counts += torch.bincount(item["label"].long().reshape(-1), minlength=len(PHANTOM_CLASSES))
    share = {name: float(counts[k] / counts.sum()) for k, name in enumerate(PHANTOM_CLASSES)}

    results: Dict[str, dict] = {}
    for dropclass in (False, True):
        arm = "dropclass" if dropclass else "baseline"
        start = time.perf_counter()
        net = train_arm(train, dropclass, iterations, seed, alpha)
        seconds = time.perf_counter() - start
        results[arm] = {"train_seconds": seconds, **{split: evaluate(net, data) for split, data in tests.items()}}
        print(f"{arm:>9}: {iterations} iterations in {seconds:.1f} s")

    lines = [
        "# DropClass demo on the 2D phantoms (one seed, short budget: an illustration, not evidence)",
        "",
        f"UNet {NETWORK['channels']}, {iterations} iterations of batch {BATCH} (whole images, flips) per arm, "
        f"DropClass alpha={alpha}, p linear 0 -> 1. Test splits: in-distribution and context-shifted "
        "(lesions outside their usual host organ).",
        "",
        "| class | train share | IoU base (test) | IoU DropClass (test) | IoU base (shifted) | IoU DropClass (shifted) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in PHANTOM_CLASSES:
        cells = [_cell(results[arm][split][name]["iou"]) for split in ("test", "test_shifted") for arm in ("baseline", "dropclass")]
        lines.append(f"| {name} | {100 * share[name]:.3f}% | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Dice per class is in results.json. At this budget plain cross-entropy learns the organs but not the",
        "lesions (0.02-0.4% of the pixels) in either arm; the rare classes need longer training or a loss",
        "that weights them (see the study for budgets, Dice+CE and class-weighted baselines).",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"class_share": share, "iterations": iterations, **results}, indent=2))
    print("\n".join(lines))
    return report


def demo_main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass demo", description=__doc__)
    parser.add_argument("--output-dir", default="outputs/demo")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    report = run_demo(args.output_dir, args.iterations, args.seed, args.alpha)
    print(f"\nreport:  {report}\nresults: {report.parent / 'results.json'}\ndata:    {report.parent / 'phantom2d'}")
