"""Pascal VOC 2012 segmentation: JPEGImages, palette PNGs in SegmentationClass read as indices, 255 = void."""

import pathlib
from typing import Dict, List, Optional, Sequence, Union

from monai.transforms import Compose

from medseg_dropclass.data.natural import natural_image_dataset, natural_image_transforms
from medseg_dropclass.data.transforms import DatasetError, Dataset

__all__ = ["VOC_CLASSES", "voc_datalist", "voc_transforms", "voc_dataset"]

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
IGNORE_INDEX = 255


def voc_datalist(root: Union[str, pathlib.Path], split: str = "train") -> List[Dict[str, str]]:
    """``[{"image": JPEGImages/<id>.jpg, "label": SegmentationClass/<id>.png}, ...]`` from ``ImageSets/Segmentation/<split>.txt``.

    Raises:
        DatasetError: a missing or empty split list, or listed ids without their files (all named).
    """
    root = pathlib.Path(root)
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"{listing}: no such split list")
    ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"{listing}: split {split!r} is empty")
    datalist, missing = [], []
    for name in ids:
        item = {"image": str(root / "JPEGImages" / f"{name}.jpg"), "label": str(root / "SegmentationClass" / f"{name}.png")}
        missing += [path for path in item.values() if not pathlib.Path(path).is_file()]
        datalist.append(item)
    if missing:
        raise DatasetError(f"{listing}: {len(missing)} listed file(s) missing, e.g. {missing[:5]}")
    return datalist


def voc_transforms(train: bool, crop_size: Optional[Sequence[int]] = None) -> Compose:
    return natural_image_transforms(len(VOC_CLASSES), train, crop_size, label_mapping=None, ignore_index=IGNORE_INDEX)


def voc_dataset(
    root: Union[str, pathlib.Path], split: str = "train", train: bool = True, crop_size: Optional[Sequence[int]] = None, cache: bool = False
) -> Dataset:
    return natural_image_dataset(voc_datalist(root, split), voc_transforms(train, crop_size), cache)
