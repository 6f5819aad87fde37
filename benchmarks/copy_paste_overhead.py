"""Copy-paste's cost: a training iteration (a batch through the bundle's training pipeline, then one step of its
network and loss) with rare-object copy-paste against without, interleaved in one process.

Copy-paste is a transform in the loader, not a loss: ``loss_overhead.py`` cannot see it, and the studies' whole-run
times compare runs trained at different times beside other work. Here both pipelines are built from the bundle itself
(``train#dataloader`` with ``copy_paste`` null, and with the study arm's ``{prob: 0.5, max_objects: 2}``; the bundles
load with ``num_workers: 0``, so loading shares the cores with training, as in the studies), and each round draws one
batch from each and runs the baseline's training step on it (one network, loss and optimizer: copy-paste changes
neither; which pipeline goes first alternates). Printed: the median load time per batch of each (with the middle half
of the rounds), the median step (pooled: the same work), the iteration (load + step) and its ratio to the pipeline
without copy-paste; and the one-off times: building each dataset (the cache) and its first batch (copy-paste cuts its
object bank then, once).

    python benchmarks/copy_paste_overhead.py                                  # phantom2d_dropclass, embedded phantoms
    python benchmarks/copy_paste_overhead.py --bundle camvid_dropclass --dataset-dir data/camvid_180x240
"""

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List

import torch

from medseg_dropclass.data import DEFAULT_2D, make_phantom_dataset
from medseg_dropclass.engine.bundles import bundle_parser

COPY_PASTE = {"prob": 0.5, "max_objects": 2}  # the copy_paste arm's setting (medseg_dropclass/study/arms.yaml)


def endless(loader) -> Iterator[dict]:
    """Batches of ``loader``, epoch after epoch (a new shuffle each time)."""
    while True:
        yield from loader


def build(bundle: str, dataset_dir: str, copy_paste) -> tuple:
    """The bundle's baseline parser with ``copy_paste``, and the seconds its training dataset took to build."""
    parser = bundle_parser(bundle, {"dataset_dir": dataset_dir, "dropclass": False, "copy_paste": copy_paste})
    start = time.perf_counter()
    loader = parser.get_parsed_content("train#dataloader")
    return parser, loader, time.perf_counter() - start


def training_step(parser) -> Callable[[dict], None]:
    """One SGD step of the bundle's baseline network and loss on a batch."""
    torch.manual_seed(0)
    network, loss, optimizer = (parser.get_parsed_content(key) for key in ("network", "loss", "optimizer"))
    network.train()

    def step(batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss(network(batch["image"]), batch["label"]).backward()
        optimizer.step()

    return step


@dataclass
class Timings:
    """One pipeline's seconds: building its dataset, its first batch (copy-paste cuts its object bank then), and per
    measured round the batch's load and the training step on it."""

    built: float
    first: float = float("nan")
    load: List[float] = field(default_factory=list)
    step: List[float] = field(default_factory=list)


def measure(bundle: str, dataset_dir: str, rounds: int, warmup: int) -> Dict[str, Timings]:
    """Per pipeline (``without``, ``copy_paste``): its timings, batches drawn in turn."""
    batches, times = {}, {}
    for name, setting in (("without", None), ("copy_paste", COPY_PASTE)):
        parser, loader, built = build(bundle, dataset_dir, setting)
        batches[name], times[name] = endless(loader), Timings(built)
        if setting is None:
            step = training_step(parser)  # the baseline's: copy-paste changes neither network nor loss
    for r in range(warmup + rounds):
        for name in list(times)[:: 1 if r % 2 else -1]:  # alternate which goes first
            start = time.perf_counter()
            batch = next(batches[name])
            loaded = time.perf_counter()
            step(batch)
            done = time.perf_counter()
            if r == 0:
                times[name].first = loaded - start
            if r >= warmup:
                times[name].load.append(loaded - start)
                times[name].step.append(done - loaded)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="phantom2d_dropclass")
    parser.add_argument("--dataset-dir", default=None, help="default: the embedded phantoms, generated here")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds measured (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the studies train at 1)")
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first batch (copy-paste's bank is cut then) is not a round")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        dataset_dir = args.dataset_dir
        if dataset_dir is None:
            dataset_dir = f"{scratch}/phantom2d"
            make_phantom_dataset(dataset_dir, DEFAULT_2D, progress=False)
        times = measure(args.bundle, dataset_dir, args.rounds, args.warmup)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds after {args.warmup} warm-up")
    print(f"{args.bundle} on {args.dataset_dir or 'the embedded phantoms'}; copy-paste {COPY_PASTE}")
    step = statistics.median(s for timings in times.values() for s in timings.step)  # the same step: pooled
    print(f"training step (the same for both, median of both arms' rounds): {1000 * step:.0f} ms")
    print(
        "| pipeline | dataset built (s) | first batch (s) | load (ms: median, middle half) | iteration (ms) | ratio to without |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    base = statistics.median(times["without"].load) + step
    for name, t in times.items():
        low, load, high = statistics.quantiles(t.load, n=4)
        print(
            f"| {name} | {t.built:.1f} | {t.first:.1f} | {1000 * load:.0f} ({1000 * low:.0f} - {1000 * high:.0f}) | "
            f"{1000 * (load + step):.0f} | {(load + step) / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
