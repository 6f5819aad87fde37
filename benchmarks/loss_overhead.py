"""Training-step time of the alternatives' losses and of DropClass against the recipe baseline (batch Dice + CE).

The studies' wall-time ratios come from whole runs trained at different times, beside whatever else the machine ran
(a test suite, a report), which the runs do not record; this measures the step itself. Every arm is built from the
same seed, gets the same batch and runs interleaved (baseline, dicefocal, dicetopk, logit_adjusted, dropclass,
baseline, ...), so other load on the machine slows all arms alike; the printed ratio is the median of the per-round
ratios arm / baseline, with the middle half of the rounds' ratios beside it (how much other load moved them). Losses are built as the bundles build them
(``DropClassLoss`` around ``MaskedDiceCELoss`` with the arm's pixel loss; the bundles' defaults: focal gamma 2,
top 10%, tau 1); DropClass drops a class every step at p = 0.5. Copy-paste is a data transform, not a step cost:
its cost is in the loader (``copy_paste_overhead.py``).

    python benchmarks/loss_overhead.py                     # both cases, CPU, 1 thread
    python benchmarks/loss_overhead.py --cases acdc --rounds 40 --threads 2
"""

import argparse
import statistics
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import torch
from step_overhead import interleaved  # the sibling benchmark's interleaved timing (run as a script from benchmarks/)

from medseg_dropclass import DropClassLoss, MaskedDiceCELoss, build_network
from medseg_dropclass.dropclass import LogitAdjustedCrossEntropyLoss, MaskedFocalLoss, TopKCrossEntropyLoss


@dataclass
class Case:
    """A bundle's network and patch batch (2D)."""

    name: str
    network: str
    in_channels: int
    num_classes: int
    batch: int
    size: tuple
    network_kwargs: Dict = field(default_factory=dict)


CASES = {
    # bundles/acdc_dropclass: 2D UNet on 128x128 slices, 4 volumes x 2 slices a step
    "acdc": Case("acdc", "unet", 1, 4, 8, (128, 128), {"feature_channels": 16, "channels": (16, 32, 64, 128)}),
    # bundles/camvid_dropclass: DeepLabv3 (ResNet-18 at width 0.5) on 160x160 crops, batch 8, 11 classes
    "camvid": Case(
        "camvid",
        "deeplabv3",
        3,
        11,
        8,
        (160, 160),
        {"encoder": "resnet18", "width": 0.5, "output_stride": 16, "aspp_channels": 64, "decoder_channels": 64},
    ),
}
ARMS = ("baseline", "dicefocal", "dicetopk", "logit_adjusted", "dropclass")


def pixel_loss(arm: str, class_share: torch.Tensor):
    """The arm's pixel term of the batch Dice + pixel loss (None: MONAI's CE, the recipe's)."""
    if arm == "dicefocal":
        return MaskedFocalLoss(2.0)
    if arm == "dicetopk":
        return TopKCrossEntropyLoss(10.0)
    if arm == "logit_adjusted":
        return LogitAdjustedCrossEntropyLoss(class_share.tolist(), 1.0)
    return None


def train_step(case: Case, arm: str, image: torch.Tensor, label: torch.Tensor) -> Callable[[], None]:
    """One SGD step of ``arm``'s network and loss on the fixed batch."""
    torch.manual_seed(0)
    dropclass = arm == "dropclass"
    net = build_network(case.network, 2, case.in_channels, case.num_classes, dropclass=dropclass, **case.network_kwargs)
    share = torch.bincount(label.flatten(), minlength=case.num_classes).double()
    base = MaskedDiceCELoss(include_background=False, batch=True, pixel_loss=pixel_loss(arm, share / share.sum()))
    loss_fn = DropClassLoss(base_loss=base, alpha=1.0)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99, nesterov=True)
    step = [0]

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        if dropclass:
            output = net(image, drop_class=step[0] % case.num_classes)
            loss = loss_fn(output, label, progress=0.5)
        else:
            loss = loss_fn(net(image), label)
        step[0] += 1
        loss.backward()
        optimizer.step()

    return run


def batch(case: Case) -> tuple:
    """A fixed batch: images and a label map of blobs, one class much rarer than the others (as in the data)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(case.batch, case.in_channels, *case.size, generator=generator)
    coarse = torch.randint(
        0, case.num_classes, (case.batch, 1, case.size[0] // 16, case.size[1] // 16), generator=generator
    )
    label = torch.nn.functional.interpolate(coarse.float(), size=case.size, mode="nearest").long()[:, 0]
    label[label == case.num_classes - 1] = 0  # the last class only in a few small squares
    label[:, :8, :8] = case.num_classes - 1
    return image, label


def measure(case: Case, rounds: int, warmup: int) -> Dict[str, List[float]]:
    image, label = batch(case)
    steps = {arm: train_step(case, arm, image, label) for arm in ARMS}
    return interleaved(steps, rounds, warmup, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds measured (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the studies train at 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds after {args.warmup} warm-up")
    print("| case | arm | step (ms, median) | ratio to baseline (median of rounds) | middle half of the rounds |")
    print("|---|---|---:|---:|---:|")
    for name in args.cases:
        times = measure(CASES[name], args.rounds, args.warmup)
        for arm in ARMS:
            ratios = [a / b for a, b in zip(times[arm], times["baseline"])]
            low, ratio, high = statistics.quantiles(ratios, n=4)
            print(
                f"| {name} | {arm} | {1000 * statistics.median(times[arm]):.0f} | {ratio:.2f}x | "
                f"{low:.2f}x - {high:.2f}x |"
            )


if __name__ == "__main__":
    main()
