"""Medical Segmentation Decathlon-format datasets (``dataset.json`` + NIfTI/NRRD/MHA) through MONAI.

Works unchanged for the embedded phantoms and for real MSD task folders (Task03_Liver,
Task07_Pancreas, Task10_Colon, ...): datalists come from ``monai.data.load_decathlon_datalist``,
files are read by MONAI's ITK or nibabel readers, every pair is checked by
:class:`~medseg_dropclass.data.transforms.VerifyPaird` before resampling.
"""

import json
import pathlib
import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from monai.data import load_decathlon_datalist
from monai.transforms import (
    ClassesToIndicesd,
    Compose,
    DeleteItemsd,
    EnsureTyped,
    LoadImaged,
    NormalizeIntensityd,
    Orientationd,
    RandCropByLabelClassesd,
    RandFlipd,
    ScaleIntensityRanged,
    Spacingd,
    SpatialPadd,
)

from medseg_dropclass.data.transforms import CacheDataset, DatasetError, Dataset, VerifyPaird, verify_keys

__all__ = [
    "DecathlonInfo",
    "read_dataset_json",
    "decathlon_datalist",
    "split_datalist",
    "decathlon_transforms",
    "decathlon_dataset",
]

REQUIRED_KEYS = ("labels", "training")


@dataclass
class DecathlonInfo:
    """What a ``dataset.json`` says about a dataset."""

    path: pathlib.Path
    class_names: List[str]
    modalities: List[str]
    spatial_dims: Optional[int]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def read_dataset_json(path: Union[str, pathlib.Path]) -> DecathlonInfo:
    """Read and check a ``dataset.json``; labels must be numbered ``0..K-1``.

    Raises:
        DatasetError: unreadable JSON, missing keys, or labels that are not ``0..K-1``.
    """
    path = pathlib.Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (expected a Decathlon dataset.json)")
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: cannot be read as JSON ({error})") from error
    verify_keys(content, REQUIRED_KEYS, str(path))
    labels = content["labels"]
    try:
        numbered = {int(k): str(v) for k, v in labels.items()}
    except (AttributeError, ValueError) as error:
        raise DatasetError(f"{path}: 'labels' must map class numbers to names, got {labels!r}") from error
    if sorted(numbered) != list(range(len(numbered))) or len(numbered) < 2:
        raise DatasetError(f"{path}: 'labels' must number at least 2 classes 0..K-1, got {sorted(numbered)}")
    modality = content.get("modality", {"0": "image"})
    dims = content.get("tensorImageSize")
    return DecathlonInfo(
        path=path,
        class_names=[numbered[k] for k in range(len(numbered))],
        modalities=[str(modality[k]) for k in sorted(modality, key=int)],
        spatial_dims=int(dims[0]) if isinstance(dims, str) and dims[:1] in ("2", "3") else None,
    )


def decathlon_datalist(
    dataset_json: Union[str, pathlib.Path], split: str = "training", base_dir: Optional[str] = None
) -> List[Dict[str, str]]:
    """``[{"image": path, "label": path}, ...]`` of one split, with absolute paths.

    Raises:
        DatasetError: the split is missing or empty, or files it lists do not exist (all named).
    """
    info = read_dataset_json(dataset_json)
    content = json.loads(info.path.read_text())
    if split not in content:
        splits = [k for k, v in content.items() if isinstance(v, list)]
        raise DatasetError(f"{info.path}: no split {split!r}; splits present: {splits}")
    if not content[split]:
        raise DatasetError(f"{info.path}: split {split!r} is empty")
    datalist = load_decathlon_datalist(str(info.path), True, split, base_dir or str(info.path.parent))
    missing = [
        f"{item[key]} ({key})" for item in datalist for key in ("image", "label") if key in item and not pathlib.Path(item[key]).is_file()
    ]
    if missing:
        shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise DatasetError(f"{info.path}: split {split!r} lists {len(missing)} missing file(s):\n  {shown}")
    return datalist


def split_datalist(
    datalist: Sequence[Dict[str, str]], validation_fraction: float = 0.2, seed: int = 0
) -> Tuple[List[Dict[str, str]], List[Dict[str, str]]]:
    """Deterministic train/validation split (MSD tasks ship no validation split)."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction={validation_fraction} is outside the allowed range (0, 1)")
    if len(datalist) < 2:
        raise DatasetError(f"cannot split {len(datalist)} case(s) into training and validation")
    order = list(range(len(datalist)))
    random.Random(seed).shuffle(order)
    count = min(max(1, round(validation_fraction * len(datalist))), len(datalist) - 1)
    validation = sorted(order[:count])
    training = sorted(order[count:])
    return [datalist[i] for i in training], [datalist[i] for i in validation]


def decathlon_transforms(
    spatial_dims: int,
    num_classes: int,
    train: bool,
    pixdim: Optional[Sequence[float]] = None,
    intensity: Union[str, Tuple[float, float]] = "zscore",
    crop_size: Optional[Sequence[int]] = None,
    class_ratios: Optional[Sequence[float]] = None,
    num_crops: int = 1,
    image_channels: Optional[int] = 1,
    reader: Optional[str] = None,
    with_label: bool = True,
) -> Compose:
    """MONAI transforms from files to ``{"image": (C, *spatial), "label": (1, *spatial)}``.

    Args:
        spatial_dims: 2 or 3.
        num_classes: classes ``K`` (labels are checked against ``0..K-1``).
        train: add the random rare-class-aware crop and flips.
        pixdim: target spacing in mm (``None``: keep the file's spacing).
        intensity: ``"zscore"`` (per image, over the non-zero voxels) or a CT window
            ``(low, high)`` in HU scaled to ``[0, 1]``.
        crop_size: training crop (``None``: whole images). Crop centres are chosen per class with
            ``class_ratios`` (default: every class equally often, which oversamples rare classes).
        num_crops: crops per loaded case (training).
        image_channels: expected image channels (``None``: any).
        reader: ``"ITKReader"``, ``"NibabelReader"`` or ``None`` (MONAI picks by file suffix).
        with_label: ``False`` for inference on images alone.
    """
    keys = ["image", "label"] if with_label else ["image"]
    steps: list = [LoadImaged(keys=keys, reader=reader, ensure_channel_first=True, image_only=True)]
    if with_label:
        steps.append(VerifyPaird("image", "label", num_classes=num_classes, image_channels=image_channels))
    steps.append(Orientationd(keys=keys, axcodes="RAS"[:spatial_dims], labels=(("L", "R"), ("P", "A"), ("I", "S"))))
    if pixdim is not None:
        if len(pixdim) != spatial_dims:
            raise ValueError(f"pixdim {tuple(pixdim)} needs {spatial_dims} values (one per spatial axis)")
        steps.append(Spacingd(keys=keys, pixdim=tuple(pixdim), mode=("bilinear", "nearest")[: len(keys)]))
    if intensity == "zscore":
        steps.append(NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True))
    elif isinstance(intensity, (tuple, list)) and len(intensity) == 2:
        steps.append(ScaleIntensityRanged(keys="image", a_min=intensity[0], a_max=intensity[1], b_min=0.0, b_max=1.0, clip=True))
    else:
        raise ValueError(f"intensity={intensity!r} is not 'zscore' or a (low, high) window")
    if train and with_label:
        if crop_size is not None:
            if len(crop_size) != spatial_dims:
                raise ValueError(f"crop_size {tuple(crop_size)} needs {spatial_dims} values")
            steps.append(SpatialPadd(keys=keys, spatial_size=tuple(crop_size)))
            # where each class is: computed once, in the cached (deterministic) part of the pipeline
            steps.append(ClassesToIndicesd(keys="label", num_classes=num_classes, indices_postfix="_class_indices"))
            steps.append(
                RandCropByLabelClassesd(
                    keys=keys,
                    label_key="label",
                    spatial_size=tuple(crop_size),
                    num_classes=num_classes,
                    ratios=list(class_ratios) if class_ratios is not None else [1.0] * num_classes,
                    num_samples=num_crops,
                    indices_key="label_class_indices",
                    warn=False,
                )
            )
            steps.append(DeleteItemsd(keys="label_class_indices"))
        steps += [RandFlipd(keys=keys, prob=0.5, spatial_axis=axis) for axis in range(spatial_dims)]
    steps.append(EnsureTyped(keys=keys, track_meta=not train))
    return Compose(steps)


def decathlon_dataset(
    dataset_json: Union[str, pathlib.Path],
    split: str = "training",
    train: bool = True,
    cache: bool = True,
    datalist: Optional[List[Dict[str, str]]] = None,
    **transform_kwargs,
) -> Dataset:
    """A (cached) MONAI dataset of one split; ``transform_kwargs`` go to :func:`decathlon_transforms`.

    ``spatial_dims`` and ``num_classes`` default to what ``dataset.json`` says.
    """
    info = read_dataset_json(dataset_json)
    if datalist is None:
        datalist = decathlon_datalist(info.path, split)
    transform_kwargs.setdefault("num_classes", info.num_classes)
    if "spatial_dims" not in transform_kwargs:
        if info.spatial_dims is None:
            raise DatasetError(f"{info.path}: no 'tensorImageSize'; pass spatial_dims explicitly")
        transform_kwargs["spatial_dims"] = info.spatial_dims
    transform_kwargs.setdefault("image_channels", len(info.modalities))
    transform = decathlon_transforms(train=train, **transform_kwargs)
    if cache:
        return CacheDataset(datalist, transform, cache_rate=1.0, num_workers=0, progress=False)
    return Dataset(datalist, transform)
