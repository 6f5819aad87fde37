"""Check a dataset's files and report every problem at once (nnU-Net's ``--verify_dataset_integrity``)."""

import json
import pathlib
from typing import Dict, List, Mapping, Optional, Sequence, Union

from monai.transforms import Compose
from tqdm import tqdm

from medseg_dropclass.data.transforms import DatasetError, NamedLoadImaged, VerifyImaged, VerifyPaird

__all__ = ["datalist_problems", "verify_datalist", "check_dataset"]


def datalist_problems(
    datalist: Sequence[Mapping[str, str]],
    num_classes: int,
    image_channels: Optional[int] = None,
    ignore_index: Optional[int] = None,
    reader: Optional[str] = None,
    progress: bool = True,
) -> List[str]:
    """One line per bad case (file and problem): unreadable, empty or truncated files, shape or geometry
    mismatch, label values, non-finite image values, channel count. Entries without ``"label"`` are
    checked as images alone."""
    pairs = Compose(
        [
            NamedLoadImaged(keys=["image", "label"], reader=reader, ensure_channel_first=True, image_only=True),
            VerifyPaird("image", "label", num_classes=num_classes, image_channels=image_channels, ignore_index=ignore_index),
        ],
        map_items=False,
    )
    images = Compose(
        [NamedLoadImaged(keys="image", reader=reader, ensure_channel_first=True, image_only=True), VerifyImaged("image", image_channels)],
        map_items=False,
    )
    problems: List[str] = []
    for item in tqdm(datalist, desc="check", disable=not progress):
        try:
            (pairs if "label" in item else images)(dict(item))
        except DatasetError as error:
            problems.append(str(error))
        except Exception as error:  # unreadable, empty or truncated file: name it, keep going
            cause = error.__cause__ or error
            files = " / ".join(str(item[k]) for k in ("image", "label") if k in item)
            problems.append(f"{files}: cannot be read ({type(cause).__name__}: {cause})")
    return problems


def verify_datalist(
    datalist: Sequence[Mapping[str, str]],
    num_classes: int,
    image_channels: Optional[int] = None,
    ignore_index: Optional[int] = None,
    reader: Optional[str] = None,
    progress: bool = True,
) -> int:
    """Load every pair, check it, and raise one error listing every problem.

    Returns:
        The number of pairs checked (all fine).

    Raises:
        DatasetError: one message with a line per bad pair (file and problem); unreadable files included.
    """
    problems = datalist_problems(datalist, num_classes, image_channels, ignore_index, reader, progress)
    if problems:
        raise DatasetError(f"{len(problems)} of {len(datalist)} case(s) have problems:\n" + "\n".join(problems))
    return len(datalist)


def check_dataset(dataset_dir: Union[str, pathlib.Path], progress: bool = True) -> Dict[str, object]:
    """Check a Decathlon dataset: ``dataset.json`` keys and labels, every split and every file it lists.

    Returns:
        ``{"problems": [line, ...], "warnings": [line, ...], "info": DecathlonInfo or None, "cases": {split: count}}``.
        No problems means every listed file loads and lies inside the dataset folder, pairs match in shape and
        geometry, labels are integer classes of ``labels``, images are finite and have one channel per
        ``modality``. Warnings are what training can work around: an empty optional split, a missing
        ``tensorImageSize`` (then ``--spatial_dims`` must be passed).
    """
    from monai.data import load_decathlon_datalist

    from medseg_dropclass.data.decathlon import external_paths, read_dataset_json

    try:
        info = read_dataset_json(dataset_dir)
    except DatasetError as error:
        return {"problems": [str(error)], "warnings": [], "info": None, "cases": {}}
    content = json.loads(info.path.read_text())
    problems: List[str] = []
    warnings: List[str] = []
    if info.spatial_dims is None:
        warnings.append(f"{info.path}: no 'tensorImageSize' (2D, 3D or 4D): training needs --spatial_dims 2 (or 3)")
    cases: Dict[str, int] = {}
    for split, entries in content.items():
        if not isinstance(entries, list) or split in ("modality", "labels"):
            continue
        if not entries:
            (problems if split == "training" else warnings).append(f"{info.path}: split {split!r} is empty")
            continue
        datalist = load_decathlon_datalist(str(info.path), True, split, str(info.path.parent))
        problems += [f"{path}: outside the dataset folder ({split}); training refuses it unless --allow_external_paths True"
                     for path in external_paths(info.path, datalist)]
        missing = [f"{item[k]}: missing ({split} {k})" for item in datalist for k in ("image", "label") if k in item and not pathlib.Path(item[k]).is_file()]
        problems += missing
        present = [item for item in datalist if all(pathlib.Path(item[k]).is_file() for k in ("image", "label") if k in item)]
        problems += datalist_problems(present, info.num_classes, len(info.modalities), progress=progress)
        cases[split] = len(datalist)
    return {"problems": problems, "warnings": warnings, "info": info, "cases": cases}
