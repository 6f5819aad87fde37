"""The bundle's own overhead: training throughput of a bundle against a bare PyTorch loop on the same pieces.

Both runs take the same network, data loader (cached dataset, same transforms, same order), loss, optimizer,
learning-rate schedule and DropClass sampler from the bundle's parsed config; the bundle run is MONAI's
``SupervisedTrainer`` with every handler of the base (epoch checkpoints, validation every ``val_interval``
epochs with the one evaluator and ``model.pt``, TensorBoard scalars, histograms, image panels and the
similarity matrix, the progress bar); the bare loop has none of them. Dataset caching is done before either
clock starts. The runs alternate (bundle, bare, bundle, bare, ...); the printed ratio is
median(bundle seconds) / median(bare seconds) = bare images/s over bundle images/s.

Target (issue 15): ratio <= 1.15.

    python benchmarks/bundle_overhead.py                       # phantom2d_dropclass, DropClass arm, 20 epochs x 3
    python benchmarks/bundle_overhead.py --epochs 10 --repeats 2 --set val_interval=5
    python benchmarks/bundle_overhead.py --profile-handlers    # and one more bundle run: seconds per handler

``--profile-handlers`` adds one bundle run under ignite's ``HandlersTimeProfiler`` (trainer and evaluator) and
prints the seconds each handler took in total, largest first: where the overhead goes.
"""

import argparse
import json
import statistics
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import torch


def parsed(bundle: str, overrides: Dict):
    from medseg_dropclass.engine.bundles import bundle_parser

    return bundle_parser(bundle, overrides)


def bundle_run(bundle: str, overrides: Dict, profile: Optional[List[Tuple[str, str, float]]] = None) -> float:
    """Seconds of ``trainer.run()`` with every handler of the bundle attached (caching done before).

    Given a list as ``profile``, the run is timed per handler (ignite's ``HandlersTimeProfiler`` on the trainer
    and the evaluator) and ``(engine, handler, seconds)`` rows are appended to it.
    """
    from ignite.handlers import HandlersTimeProfiler
    from monai.utils import set_determinism

    parser = parsed(bundle, overrides)
    trainer = parser.get_parsed_content("train#trainer")
    handlers = [h for h in parser.get_parsed_content("train#handlers").values() if h is not None]
    set_determinism(seed=int(parser.get("seed")))
    for handler in handlers:
        handler.attach(trainer)
    profilers = {}
    if profile is not None:
        profilers = {"trainer": HandlersTimeProfiler(), "evaluator": HandlersTimeProfiler()}
        profilers["trainer"].attach(trainer)
        profilers["evaluator"].attach(parser.get_parsed_content("validate#evaluator"))
    start = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - start
    for engine, profiler in profilers.items():
        for row in profiler.get_results():
            name, event, total = str(row[0]), str(row[1]), row[2]
            if isinstance(total, float) and name != "Total":  # "not triggered" handlers have no float
                profile.append((engine, f"{name} ({event})" if event != "None" else name, total))
    return seconds


def bare_run(bundle: str, overrides: Dict) -> float:
    """Seconds of a plain loop over the same loader, network, loss, optimizer, schedule and sampler."""
    from monai.utils import set_determinism

    parser = parsed(bundle, overrides)
    loader = parser.get_parsed_content("train#dataloader")
    network, loss_fn = parser.get_parsed_content("network"), parser.get_parsed_content("loss")
    optimizer, scheduler = parser.get_parsed_content("optimizer"), parser.get_parsed_content("lr_scheduler")
    controller = parser.get_parsed_content("dropclass_controller")
    device, epochs = parser.get_parsed_content("device"), int(parser.get("max_epochs"))
    set_determinism(seed=int(parser.get("seed")))
    total = epochs * len(loader)
    iteration = 0
    network.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            image, label = batch["image"].to(device), batch["label"].to(device)
            progress = controller.schedule(iteration, total) if controller.enabled else 0.0
            drop_class = controller.sampler(progress, label) if controller.enabled else None
            loss_fn.progress = progress
            optimizer.zero_grad(set_to_none=True)
            output = network(image, drop_class=drop_class) if controller.enabled else network(image)
            loss = loss_fn(output, label)
            loss.backward()
            optimizer.step()
            iteration += 1
        scheduler.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="phantom2d_dropclass")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", action="store_true", help="the baseline arm (default: the DropClass arm)")
    parser.add_argument("--profile-handlers", action="store_true", help="one more bundle run, timed per handler")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="bundle overrides, e.g. val_interval=5"
    )
    args = parser.parse_args()
    extra = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    run_overrides = {"max_epochs": args.epochs, "dropclass": not args.baseline, **extra}
    times: Dict[str, List[float]] = {"bundle": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="bundle_overhead_") as work:
        for repeat in range(args.repeats):
            for name, run in (("bundle", bundle_run), ("bare", bare_run)):
                times[name].append(run(args.bundle, {**run_overrides, "output_dir": f"{work}/{name}{repeat}"}))
                print(f"  {name:<6} run {repeat + 1}: {times[name][-1]:.1f} s", flush=True)
    probe = parsed(args.bundle, {"max_epochs": args.epochs, **extra})
    images = (
        args.epochs
        * len(probe.get_parsed_content("train_datalist"))
        // int(probe.get("batch_size"))
        * int(probe.get("batch_size"))
    )
    images *= int(getattr(probe.get_parsed_content("preprocessing"), "num_crops", 1))
    bundle_s, bare_s = statistics.median(times["bundle"]), statistics.median(times["bare"])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.bundle}, "
        f"{'baseline' if args.baseline else 'DropClass'} arm, {args.epochs} epochs, val_interval {probe.get('val_interval')}"
    )
    print(
        f"bundle {bundle_s:.1f} s ({images / bundle_s:.1f} images/s), bare loop {bare_s:.1f} s ({images / bare_s:.1f} images/s)"
    )
    print(f"ratio bundle/bare: {bundle_s / bare_s:.3f} (target <= 1.15)")
    if args.profile_handlers:
        rows: List[Tuple[str, str, float]] = []
        with tempfile.TemporaryDirectory(prefix="bundle_overhead_") as work:
            total = bundle_run(args.bundle, {**run_overrides, "output_dir": f"{work}/profiled"}, rows)
        print(f"profiled bundle run: {total:.1f} s; seconds per handler (HandlersTimeProfiler), largest first:")
        for engine, name, seconds in sorted(rows, key=lambda row: -row[2]):
            print(f"  {seconds:8.2f}  {engine:<9} {name}")


if __name__ == "__main__":
    main()
