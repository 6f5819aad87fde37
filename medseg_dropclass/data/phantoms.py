"""Deterministic synthetic organ + lesion phantoms in the Medical Segmentation Decathlon layout (v2).

Each case is a "body" with three organs (about 15%, 7% and 3% of the pixels in 2D; 10%, 5% and 2.5%
in 3D) and three lesion classes. Each lesion class has a host organ: in training and in the
in-distribution test split it sits inside its host with probability ``host_probability`` (sweep it to
change the strength of the context bias), elsewhere in the body otherwise. In the *context-shifted*
test split every lesion sits outside its host, the case DropClass claims to help with.

The shift changes context alone: a lesion is drawn as an intensity *offset* added to whatever lies
under it, with a contrast (in noise standard deviations) drawn from the same distribution inside and
outside the host. Lesion classes differ in appearance (``lesion_a`` brighter than its surroundings,
``lesion_b`` darker, ``lesion_c`` much brighter) and size; every lesion covers at least
``MIN_LESION_PIXELS`` pixels in 2D (``MIN_LESION_VOXELS`` in 3D: the same physical ball with the thicker
slices). ``lesion_c`` stays rare (share < 0.1%) because few cases have one, not because it is tiny.

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
from scipy import ndimage
from tqdm import tqdm

__all__ = ["PHANTOM_CLASSES", "LESIONS", "LesionClass", "MIN_LESION_PIXELS", "MIN_LESION_VOXELS", "PhantomConfig", "make_phantom_dataset", "ensure_phantoms", "render_case", "DEFAULT_2D", "DEFAULT_3D", "PHANTOM_VERSION"]

PHANTOM_CLASSES = ["background", "organ_large", "organ_medium", "organ_small", "lesion_a", "lesion_b", "lesion_c"]
# organ -> mean intensity (before the per-case gain); the body background is 40, outside the body 0
INTENSITY = {0: 40.0, 1: 100.0, 2: 70.0, 3: 130.0}
OUTSIDE_BODY = 0.0
# organ: (centre as fraction of the size per axis, radii as fraction of the size per axis); in 3D
# the organs span most slices (the z radius) and are 10% wider, to keep their 2D voxel shares
ORGANS = {
    1: ((0.36, 0.36, 0.5), (0.25, 0.19, 0.42)),
    2: ((0.68, 0.66, 0.5), (0.15, 0.15, 0.45)),
    3: ((0.33, 0.72, 0.5), (0.1, 0.1, 0.48)),
}
WIDER_IN_3D = 1.1


@dataclass(frozen=True)
class LesionClass:
    """One lesion class: its host organ, radius (fraction of the size), presence and contrast.

    ``contrast`` is ``(low, high)`` in noise standard deviations, signed: the lesion adds
    ``U(low, high) * noise`` to what lies under it, inside or outside its host alike.
    """

    host: int
    radius: float
    presence: float
    contrast: Tuple[float, float]


LESIONS = {
    4: LesionClass(host=1, radius=0.05, presence=0.8, contrast=(3.0, 5.0)),
    5: LesionClass(host=2, radius=0.036, presence=0.6, contrast=(-5.0, -3.0)),
    6: LesionClass(host=3, radius=0.036, presence=0.12, contrast=(6.0, 9.0)),
}
PHANTOM_VERSION = 2  # written into dataset.json; ensure_phantoms refuses a folder of another version
MIN_LESION_PIXELS = 25
# the ball whose in-plane disc has MIN_LESION_PIXELS, counted on slices twice as thick as the in-plane size
MIN_LESION_VOXELS = int(4.0 / 3.0 * math.pi * (MIN_LESION_PIXELS / math.pi) ** 1.5 / 2.0)


@dataclass
class PhantomConfig:
    """Sizes and splits of a phantom dataset.

    Attributes:
        spatial_dims: 2 or 3.
        size: voxels per axis (3D: the last axis is ``size // 2``, with thicker slices).
        spacing: voxel size in mm per axis.
        num_train, num_test, num_shifted: cases per split.
        host_probability: chance that a lesion sits in its host organ (train and in-distribution test);
            1.0 is a perfect shortcut, 1/4 about no bias.
        noise: standard deviation of the Gaussian noise.
        seed: the dataset is a pure function of the configuration.
    """

    spatial_dims: int = 2
    size: int = 96
    spacing: Tuple[float, ...] = (0.8, 0.8)
    num_train: int = 100
    num_test: int = 300
    num_shifted: int = 300
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
DEFAULT_3D = PhantomConfig(spatial_dims=3, size=64, spacing=(1.0, 1.0, 2.5), num_train=24, num_test=40, num_shifted=40)


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


def _min_radius(shape: Sequence[int], min_size: int) -> float:
    """Radius (fraction of each axis) whose ellipsoid covers about ``min_size`` voxels, with a margin."""
    volume_per_unit = math.pi if len(shape) == 2 else 4.0 / 3.0 * math.pi
    radius_fraction = (min_size / (volume_per_unit * float(np.prod(shape)))) ** (1.0 / len(shape))
    return 1.15 * radius_fraction


def _inset(region: np.ndarray, radius: float) -> np.ndarray:
    """The voxels of ``region`` farther than ``radius`` (fraction of each axis) from its outside."""
    distance = ndimage.distance_transform_edt(region, sampling=[1.0 / n for n in region.shape])
    return distance > radius


def _dilate(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one voxel along each axis (a gap between lesions)."""
    out = mask.copy()
    for axis in range(mask.ndim):
        out |= np.roll(mask, 1, axis) | np.roll(mask, -1, axis)
    return out


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
    taken = np.zeros(shape, dtype=bool)  # lesions do not overlap (each keeps its full size)
    min_size = MIN_LESION_PIXELS if dims == 2 else MIN_LESION_VOXELS
    for lesion, spec in LESIONS.items():
        present = rng.random() < spec.presence
        in_host = lesions_in_host and rng.random() < config.host_probability
        size_factor, contrast = rng.uniform(0.85, 1.15), rng.uniform(*spec.contrast)
        if not present:
            continue
        radius = max(spec.radius * size_factor, _min_radius(shape, min_size))
        host = labels == spec.host
        # in the host: the whole lesion inside it; elsewhere: the whole lesion clear of it
        region = _inset(host, radius) if in_host else _inset(body & ~host, radius) & (labels < 4)
        if not region.any():  # a host too small for the lesion: its centre still lies inside
            region = host if in_host else body & ~host & (labels < 4)
        allowed = region & ~taken
        for _ in range(20):  # a centre where the lesion fits and touches no other lesion
            centre = _lesion_centre(rng, labels, allowed if allowed.any() else region, margin=0.08)
            radii = tuple(radius * np.ones(dims))
            mask = _ellipsoid(coarse, centre, radii)
            if mask.sum() >= min_size and not (mask & taken).any():
                break
            radius *= 1.05
        labels[mask] = lesion
        taken |= _dilate(mask)
        lesion_shapes.append((centre, radii, contrast * config.noise))

    # image: the same geometry on the fine grid, averaged down (partial volume at the borders); a
    # lesion is an offset on what lies under it, so its local contrast does not depend on its context
    fine_shape = tuple(n * factor for n in shape)
    intensity = np.full(fine_shape, OUTSIDE_BODY, dtype=np.float32)
    intensity[_ellipsoid(fine, body_centre, body_radii)] = INTENSITY[0]
    for cls, centre, radii in shapes[1:]:
        intensity[_ellipsoid(fine, centre, radii)] = INTENSITY[cls]
    for centre, radii, offset in lesion_shapes:
        intensity[_ellipsoid(fine, centre, radii)] += offset
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
        "phantom_version": PHANTOM_VERSION,
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
    dataset_json = os.path.join(dataset_dir, "dataset.json")
    if os.path.isfile(dataset_json):
        with open(dataset_json) as handle:
            content = json.load(handle)
        name = str(content.get("name", ""))
        if name.startswith("Phantom") and content.get("phantom_version", 1) != PHANTOM_VERSION:
            raise FileExistsError(
                f"{dataset_json}: phantoms of version {content.get('phantom_version', 1)}, this code generates version "
                f"{PHANTOM_VERSION}; delete {dataset_dir} to regenerate, or pass another dataset_dir (nothing is overwritten)"
            )
        return dataset_dir
    if os.path.exists(dataset_dir) and (not os.path.isdir(dataset_dir) or os.listdir(dataset_dir)):
        raise FileNotFoundError(
            f"dataset_dir {dataset_dir!r} holds no dataset.json; point it at a Decathlon-format dataset, "
            "or at a missing/empty folder to generate the phantoms there"
        )
    make_phantom_dataset(dataset_dir, DEFAULT_2D if spatial_dims == 2 else DEFAULT_3D)
    return dataset_dir
