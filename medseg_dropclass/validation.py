"""One home for the checks that several modules make, so each says the same thing the same way."""

import math
import os
from typing import Any, Dict, Iterable, Optional, Tuple, Type, Union

import torch

__all__ = [
    "INTERPOLATION_MODES",
    "interpolation_mode",
    "check_num_classes",
    "check_label_values",
    "nanmean",
    "require_file",
    "require_dir",
    "check_types",
    "check_batches",
    "InputError",
    "MissingFileError",
    "check_writable_folder",
    "error_in_chain",
]


class InputError(ValueError):
    """A file or folder the user named cannot serve: the message starts with its path and says what is wrong."""


class MissingFileError(InputError, FileNotFoundError):
    """A file the user named does not exist."""


# torch's linear interpolation mode per spatial dimension count
INTERPOLATION_MODES = ("linear", "bilinear", "trilinear")


def error_in_chain(
    error: Optional[BaseException],
    types: Union[Type[BaseException], Tuple[Type[BaseException], ...]],
    context: bool = True,
) -> Optional[BaseException]:
    """The first exception of ``types`` in ``error``'s chain, ``error`` itself first: the project's named error
    below MONAI's wrappers (``RuntimeError("applying transform ...")``, "Failed to instantiate ..."), which hide the
    file or value it names. Follows ``__cause__`` and, with ``context``, ``__context__`` (an error raised while
    handling another); a cycle ends the walk. The one place the project unwraps errors."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, types):
            return error
        seen.add(id(error))
        error = error.__cause__ or (error.__context__ if context else None)
    return None


def interpolation_mode(spatial_dims: int) -> str:
    """``"linear"`` / ``"bilinear"`` / ``"trilinear"`` for 1/2/3 spatial dimensions."""
    if not 1 <= spatial_dims <= 3:
        raise ValueError(f"spatial_dims={spatial_dims} is not 1, 2 or 3")
    return INTERPOLATION_MODES[spatial_dims - 1]


def check_num_classes(num_classes: int, what: str = "segmentation") -> int:
    """``num_classes`` if it is at least 2, else ``ValueError``."""
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} is too small; {what} needs num_classes >= 2")
    return num_classes


def check_label_values(
    values: torch.Tensor,
    num_classes: int,
    ignore_index: Optional[int] = None,
    where: str = "target",
    error: type = ValueError,
) -> None:
    """Raise ``error`` naming ``where`` and the first value outside ``0..K-1`` that is not ``ignore_index``.

    Args:
        values: label values (any shape; e.g. the unique values, or a whole map).
    """
    values = torch.as_tensor(values).reshape(-1)
    bad = (values < 0) | (values >= num_classes)
    if ignore_index is not None:
        bad &= values != ignore_index
    if bool(bad.any()):
        outside = values[bad].unique()
        allowed = f"0..{num_classes - 1}" + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
        raise error(
            f"{where}: label value {int(outside[0])} outside the classes {allowed} (num_classes={num_classes})"
            + (f"; other bad values: {outside[1:].long().tolist()}" if outside.numel() > 1 else "")
        )


def nanmean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN; NaN when none is left."""
    kept = [float(v) for v in values if not math.isnan(float(v))]
    return sum(kept) / len(kept) if kept else float("nan")


def require_file(path: str, what: str) -> str:
    """``path`` if it is a file, else :class:`MissingFileError` (a ``FileNotFoundError``) naming ``what`` and ``path``."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such {what}")
    return path


def check_writable_folder(folder: str) -> str:
    """``folder`` if it exists (or can be created) and this process can write into it, else :class:`InputError`."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise InputError(f"{folder}: the output folder cannot be created ({error.strerror})") from error
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: is not a folder")
    try:  # a real write: permissions, read-only mounts and ACLs alike
        import tempfile

        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(f"{folder}: the output folder is not writable ({error.strerror})") from error
    return folder


def require_dir(path: str, what: str, must_contain: Optional[str] = None) -> str:
    """``path`` if it is a folder (holding ``must_contain``), else ``FileNotFoundError``."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} {path!r} is not a folder")
    if must_contain is not None and not os.path.exists(os.path.join(path, must_contain)):
        raise FileNotFoundError(f"{what} {path!r} has no {must_contain}")
    return path


def check_types(values: Dict[str, Tuple[Any, Any]]) -> bool:
    """``{"name": (value, type_or_types)}``: raise ``TypeError`` naming every config value of the wrong type.

    Bundle CLIs deliver overrides as typed by the shell parser (``--max_epochs abc`` arrives as a
    string); this turns that into one clear message instead of an error deep inside ignite.
    """
    wrong = []
    for name, (value, expected) in values.items():
        expected = expected if isinstance(expected, tuple) else (expected,)
        names = "/".join(t.__name__ for t in expected)
        if isinstance(value, bool) and bool not in expected:
            wrong.append(f"{name}={value!r} (bool; expected {names})")
        elif not isinstance(value, expected):
            wrong.append(f"{name}={value!r} ({type(value).__name__}; expected {names})")
    if wrong:
        raise TypeError("config value(s) of the wrong type: " + "; ".join(wrong))
    return True


def check_batches(samples: int, batch_size: int, what: str = "training split") -> bool:
    """Refuse a loader that would yield no batch (``drop_last``): MONAI would skip training with a warning."""
    if samples < batch_size:
        raise ValueError(
            f"the {what} has {samples} sample(s), fewer than batch_size={batch_size}: no training iteration "
            "would run; lower --batch_size or add data"
        )
    return True
