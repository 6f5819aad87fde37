"""Loader samples/s against the training step's consumption, for the default 2D and 3D phantom pipelines.

The loader runs the bundles' training transforms (cached deterministic part, random rare-class
crops and flips per sample) through a ``DataLoader`` with ``num_workers=0``: loading and training
share the same 2 cores, so this is the conservative case. The training side is one DropClass step
(forward, loss, backward, optimizer) of the default network on batches of that crop size.

Target (issue 3): loader samples/s / training samples/s >= 2, so loading is not the bottleneck.

    python benchmarks/loader_throughput.py
"""

import argparse
import dataclasses
import tempfile
import time

import torch
from monai.data import DataLoader

from medseg_dropclass import DropClassLoss, build_network
from medseg_dropclass.data import DEFAULT_2D, DEFAULT_3D, decathlon_dataset, make_phantom_dataset

CASES = {
    "phantom2d": {
        "config": DEFAULT_2D,
        "crop": (64, 64),
        "batch": 8,
        "network": {"feature_channels": 16, "channels": (16, 32, 64, 128), "strides": (2, 2, 2)},
    },
    "phantom3d": {
        "config": DEFAULT_3D,
        "crop": (48, 48, 16),
        "batch": 2,
        "network": {"feature_channels": 16, "channels": (16, 32, 64, 128), "strides": (2, 2, 2)},
    },
}


def loader_rate(dataset, batch: int, samples: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0)
    seen, start = 0, time.perf_counter()
    while seen < samples:
        for batch_data in loader:
            seen += batch_data["image"].shape[0]
            if seen >= samples:
                break
    return seen / (time.perf_counter() - start)


def training_rate(spatial_dims: int, crop, batch: int, network: dict, steps: int) -> float:
    torch.manual_seed(0)
    net = build_network("unet", spatial_dims, 1, 7, **network).train()
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = DropClassLoss()
    image = torch.randn(batch, 1, *crop)
    label = torch.randint(0, 7, (batch, *crop))
    times = []
    for step in range(steps + 2):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss_fn(net(image, drop_class=step % 7), label, progress=0.5).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    times = sorted(times[2:])
    return batch / times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(f"{'case':<10} {'loader samples/s':>17} {'train samples/s':>16} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            config = case["config"]
            root = make_phantom_dataset(f"{tmp}/{name}", dataclasses.replace(config), progress=False).parent
            dataset = decathlon_dataset(
                root / "dataset.json", train=True, crop_size=case["crop"], num_crops=1, pixdim=config.spacing
            )
            load = loader_rate(dataset, case["batch"], args.samples)
            train = training_rate(config.spatial_dims, case["crop"], case["batch"], case["network"], args.steps)
            print(f"{name:<10} {load:>17.1f} {train:>16.1f} {load / train:>6.1f}", flush=True)
    print("target: ratio >= 2")


if __name__ == "__main__":
    main()
