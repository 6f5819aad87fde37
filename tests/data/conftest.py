import json
import pathlib

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import SHARED, TINY_2D, TINY_3D  # noqa: F401  (TINY_* re-exported for the data tests)

FIXTURES = SHARED / "fixtures"


def shared_fixture(name: str) -> pathlib.Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"shared fixture {path} is absent (it lives beside the checkout, in ../shared/fixtures)")
    return path


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
