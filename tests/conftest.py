import pathlib

import pytest
import torch

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def spatial_shape(spatial_dims: int, size: int = 5):
    return (size + 2, size, size + 1)[:spatial_dims]
