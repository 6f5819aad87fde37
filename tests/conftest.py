import dataclasses
import os
import pathlib

import pytest
import torch

from medseg_dropclass.data.phantoms import DEFAULT_2D, DEFAULT_3D, make_phantom_dataset

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"

if os.environ.get(
    "PYTEST_XDIST_WORKER"
):  # one thread per worker (and per process it starts): workers x threads = cores
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def spatial_shape(spatial_dims: int, size: int = 5):
    return (size + 2, size, size + 1)[:spatial_dims]


TINY_2D = dataclasses.replace(DEFAULT_2D, size=48, num_train=6, num_test=2, num_shifted=2)
TINY_3D = dataclasses.replace(DEFAULT_3D, size=32, num_train=3, num_test=1, num_shifted=1)


@pytest.fixture(scope="session")
def phantom2d(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("phantom2d")
    make_phantom_dataset(str(root), TINY_2D, progress=False)
    return root


@pytest.fixture(scope="session")
def phantom3d(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("phantom3d")
    make_phantom_dataset(str(root), TINY_3D, progress=False)
    return root
