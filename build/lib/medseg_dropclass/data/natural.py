"""Shared pieces of the natural-image datasets (Cityscapes, Pascal VOC): PNG/JPEG -> dict samples.

The transforms are :class:`~medseg_dropclass.data.preprocessing.NaturalImagePreprocessing`'s; they yield
the same ``{"image": (3, H, W), "label": (1, H, W)}`` samples as the medical loaders, with
``ignore_index=255`` pixels kept for the loss to ignore.
"""

from typing import Mapping, Optional, Sequence

from medseg_dropclass.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, NaturalImagePreprocessing
from medseg_dropclass.data.transforms import CacheDataset, Dataset, NamedErrorsCompose

__all__ = ["natural_image_transforms", "natural_image_dataset", "IMAGENET_MEAN", "IMAGENET_STD"]


def natural_image_transforms(
    num_classes: int,
    train: bool,
    crop_size: Optional[Sequence[int]] = None,
    label_mapping: Optional[Mapping[int, int]] = None,
    ignore_index: int = 255,
) -> NamedErrorsCompose:
    """The ``train`` or ``evaluate`` transforms of :class:`NaturalImagePreprocessing`."""
    preprocessing = NaturalImagePreprocessing(num_classes, crop_size, label_mapping, ignore_index)
    return preprocessing.transforms("train" if train else "evaluate")


def natural_image_dataset(datalist, transform: NamedErrorsCompose, cache: bool) -> Dataset:
    """A (cached) dataset whose data errors name the file."""
    return CacheDataset(datalist, transform, progress=False) if cache else Dataset(datalist, transform)
