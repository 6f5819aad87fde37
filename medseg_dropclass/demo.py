"""A short side-by-side run: the same UNet trained with DropClass and without, on generated 2D data.

The data are drawn on the fly: a background, two large "organs" and a rare "lesion" that sits
inside the first organ in 90% of the images. Both arms see the same images in the same order.
"""

import json
import math
import pathlib
import time
from typing import Dict, List, Tuple

import torch
from tqdm import tqdm

from medseg_dropclass.losses import DropClassLoss
from medseg_dropclass.metrics import confusion_matrix, summarize
from medseg_dropclass.networks import build_network
from medseg_dropclass.sampling import DropClassSampler
from medseg_dropclass.schedules import LinearSchedule

__all__ = ["generate_images", "train_arm", "run_demo"]

CLASS_NAMES = ["background", "organ_a", "organ_b", "lesion"]


def generate_images(count: int, size: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(count, 1, size, size)`` images and ``(count, size, size)`` labels with a rare class 3."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    images = torch.zeros(count, 1, size, size)
    labels = torch.zeros(count, size, size, dtype=torch.long)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=g))

    for i in range(count):
        label = labels[i]
        ca = (uniform(0.3, 0.45) * size, uniform(0.3, 0.5) * size)
        ra = (uniform(0.18, 0.24) * size, uniform(0.14, 0.2) * size)
        organ_a = ((yy - ca[0]) / ra[0]) ** 2 + ((xx - ca[1]) / ra[1]) ** 2 <= 1
        cb = (uniform(0.65, 0.8) * size, uniform(0.6, 0.8) * size)
        organ_b = ((yy - cb[0]) ** 2 + (xx - cb[1]) ** 2) <= (uniform(0.1, 0.14) * size) ** 2
        label[organ_a] = 1
        label[organ_b] = 2
        host = ca if float(torch.rand((), generator=g)) < 0.9 else (uniform(0.1, 0.9) * size, uniform(0.1, 0.9) * size)
        lesion = ((yy - host[0]) ** 2 + (xx - host[1]) ** 2) <= (uniform(0.03, 0.05) * size) ** 2
        label[lesion] = 3
        intensity = torch.tensor([0.0, 1.0, 0.6, 1.5])[label] * uniform(0.8, 1.2)
        images[i, 0] = intensity + 0.35 * torch.randn(size, size, generator=g)
    return images, labels


def train_arm(
    dropclass: bool, images: torch.Tensor, labels: torch.Tensor, iterations: int, batch: int, seed: int, alpha: float
) -> Tuple[torch.nn.Module, float]:
    """Train one arm; returns the network and the wall time in seconds."""
    torch.manual_seed(seed)
    net = build_network(
        "unet", 2, 1, len(CLASS_NAMES), dropclass=dropclass, feature_channels=16, channels=(16, 32, 64), strides=(2, 2)
    )
    loss_fn = DropClassLoss(alpha=alpha)
    sampler, schedule = DropClassSampler(len(CLASS_NAMES), seed=seed), LinearSchedule()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(seed)
    net.train()
    start = time.perf_counter()
    progress_bar = tqdm(range(iterations), desc="dropclass" if dropclass else "baseline ", leave=False)
    for step in progress_bar:
        index = torch.randint(0, images.shape[0], (batch,), generator=order)
        progress = schedule(step, iterations) if dropclass else 0.0
        drop_class = sampler(progress) if dropclass else None
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(images[index], drop_class=drop_class), labels[index], progress=progress)
        loss.backward()
        optimizer.step()
        progress_bar.set_postfix(loss=f"{loss.item():.3f}", p=f"{progress:.2f}")
    return net, time.perf_counter() - start


def evaluate(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, Dict[str, float]]:
    net.eval()
    with torch.no_grad():
        prediction = net(images).argmax(1)
    return summarize(confusion_matrix(prediction, labels, len(CLASS_NAMES)), CLASS_NAMES)


def _format(value: float) -> str:
    return "  n/a" if math.isnan(value) else f"{value:.3f}"


def run_demo(output_dir: str = "outputs/demo", iterations: int = 150, seed: int = 0, alpha: float = 10.0) -> pathlib.Path:
    """Train both arms briefly, evaluate them, write ``report.md`` and ``results.json``; return the report path."""
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = generate_images(48, 64, seed)
    test_images, test_labels = generate_images(16, 64, seed + 1000)
    results = {}
    for dropclass in (False, True):
        arm = "dropclass" if dropclass else "baseline"
        net, seconds = train_arm(dropclass, train_images, train_labels, iterations, 8, seed, alpha)
        results[arm] = {"seconds": seconds, "classes": evaluate(net, test_images, test_labels)}
        print(f"{arm:>9}: trained {iterations} iterations in {seconds:.1f} s")
    share = {name: float((train_labels == k).float().mean()) for k, name in enumerate(CLASS_NAMES)}
    lines = [
        "# DropClass demo (generated 2D data, one seed: an illustration, not evidence)",
        "",
        f"{iterations} iterations per arm, UNet, alpha={alpha}, linear p schedule.",
        "",
        "| class | train pixel share | IoU baseline | IoU DropClass | Dice baseline | Dice DropClass |",
        "|---|---|---|---|---|---|",
    ]
    for name in CLASS_NAMES:
        b, d = results["baseline"]["classes"][name], results["dropclass"]["classes"][name]
        lines.append(
            f"| {name} | {100 * share[name]:.2f}% | {_format(b['iou'])} | {_format(d['iou'])} "
            f"| {_format(b['dice'])} | {_format(d['dice'])} |"
        )
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"class_share": share, **results}, indent=2))
    print("\n".join(lines))
    return report


def print_report_location(report: pathlib.Path) -> None:
    print(f"\nreport: {report}\nresults: {report.parent / 'results.json'}")


def demo_main(args: List[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass demo", description=__doc__)
    parser.add_argument("--output-dir", default="outputs/demo")
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=10.0)
    parsed = parser.parse_args(args)
    if parsed.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {parsed.iterations}")
    print_report_location(run_demo(parsed.output_dir, parsed.iterations, parsed.seed, parsed.alpha))
