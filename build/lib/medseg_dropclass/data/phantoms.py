"""Deterministic synthetic organ + lesion phantoms in the Medical Segmentation Decathlon layout.

Each case is a "body" with three organs (about 15%, 7% and 3% of the pixels in 2D; 10%, 5% and 2.5% in
3D) and three lesion classes (about 0.35%, 0.04% and 0.02% in 2D; 0.14%, 0.01% and 0.003% in 3D). Each lesion class has a host organ: in training and in the
in-distribution test split it sits inside its host in ``host_probability`` of the cases, elsewhere
in the body otherwise. In the *context-shifted* test split every lesion sits outside its host, the
case DropClass claims to help with. Lesion intensities overlap those of other organs, so a model
has to combine appearance and context.

Images are rendered at twice the resolution and averaged down, so organ and lesion borders carry
partial-volume mixing; a per-case gain, a smooth bias field and Gaussian noise follow. Files are
NIfTI with a rotated, anisotropic affine, written as::

    root/imagesTr, labelsTr, imagesTs, labelsTs, imagesTsShifted, labelsTsShifted, dataset.json
"""

import json
import math
import os
import pathlib
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import nibabel as nib
import numpy as np
from tqdm import tqdm

__all__ = ["PHANTOM_CLASSES", "PhantomConfig", "make_phantom_dataset", "ensure_phantoms", "render_case", "DEFAULT_2D", "DEFAULT_3D"]

PHANTOM_CLASSES = ["background", "organ_large", "organ_medium", "organ_small", "lesion_a", "lesion_b", "lesion_c"]
# class -> mean intensity; lesions overlap other organs' intensities on purpose
INTENSITY = {0: 40.0, 1: 100.0, 2: 70.0, 3: 130.0, 4: 62.0, 5: 108.0, 6: 92.0}
OUTSIDE_BODY = 0.0
# organ: (centre as fraction of the size per axis, radii as fraction of the size per axis); in 3D
# the organs span most slices (the z radius) and are 10% wider, to keep their 2D voxel shares
ORGANS = {
    1: ((0.36, 0.36, 0.5), (0.25, 0.19, 0.42)),
    2: ((0.68, 0.66, 0.5), (0.15, 0.15, 0.45)),
    3: ((0.33, 0.72, 0.5), (0.1, 0.1, 0.48)),
}
WIDER_IN_3D = 1.1
# lesion: (host organ, radius as fraction of the size in 2D and in 3D, probability that a case has it)
LESIONS = {4: (1, (0.036, 0.07), 0.8), 5: (2, (0.02, 0.035), 0.4), 6: (3, (0.014, 0.028), 0.35)}


@dataclass
class PhantomConfig:
    """Sizes and splits of a phantom dataset.

    Attributes:
        spatial_dims: 2 or 3.
        size: voxels per axis (3D: the last axis is ``size // 2``, with thicker slices).
        spacing: voxel size in mm per axis.
        num_train, num_test, num_shifted: cases per split.
        host_probability: chance that a lesion sits in its host organ (train and in-distribution test).
        noise: standard deviation of the Gaussian noise.
        seed: the dataset is a pure function of the configuration.
    """

    spatial_dims: int = 2
    size: int = 96
    spacing: Tuple[float, ...] = (0.8, 0.8)
    num_train: int = 64
    num_test: int = 16
    num_shifted: int = 16
    host_probability: float = 0.9
    noise: float = 8.0
    seed: int = 0
    splits: Dict[str, Tuple[str, str, str]] = field(
        default_factory=lambda: {
            "training": ("imagesTr", "labelsTr", "train"),
            "test": ("imagesTs", "labelsTs", "test"),
            "test_shifted": ("imagesTsShifted", "labelsTsShifted", "shifted"),
        }
    )

    def shape(self) -> Tuple[int, ...]:
        if self.spatial_dims == 2:
            return (self.size, self.size)
        return (self.size, self.size, max(self.size // 2, 8))

    def counts(self) -> Dict[str, int]:
        return {"training": self.num_train, "test": self.num_test, "test_shifted": self.num_shifted}


DEFAULT_2D = PhantomConfig()
DEFAULT_3D = PhantomConfig(spatial_dims=3, size=64, spacing=(1.0, 1.0, 2.5), num_train=24, num_test=6, num_shifted=6)


def _grid(shape: Sequence[int], factor: int) -> List[np.ndarray]:
    """Coordinates (as fractions of each axis) of the sub-voxel centres of a ``factor``-times finer grid."""
    axes = [(np.arange(n * factor, dtype=np.float32) + 0.5) / (n * factor) for n in shape]
    return np.meshgrid(*axes, indexing="ij", sparse=True)


def _ellipsoid(grid: List[np.ndarray], centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii))
    return inside <= 1.0


def _lesion_centre(
    rng: np.random.Generator, labels: np.ndarray, allowed: np.ndarray, margin: float
) -> Tuple[float, ...]:
    """A random point (fractions per axis) in ``allowed``, away from the border."""
    candidates = np.argwhere(allowed)
    shape = np.array(labels.shape, dtype=np.float32)
    inner = np.all((candidates >= margin * shape) & (candidates < (1 - margin) * shape), axis=1)
    if inner.any():
        candidates = candidates[inner]
    point = candidates[rng.integers(len(candidates))]
    return tuple(float(v) for v in (point + 0.5) / shape)


def render_case(config: PhantomConfig, rng: np.random.Generator, lesions_in_host: bool) -> Tuple[np.ndarray, np.ndarray]:
    """One image (float32) and label map (uint8) of ``config.shape()``.

    Args:
        lesions_in_host: ``True``: each lesion in its host with ``config.host_probability``;
            ``False``: every lesion outside its host organ (context-shifted split).
    """
    shape = config.shape()
    dims = config.spatial_dims
    factor = 2
    fine = _grid(shape, factor)
    coarse = _grid(shape, 1)
    jitter = lambda: rng.uniform(-0.04, 0.04, size=dims)  # noqa: E731
    scale = lambda: rng.uniform(0.9, 1.1, size=dims)  # noqa: E731

    body_centre, body_radii = (0.5,) * dims, tuple(rng.uniform(0.44, 0.48, size=dims))
    shapes = [(0, body_centre, body_radii)]
    widen = np.array([WIDER_IN_3D, WIDER_IN_3D, 1.0]) if dims == 3 else np.ones(2)
    for organ, (centre, radii) in ORGANS.items():
        shapes.append((organ, tuple(np.array(centre[:dims]) + jitter()), tuple(np.array(radii[:dims]) * widen * scale())))

    labels = np.zeros(shape, dtype=np.uint8)
    for organ, centre, radii in shapes[1:]:
        labels[_ellipsoid(coarse, centre, radii)] = organ
    body = _ellipsoid(coarse, body_centre, body_radii)

    lesion_shapes = []
    for lesion, (host, radius_by_dims, presence) in LESIONS.items():
        radius = radius_by_dims[dims - 2]
        if rng.random() >= presence:
            continue
        in_host = lesions_in_host and rng.random() < config.host_probability
        allowed = (labels == host) if in_host else (body & (labels != host) & (labels < 4))
        centre = _lesion_centre(rng, labels, allowed, margin=0.08)
        radii = tuple(radius * rng.uniform(0.8, 1.2) * np.ones(dims))
        lesion_shapes.append((lesion, centre, radii))
        labels[_ellipsoid(coarse, centre, radii)] = lesion

    # image: the same geometry on the fine grid, averaged down (partial volume at the borders)
    fine_shape = tuple(n * factor for n in shape)
    intensity = np.full(fine_shape, OUTSIDE_BODY, dtype=np.float32)
    intensity[_ellipsoid(fine, body_centre, body_radii)] = INTENSITY[0]
    for cls, centre, radii in shapes[1:] + lesion_shapes:
        intensity[_ellipsoid(fine, centre, radii)] = INTENSITY[cls]
    pooled = intensity.reshape([v for n in shape for v in (n, factor)]).mean(axis=tuple(range(1, 2 * dims, 2)))

    gain = rng.uniform(0.85, 1.15)
    bias_field = 1.0 + sum(rng.uniform(-0.08, 0.08) * (g - 0.5) for g in coarse)
    image = pooled * gain * bias_field + rng.normal(0.0, config.noise, size=shape)
    return image.astype(np.float32), labels


def affine_for(config: PhantomConfig, rng: np.random.Generator) -> np.ndarray:
    """A 4x4 NIfTI affine: rotation about the last axis, anisotropic spacing, non-zero origin."""
    angle = math.radians(rng.uniform(-12.0, 12.0))
    rotation = np.eye(3)
    rotation[:2, :2] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    spacing = list(config.spacing) + [1.0] * (3 - len(config.spacing))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = rng.uniform(-120.0, -80.0, size=3)
    return affine


def make_phantom_dataset(root: str, config: PhantomConfig = DEFAULT_2D, progress: bool = True) -> pathlib.Path:
    """Write the phantom dataset to ``root`` and return the path of its ``dataset.json``.

    The output is a pure function of ``config``: equal configurations give byte-equal arrays.
    """
    if config.spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims={config.spatial_dims} is not supported for phantoms; allowed: 2 or 3")
    if len(config.spacing) != config.spatial_dims:
        raise ValueError(f"spacing {config.spacing} needs {config.spatial_dims} values (one per spatial axis)")
    if config.size < 32:
        raise ValueError(f"size={config.size} is too small for the phantom anatomy; use >= 32")
    out = pathlib.Path(root)
    entries: Dict[str, List[Dict[str, str]]] = {}
    total = sum(config.counts().values())
    bar = tqdm(total=total, desc=f"phantoms {config.spatial_dims}D", disable=not progress)
    for split_index, (split, (image_dir, label_dir, prefix)) in enumerate(config.splits.items()):
        (out / image_dir).mkdir(parents=True, exist_ok=True)
        (out / label_dir).mkdir(parents=True, exist_ok=True)
        entries[split] = []
        for case in range(config.counts()[split]):
            rng = np.random.default_rng([config.seed, split_index, case])
            image, label = render_case(config, rng, lesions_in_host=split != "test_shifted")
            affine = affine_for(config, rng)
            name = f"phantom_{prefix}_{case:03d}.nii.gz"
            for array, folder in ((image, image_dir), (label, label_dir)):
                nifti = nib.Nifti1Image(array, affine)
                nifti.header.set_xyzt_units("mm")
                nib.save(nifti, str(out / folder / name))
            entries[split].append({"image": f"./{image_dir}/{name}", "label": f"./{label_dir}/{name}"})
            bar.update(1)
    bar.close()
    dataset = {
        "name": f"Phantom{config.spatial_dims}D",
        "description": "Synthetic organ + lesion phantoms with a lesion-in-host context bias (medseg_dropclass)",
        "tensorImageSize": f"{config.spatial_dims}D",
        "modality": {"0": "synthetic"},
        "labels": {str(k): name for k, name in enumerate(PHANTOM_CLASSES)},
        "numTraining": config.num_train,
        "numTest": config.num_test,
        "training": entries["training"],
        "test": entries["test"],
        "test_shifted": entries["test_shifted"],
    }
    path = out / "dataset.json"
    path.write_text(json.dumps(dataset, indent=2))
    return path


def ensure_phantoms(dataset_dir: str, spatial_dims: int) -> str:
    """Generate the default phantom dataset into ``dataset_dir`` if that folder is missing or empty.

    Raises:
        FileNotFoundError: ``dataset_dir`` exists, is not empty and holds no ``dataset.json``
            (a wrong path: nothing is written into someone else's folder).
    """
    if os.path.isfile(os.path.join(dataset_dir, "dataset.json")):
        return dataset_dir
    if os.path.exists(dataset_dir) and (not os.path.isdir(dataset_dir) or os.listdir(dataset_dir)):
        raise FileNotFoundError(
            f"dataset_dir {dataset_dir!r} holds no dataset.json; point it at a Decathlon-format dataset, "
            "or at a missing/empty folder to generate the phantoms there"
        )
    make_phantom_dataset(dataset_dir, DEFAULT_2D if spatial_dims == 2 else DEFAULT_3D)
    return dataset_dir
