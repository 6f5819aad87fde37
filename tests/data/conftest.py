import dataclasses
import json
import pathlib

import nibabel as nib
import numpy as np
import pytest

from medseg_dropclass.data.phantoms import DEFAULT_2D, DEFAULT_3D, make_phantom_dataset
from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures"

TINY_2D = dataclasses.replace(DEFAULT_2D, size=48, num_train=6, num_test=2, num_shifted=2)
TINY_3D = dataclasses.replace(DEFAULT_3D, size=32, num_train=3, num_test=1, num_shifted=1)


def shared_fixture(name: str) -> pathlib.Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"shared fixture {path} is absent (it lives beside the checkout, in ../shared/fixtures)")
    return path


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


def write_nifti(path: pathlib.Path, array: np.ndarray, affine=None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return str(path)


def write_decathlon(root: pathlib.Path, cases, labels=None, extra=None) -> pathlib.Path:
    """A Decathlon folder from ``[(name, image_array, label_array, image_affine, label_affine)]``."""
    training = []
    for name, image, label, image_affine, label_affine in cases:
        write_nifti(root / "imagesTr" / f"{name}.nii.gz", image, image_affine)
        write_nifti(root / "labelsTr" / f"{name}.nii.gz", label, label_affine)
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    content = {
        "name": "Tiny",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": labels or {"0": "background", "1": "organ", "2": "lesion"},
        "training": training,
        **(extra or {}),
    }
    (root / "dataset.json").write_text(json.dumps(content))
    return root / "dataset.json"
