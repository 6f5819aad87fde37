"""Training-step and inference time of each network with DropClass vs the same network without.

Both arms are built from the same seed, get the same inputs and run interleaved (A, B, A, B, ...);
the printed ratio is the median of the per-round ratios DropClass / baseline.
The baseline arm trains with plain ``torch.nn.CrossEntropyLoss``; the DropClass arm with
``DropClassLoss`` at p = 0.5 and a class dropped every step (the most expensive case).

Targets (issue 2): training ratio <= 1.10, inference ratio <= 1.03.

    python benchmarks/step_overhead.py                 # all cases
    python benchmarks/step_overhead.py --cases unet2d --rounds 5
"""

import argparse
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import torch

from medseg_dropclass import DropClassLoss, build_network


@dataclass
class Case:
    name: str
    network: str
    spatial_dims: int
    batch: int
    size: int
    num_classes: int = 8
    network_kwargs: Dict = field(default_factory=dict)
    in_channels: int = 1
    width: int = 0  # 2D: a width different from size (e.g. 512x256)


CASES = [
    Case("unet2d", "unet", 2, 4, 256, network_kwargs={"feature_channels": 32, "channels": (32, 64, 128, 256)}),
    Case("unet3d", "unet", 3, 2, 64, network_kwargs={"feature_channels": 32, "channels": (32, 64, 128, 256)}),
    Case("segresnet2d", "segresnet", 2, 4, 256, network_kwargs={"feature_channels": 32}),
    Case("segresnet3d", "segresnet", 3, 2, 64, network_kwargs={"feature_channels": 16}),
    # the paper's architectures, CPU-sized, 2D 512x256 batch 2, 19 classes (Cityscapes-like)
    Case("deeplab_r18", "deeplabv3", 2, 2, 256, 19, {"encoder": "resnet18", "width": 0.5, "aspp_channels": 128, "decoder_channels": 64}, 3, 512),
    Case("deeplab_mnv3", "deeplabv3", 2, 2, 256, 19, {"encoder": "mobilenetv3", "aspp_channels": 128, "decoder_channels": 64}, 3, 512),
    Case("hrnet_w18s1", "hrnetv2", 2, 2, 256, 19, {"preset": "w18_small_v1"}, 3, 512),
]


def make_arms(case: Case):
    arms = {}
    for dropclass in (False, True):
        torch.manual_seed(0)
        net = build_network(
            case.network, case.spatial_dims, case.in_channels, case.num_classes, dropclass=dropclass, **case.network_kwargs
        )
        optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        arms["dropclass" if dropclass else "baseline"] = (net, optimizer)
    return arms


def train_step_fn(net, optimizer, image, label, dropclass: bool) -> Callable[[], None]:
    if dropclass:
        loss_fn = DropClassLoss()
        step = [0]

        def run() -> None:
            drop_class = step[0] % net.head.num_classes
            step[0] += 1
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(image, drop_class=drop_class), label, progress=0.5)
            loss.backward()
            optimizer.step()

    else:
        loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)

        def run() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(image), label)
            loss.backward()
            optimizer.step()

    return run


def infer_fn(net, image) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            net(image)

    return run


def interleaved(fns: Dict[str, Callable[[], None]], rounds: int, warmup: int) -> Dict[str, List[float]]:
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for r in range(warmup + rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                times[name].append(elapsed)
    return times


def median_ratio(times: Dict[str, List[float]]) -> float:
    return statistics.median(d / b for d, b in zip(times["dropclass"], times["baseline"]))


def min_ratio(times: Dict[str, List[float]]) -> float:
    """Ratio of the fastest rounds: robust to interference from other load on the machine."""
    return min(times["dropclass"]) / min(times["baseline"])


def run_case(case: Case, rounds: int, warmup: int) -> Dict[str, float]:
    arms = make_arms(case)
    spatial = (case.size,) * case.spatial_dims if not case.width else (case.size, case.width)
    shape = (case.batch, case.in_channels) + spatial
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(shape, generator=generator)
    label = torch.randint(0, case.num_classes, (case.batch,) + shape[2:], generator=generator)

    train = {}
    for name, (net, optimizer) in arms.items():
        net.train()
        train[name] = train_step_fn(net, optimizer, image, label, dropclass=name == "dropclass")
    train_times = interleaved(train, rounds, warmup)

    infer = {}
    for name, (net, _) in arms.items():
        net.eval()
        infer[name] = infer_fn(net, image)
    infer_times = interleaved(infer, rounds * 2, warmup)
    return {
        "train_baseline_s": statistics.median(train_times["baseline"]),
        "train_dropclass_s": statistics.median(train_times["dropclass"]),
        "train_ratio": median_ratio(train_times),
        "train_min_ratio": min_ratio(train_times),
        "infer_baseline_s": statistics.median(infer_times["baseline"]),
        "infer_dropclass_s": statistics.median(infer_times["dropclass"]),
        "infer_ratio": median_ratio(infer_times),
        "infer_min_ratio": min_ratio(infer_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=[c.name for c in CASES], choices=[c.name for c in CASES])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("ratio = median of per-round ratios DropClass/baseline; min = ratio of the fastest rounds")
    header = (
        f"{'case':<12} {'train base':>10} {'train dc':>9} {'ratio':>6} {'min':>6}  "
        f"{'infer base':>10} {'infer dc':>9} {'ratio':>6} {'min':>6}"
    )
    print(header)
    for case in CASES:
        if case.name not in args.cases:
            continue
        r = run_case(case, args.rounds, args.warmup)
        print(
            f"{case.name:<12} {r['train_baseline_s']:>9.3f}s {r['train_dropclass_s']:>8.3f}s {r['train_ratio']:>6.3f} "
            f"{r['train_min_ratio']:>6.3f}  {r['infer_baseline_s']:>9.3f}s {r['infer_dropclass_s']:>8.3f}s "
            f"{r['infer_ratio']:>6.3f} {r['infer_min_ratio']:>6.3f}",
            flush=True,
        )
    print("targets: train ratio <= 1.10, inference ratio <= 1.03")


if __name__ == "__main__":
    main()
