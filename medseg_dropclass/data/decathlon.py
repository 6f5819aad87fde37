"""Medical Segmentation Decathlon-format datasets (``dataset.json`` + NIfTI/NRRD/MHA) through MONAI.

Works unchanged for the embedded phantoms and for real MSD task folders (Task03_Liver,
Task07_Pancreas, Task10_Colon, ...): datalists come from ``monai.data.load_decathlon_datalist``,
files are read by MONAI's ITK or nibabel readers, every pair is checked by
:class:`~medseg_dropclass.data.transforms.VerifyPaird` before resampling.
"""

import json
import pathlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from monai.data import load_decathlon_datalist, partition_dataset

from medseg_dropclass.data.preprocessing import DecathlonPreprocessing
from medseg_dropclass.data.transforms import CacheDataset, DatasetError, Dataset, NamedErrorsCompose, verify_keys

__all__ = [
    "DecathlonInfo",
    "read_dataset_json",
    "decathlon_datalist",
    "external_paths",
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

    @property
    def num_channels(self) -> int:
        """Image channels: one per ``modality`` entry (MSD's ``"4D"`` tasks are multi-channel 3D)."""
        return len(self.modalities)


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
    # "4D" in MSD means a multi-channel 3D image (channels = modalities), e.g. Task01_BrainTumour
    spatial_dims = {"2D": 2, "3D": 3, "4D": 3}.get(str(content.get("tensorImageSize", "")).upper())
    return DecathlonInfo(
        path=path,
        class_names=[numbered[k] for k in range(len(numbered))],
        modalities=[str(modality[k]) for k in sorted(modality, key=int)],
        spatial_dims=spatial_dims,
    )


def external_paths(dataset_json: Union[str, pathlib.Path], datalist: Sequence[Dict[str, str]]) -> List[str]:
    """The files of ``datalist`` (absolute paths) that lie outside the folder of ``dataset_json`` (an absolute path
    or a ``../`` in ``dataset.json``; symbolic links resolved), one ``"<path> (<key>)"`` each."""
    root = pathlib.Path(dataset_json).resolve().parent
    outside = []
    for item in datalist:
        for key in ("image", "label"):
            if key in item and not _inside(pathlib.Path(item[key]).resolve(), root):
                outside.append(f"{item[key]} ({key})")
    return outside


def _inside(path: pathlib.Path, root: pathlib.Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def decathlon_datalist(
    dataset_json: Union[str, pathlib.Path], split: str = "training", base_dir: Optional[str] = None, allow_external: bool = False,
) -> List[Dict[str, str]]:
    """``[{"image": path, "label": path}, ...]`` of one split, with absolute paths.

    Files outside the dataset folder (absolute paths, ``../``) are refused unless ``allow_external``: a
    ``dataset.json`` reaches only its own folder by default.

    Raises:
        DatasetError: the split is missing or empty, files it lists do not exist, or lie outside the dataset folder
            (all named).
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
    outside = [] if allow_external else external_paths(info.path, datalist)
    if outside:
        shown = "\n  ".join(outside[:20]) + (f"\n  ... and {len(outside) - 20} more" if len(outside) > 20 else "")
        raise DatasetError(
            f"{info.path}: split {split!r} lists {len(outside)} file(s) outside the dataset folder (pass --allow_external_paths "
            f"True if that is meant):\n  {shown}"
        )
    return datalist


def split_datalist(
    datalist: Sequence[Dict[str, str]], validation_fraction: float = 0.2, seed: int = 0
) -> Tuple[List[Dict[str, str]], List[Dict[str, str]]]:
    """Deterministic train/validation split (MSD tasks ship no validation split), through
    ``monai.data.partition_dataset``; both parts hold at least one case."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction={validation_fraction} is outside the allowed range (0, 1)")
    if len(datalist) < 2:
        raise DatasetError(f"cannot split {len(datalist)} case(s) into training and validation")
    count = min(max(1, round(validation_fraction * len(datalist))), len(datalist) - 1)
    training, validation = partition_dataset(
        list(datalist), ratios=[len(datalist) - count, count], shuffle=True, seed=seed
    )
    return training, validation


def decathlon_transforms(
    spatial_dims: int, num_classes: int, train: bool, with_label: bool = True, image_channels: Optional[int] = 1, **options
) -> NamedErrorsCompose:
    """The transforms of :class:`DecathlonPreprocessing` for one stage: ``train`` (random crops and flips),
    else ``evaluate`` (the label stays on its own grid) or, without labels, ``inference``.

    ``options`` are :class:`DecathlonPreprocessing`'s (``pixdim``, ``intensity``, ``crop_size``,
    ``foreground_share``, ``num_crops``, ``reader``, ``ignore_index``).
    """
    stage = "inference" if not with_label else "train" if train else "evaluate"
    return DecathlonPreprocessing(spatial_dims, num_classes, image_channels, **options).transforms(stage)


def decathlon_dataset(
    dataset_json: Union[str, pathlib.Path],
    split: str = "training",
    train: bool = True,
    cache: bool = True,
    datalist: Optional[List[Dict[str, str]]] = None,
    **transform_kwargs,
) -> Dataset:
    """A (cached) MONAI dataset of one split; ``transform_kwargs`` go to :func:`decathlon_transforms`.

    ``spatial_dims``, ``num_classes`` and ``image_channels`` default to what ``dataset.json`` says.
    """
    info = read_dataset_json(dataset_json)
    if datalist is None:
        datalist = decathlon_datalist(info.path, split)
    transform_kwargs.setdefault("num_classes", info.num_classes)
    if "spatial_dims" not in transform_kwargs:
        if info.spatial_dims is None:
            raise DatasetError(f"{info.path}: no 'tensorImageSize' (2D, 3D or 4D); pass spatial_dims explicitly")
        transform_kwargs["spatial_dims"] = info.spatial_dims
    transform_kwargs.setdefault("image_channels", info.num_channels)
    transform = decathlon_transforms(train=train, **transform_kwargs)
    if cache:
        return CacheDataset(datalist, transform, cache_rate=1.0, num_workers=0, progress=False)
    return Dataset(datalist, transform)
