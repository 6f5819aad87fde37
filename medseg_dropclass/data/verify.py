"""Check every image/label pair of a datalist and report all problems at once (nnU-Net style)."""

from typing import List, Mapping, Optional, Sequence

from monai.transforms import Compose, LoadImaged
from tqdm import tqdm

from medseg_dropclass.data.transforms import DatasetError, VerifyPaird

__all__ = ["verify_datalist"]


def verify_datalist(
    datalist: Sequence[Mapping[str, str]],
    num_classes: int,
    image_channels: Optional[int] = None,
    ignore_index: Optional[int] = None,
    reader: Optional[str] = None,
    progress: bool = True,
) -> int:
    """Load every pair, check it with :class:`VerifyPaird`, and raise one error listing every problem.

    Returns:
        The number of pairs checked (all fine).

    Raises:
        DatasetError: one message with a line per bad pair (file and problem); unreadable files included.
    """
    check = Compose(
        [
            LoadImaged(keys=["image", "label"], reader=reader, ensure_channel_first=True, image_only=True),
            VerifyPaird("image", "label", num_classes=num_classes, image_channels=image_channels, ignore_index=ignore_index),
        ],
        map_items=False,
    )
    problems: List[str] = []
    for item in tqdm(datalist, desc="verify", disable=not progress):
        try:
            check(dict(item))
        except DatasetError as error:
            problems.append(str(error))
        except Exception as error:  # unreadable or missing file: name it, keep going
            cause = error.__cause__ or error
            problems.append(f"{item.get('image')} / {item.get('label')}: cannot be read ({type(cause).__name__}: {cause})")
    if problems:
        raise DatasetError(f"{len(problems)} of {len(datalist)} case(s) have problems:\n" + "\n".join(problems))
    return len(datalist)
