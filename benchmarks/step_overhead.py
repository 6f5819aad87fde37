"""Training-step and inference time of each network with DropClass vs the same network without.

Both arms are built from the same seed, get the same inputs and run interleaved (A, B, A, B, ...);
the printed ratio is the median of the per-round ratios DropClass / baseline, over blocks of rounds
repeated until that median moves by less than --tolerance (or --max-rounds is reached).
The baseline arm trains with plain ``torch.nn.CrossEntropyLoss``; the DropClass arm with
``DropClassLoss`` at p = 0.5 and a class dropped every step (the most expensive case).

Printed per case next to each measured ratio: ``floor``, the ratio of the FLOPs the two arms
compute (``torch.utils.flop_counter.FlopCounterMode``: what the method itself adds, the best a
kernel could do), and ``mem``, the ratio of the peak memory of one training step
(``torch.distributed._tools.mem_tracker.MemTracker``: parameters, gradients, optimizer state,
activations and temporaries, on CPU or GPU).

Targets (issue 15): train ratio <= max(1.10, 1.05 x floor), inference ratio <= max(1.03, 1.02 x floor),
training peak-memory ratio <= 1.15.

    python benchmarks/step_overhead.py                 # all cases, CPU
    python benchmarks/step_overhead.py --cases unet2d --rounds 5
    python benchmarks/step_overhead.py --device cuda [--amp]   # on a GPU (AMP: float16 autocast)
"""

import argparse
import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

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
    Case(
        "deeplab_r18",
        "deeplabv3",
        2,
        2,
        256,
        19,
        {"encoder": "resnet18", "width": 0.5, "aspp_channels": 128, "decoder_channels": 64},
        3,
        512,
    ),
    Case(
        "deeplab_mnv3",
        "deeplabv3",
        2,
        2,
        256,
        19,
        {"encoder": "mobilenetv3", "aspp_channels": 128, "decoder_channels": 64},
        3,
        512,
    ),
    Case("hrnet_w18s1", "hrnetv2", 2, 2, 256, 19, {"preset": "w18_small_v1"}, 3, 512),
]


def make_arms(case: Case, device: torch.device, fused_head: Optional[bool] = None):
    """The baseline and the DropClass network of ``case`` (same seed), each with its SGD optimizer; ``fused_head``
    sets the DropClass head's train path (``DropClassHead.fused``: None = the device's default)."""
    arms = {}
    for dropclass in (False, True):
        torch.manual_seed(0)
        net = build_network(
            case.network,
            case.spatial_dims,
            case.in_channels,
            case.num_classes,
            dropclass=dropclass,
            **case.network_kwargs,
        ).to(device)
        if dropclass:
            net.head.fused = fused_head
        optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        arms["dropclass" if dropclass else "baseline"] = (net, optimizer)
    return arms


def autocast(device: torch.device, amp: bool):
    """float16 autocast on CUDA, bfloat16 on CPU, or nothing."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def train_step_fn(
    net, optimizer, image, label, dropclass: bool, amp: bool = False, fused_loss: Optional[bool] = None
) -> Callable[[], None]:
    loss_fn = DropClassLoss(fused=fused_loss) if dropclass else torch.nn.CrossEntropyLoss(ignore_index=255)
    scaler = torch.amp.GradScaler(image.device.type, enabled=amp and image.device.type == "cuda")
    step = [0]

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(image.device, amp):
            if dropclass:
                drop_class = step[0] % net.head.num_classes
                step[0] += 1
                loss = loss_fn(net(image, drop_class=drop_class), label, progress=0.5)
            else:
                loss = loss_fn(net(image), label)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return run


def infer_fn(net, image, amp: bool = False) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode(), autocast(image.device, amp):
            net(image)

    return run


def interleaved(
    fns: Dict[str, Callable[[], None]], rounds: int, warmup: int, device: torch.device
) -> Dict[str, List[float]]:
    times: Dict[str, List[float]] = {k: [] for k in fns}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for r in range(warmup + rounds):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                times[name].append(elapsed)
    return times


def until_stable(
    fns: Dict[str, Callable[[], None]], block: int, max_rounds: int, warmup: int, tolerance: float, device: torch.device
) -> Dict[str, List[float]]:
    """Blocks of ``block`` interleaved rounds until the median ratio moves by less than ``tolerance`` (relative)."""
    times = interleaved(fns, block, warmup, device)
    previous = median_ratio(times)
    while len(times["baseline"]) < max_rounds:
        more = interleaved(fns, block, 0, device)
        for name in times:
            times[name] += more[name]
        current = median_ratio(times)
        if abs(current - previous) <= tolerance * previous:
            break
        previous = current
    return times


def median_ratio(times: Dict[str, List[float]]) -> float:
    return statistics.median(d / b for d, b in zip(times["dropclass"], times["baseline"]))


def min_ratio(times: Dict[str, List[float]]) -> float:
    """Ratio of the fastest rounds: robust to interference from other load on the machine."""
    return min(times["dropclass"]) / min(times["baseline"])


def flops(fn: Callable[[], None]) -> int:
    """FLOPs of one call, as ``FlopCounterMode`` counts them (matrix products and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def peak_memory(net, optimizer, fn: Callable[[], None]) -> int:
    """Peak bytes of one training step (parameters, gradients, optimizer state, activations, temporaries)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    tracker.track_external(net, optimizer)
    with tracker:
        fn()
    return int(sum(device["Total"] for device in tracker.get_tracker_snapshot("peak").values()))


def run_case(
    case: Case,
    rounds: int,
    warmup: int,
    max_rounds: int = 60,
    tolerance: float = 0.005,
    device: torch.device = torch.device("cpu"),
    amp: bool = False,
    fused_loss: Optional[bool] = None,
    fused_head: Optional[bool] = None,
) -> Dict[str, float]:
    arms = make_arms(case, device, fused_head)
    spatial = (case.size,) * case.spatial_dims if not case.width else (case.size, case.width)
    shape = (case.batch, case.in_channels) + spatial
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(shape, generator=generator).to(device)
    label = torch.randint(0, case.num_classes, (case.batch,) + shape[2:], generator=generator).to(device)

    train = {}
    for name, (net, optimizer) in arms.items():
        net.train()
        train[name] = train_step_fn(
            net, optimizer, image, label, dropclass=name == "dropclass", amp=amp, fused_loss=fused_loss
        )
    for fn in train.values():
        fn()  # optimizer state allocated before memory is measured
    memory = {name: peak_memory(arms[name][0], arms[name][1], fn) for name, fn in train.items()}
    train_flops = {name: flops(fn) for name, fn in train.items()}
    train_times = until_stable(train, rounds, max_rounds, warmup, tolerance, device)

    infer = {}
    for name, (net, _) in arms.items():
        net.eval()
        infer[name] = infer_fn(net, image, amp)
    infer_flops = {name: flops(fn) for name, fn in infer.items()}
    infer_times = until_stable(infer, rounds * 2, max_rounds * 2, warmup, tolerance, device)
    return {
        "train_baseline_s": statistics.median(train_times["baseline"]),
        "train_dropclass_s": statistics.median(train_times["dropclass"]),
        "train_ratio": median_ratio(train_times),
        "train_min_ratio": min_ratio(train_times),
        "train_floor": train_flops["dropclass"] / train_flops["baseline"],
        "train_rounds": len(train_times["baseline"]),
        "memory_ratio": memory["dropclass"] / memory["baseline"],
        "memory_baseline_mib": memory["baseline"] / 2**20,
        "infer_baseline_s": statistics.median(infer_times["baseline"]),
        "infer_dropclass_s": statistics.median(infer_times["dropclass"]),
        "infer_ratio": median_ratio(infer_times),
        "infer_min_ratio": min_ratio(infer_times),
        "infer_floor": infer_flops["dropclass"] / infer_flops["baseline"],
        "infer_rounds": len(infer_times["baseline"]),
    }


def verdict(r: Dict[str, float]) -> str:
    misses = []
    if r["train_ratio"] > max(1.10, 1.05 * r["train_floor"]):
        misses.append("train")
    if r["infer_ratio"] > max(1.03, 1.02 * r["infer_floor"]):
        misses.append("infer")
    if r["memory_ratio"] > 1.15:
        misses.append("mem")
    return "ok" if not misses else "MISS " + ",".join(misses)


# --fused-loss / --fused-head: "auto" leaves the choice to the device's measured default (None)
SWITCH = {"auto": None, "on": True, "off": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=[c.name for c in CASES], choices=[c.name for c in CASES])
    parser.add_argument("--rounds", type=int, default=10, help="rounds per block (inference: twice as many)")
    parser.add_argument("--max-rounds", type=int, default=60)
    parser.add_argument(
        "--tolerance", type=float, default=0.005, help="stop when the median ratio moves less than this (relative)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="autocast: float16 on CUDA, bfloat16 on CPU")
    parser.add_argument(
        "--fused-loss",
        choices=tuple(SWITCH),
        default="auto",
        help="the dropped branch's fused CE + suppression (DropClassLoss(fused=...)); auto: where measured faster",
    )
    parser.add_argument(
        "--fused-head",
        choices=tuple(SWITCH),
        default="auto",
        help="the DropClass head's fused chunked train path (DropClassHead.fused); auto: where measured faster",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"torch {torch.__version__}, {name}, amp {'on' if args.amp else 'off'}, fused dropped-branch loss {args.fused_loss}, "
        f"fused head {args.fused_head}"
    )
    print(
        "ratio = median of per-round ratios DropClass/baseline; min = ratio of the fastest rounds; "
        "floor = FLOP ratio; mem = peak training-memory ratio; n = rounds until the median was stable"
    )
    header = (
        f"{'case':<12} {'train base':>11} {'train dc':>10} {'ratio':>6} {'min':>6} {'floor':>6} {'n':>3} {'mem':>6}  "
        f"{'infer base':>11} {'infer dc':>10} {'ratio':>6} {'min':>6} {'floor':>6} {'n':>3}  target"
    )
    print(header)
    for case in CASES:
        if case.name not in args.cases:
            continue
        r = run_case(
            case,
            args.rounds,
            args.warmup,
            args.max_rounds,
            args.tolerance,
            device,
            args.amp,
            SWITCH[args.fused_loss],
            SWITCH[args.fused_head],
        )
        print(
            f"{case.name:<12} {r['train_baseline_s'] * 1e3:>9.2f}ms {r['train_dropclass_s'] * 1e3:>8.2f}ms {r['train_ratio']:>6.3f} "
            f"{r['train_min_ratio']:>6.3f} {r['train_floor']:>6.3f} {r['train_rounds']:>3d} {r['memory_ratio']:>6.3f}  "
            f"{r['infer_baseline_s'] * 1e3:>9.2f}ms {r['infer_dropclass_s'] * 1e3:>8.2f}ms {r['infer_ratio']:>6.3f} {r['infer_min_ratio']:>6.3f} "
            f"{r['infer_floor']:>6.3f} {r['infer_rounds']:>3d}  {verdict(r)}",
            flush=True,
        )
    print("targets: train ratio <= max(1.10, 1.05 x floor), inference ratio <= max(1.03, 1.02 x floor), mem <= 1.15")


if __name__ == "__main__":
    main()
