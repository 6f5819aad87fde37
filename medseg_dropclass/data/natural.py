"""Shared transforms for the natural-image datasets (Cityscapes, Pascal VOC): PNG/JPEG -> dict samples.

They yield the same ``{"image": (3, H, W), "label": (1, H, W)}`` samples as the medical loaders,
with ``ignore_index=255`` pixels kept for the loss to ignore.
"""

from typing import Mapping, Optional, Sequence

from monai.transforms import (
    Compose,
    EnsureTyped,
    LoadImaged,
    NormalizeIntensityd,
    RandFlipd,
    RandSpatialCropd,
    ScaleIntensityRanged,
    SpatialPadd,
)

from medseg_dropclass.data.transforms import CacheDataset, Dataset, LookupLabelsd, VerifyPaird

__all__ = ["natural_image_transforms", "natural_image_dataset", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def natural_image_transforms(
    num_classes: int,
    train: bool,
    crop_size: Optional[Sequence[int]] = None,
    label_mapping: Optional[Mapping[int, int]] = None,
    ignore_index: int = 255,
) -> Compose:
    """Load an RGB image and an index label map, remap labels, check them, normalise, crop and flip.

    ``PILReader(reverse_indexing=False)`` keeps images as ``(H, W)``; palette PNGs are read as
    their indices, never converted to RGB.
    """
    keys = ["image", "label"]
    steps: list = [LoadImaged(keys=keys, reader="PILReader", reverse_indexing=False, ensure_channel_first=True, image_only=True)]
    if label_mapping is not None:
        steps.append(LookupLabelsd("label", label_mapping, default=ignore_index))
    steps += [
        VerifyPaird("image", "label", num_classes=num_classes, image_channels=3, ignore_index=ignore_index),
        ScaleIntensityRanged(keys="image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0),
        NormalizeIntensityd(keys="image", subtrahend=IMAGENET_MEAN, divisor=IMAGENET_STD, channel_wise=True),
    ]
    if train and crop_size is not None:
        steps += [
            SpatialPadd(keys="image", spatial_size=tuple(crop_size), value=0.0),
            SpatialPadd(keys="label", spatial_size=tuple(crop_size), value=ignore_index),
            RandSpatialCropd(keys=keys, roi_size=tuple(crop_size), random_size=False),
        ]
    if train:
        steps.append(RandFlipd(keys=keys, prob=0.5, spatial_axis=1))
    steps.append(EnsureTyped(keys=keys, track_meta=not train))
    return Compose(steps)


def natural_image_dataset(datalist, transform: Compose, cache: bool) -> Dataset:
    """A (cached) dataset whose data errors name the file."""
    return CacheDataset(datalist, transform, progress=False) if cache else Dataset(datalist, transform)
