"""Cityscapes (``leftImg8bit/`` + ``gtFine/`` layout), label ids mapped to the 19 train ids, the rest 255.

The label table is the one of the official ``cityscapesscripts`` package.
"""

import pathlib
from typing import Dict, List, Optional, Sequence, Union

from cityscapesscripts.helpers.labels import labels as CITYSCAPES_LABELS
from monai.transforms import Compose

from medseg_dropclass.data.natural import natural_image_dataset, natural_image_transforms
from medseg_dropclass.data.transforms import DatasetError, Dataset

__all__ = ["CITYSCAPES_CLASSES", "LABEL_ID_TO_TRAIN_ID", "cityscapes_datalist", "cityscapes_transforms", "cityscapes_dataset"]

IGNORE_INDEX = 255
LABEL_ID_TO_TRAIN_ID: Dict[int, int] = {
    label.id: (IGNORE_INDEX if label.trainId in (-1, 255) else label.trainId) for label in CITYSCAPES_LABELS if label.id >= 0
}
CITYSCAPES_CLASSES: List[str] = [
    label.name for label in sorted(CITYSCAPES_LABELS, key=lambda l: l.trainId) if 0 <= label.trainId < IGNORE_INDEX
]


def cityscapes_datalist(root: Union[str, pathlib.Path], split: str = "train") -> List[Dict[str, str]]:
    """``[{"image": *_leftImg8bit.png, "label": *_gtFine_labelIds.png}, ...]`` of one split.

    Raises:
        DatasetError: no images in the split, or an image without its label file (all named).
    """
    root = pathlib.Path(root)
    image_dir = root / "leftImg8bit" / split
    images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise DatasetError(f"{image_dir}: no '<city>/*_leftImg8bit.png' images (split {split!r} is empty or missing)")
    datalist, missing = [], []
    for image in images:
        stem = image.name[: -len("_leftImg8bit.png")]
        label = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if not label.is_file():
            missing.append(str(label))
        datalist.append({"image": str(image), "label": str(label)})
    if missing:
        raise DatasetError(f"{root}: {len(missing)} image(s) without a label file, e.g. {missing[:5]}")
    return datalist


def cityscapes_transforms(train: bool, crop_size: Optional[Sequence[int]] = None) -> Compose:
    return natural_image_transforms(
        len(CITYSCAPES_CLASSES), train, crop_size, label_mapping=LABEL_ID_TO_TRAIN_ID, ignore_index=IGNORE_INDEX
    )


def cityscapes_dataset(
    root: Union[str, pathlib.Path], split: str = "train", train: bool = True, crop_size: Optional[Sequence[int]] = None, cache: bool = False
) -> Dataset:
    return natural_image_dataset(cityscapes_datalist(root, split), cityscapes_transforms(train, crop_size), cache)
