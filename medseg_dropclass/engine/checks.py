"""Small checks that bundle configs call, so bad input fails early with a message naming the problem."""

import glob
import os
import pathlib
from typing import Any, Dict, Optional, Tuple

from monai.transforms import MapTransform

from medseg_dropclass.data.transforms import DatasetError, source_name

__all__ = [
    "require_file",
    "require_dir",
    "check_types",
    "latest_checkpoint",
    "VerifyImaged",
    "bundle_root",
    "ensure_phantoms",
    "image_datalist",
    "check_batches",
]


def check_batches(samples: int, batch_size: int, what: str = "training split") -> bool:
    """Refuse a loader that would yield no batch (``drop_last``): MONAI would skip training with a warning."""
    if samples < batch_size:
        raise ValueError(
            f"the {what} has {samples} sample(s), fewer than batch_size={batch_size}: no training iteration "
            "would run; lower --batch_size or add data"
        )
    return True

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


def image_datalist(source: str, key: str = "image", suffixes: Optional[Tuple[str, ...]] = None) -> list:
    """``[{"image": path}, ...]`` from a folder of images (NIfTI/NRRD/MHA by default) or a JSON datalist.

    A JSON file may hold a list of paths or of ``{"image": path}`` dicts, or a Decathlon
    ``dataset.json`` (its ``test`` entries). Relative paths are taken from the file's folder.

    Raises:
        FileNotFoundError: the source does not exist, lists a missing file, or holds no image.
    """
    import json

    path = pathlib.Path(source)
    suffixes = tuple(suffixes) if suffixes is not None else IMAGE_SUFFIXES
    if path.is_dir():
        files = sorted(str(f) for f in path.iterdir() if f.name.lower().endswith(suffixes))
        if not files:
            raise FileNotFoundError(f"input folder {source!r} holds no {'/'.join(suffixes)} image")
        return [{key: f} for f in files]
    if not path.is_file():
        raise FileNotFoundError(f"input {source!r} is neither a folder of images nor a JSON datalist")
    content = json.loads(path.read_text())
    if isinstance(content, dict):
        content = content.get("test", content.get("testing", []))
    items = [entry if isinstance(entry, dict) else {key: entry} for entry in content]
    if not items:
        raise FileNotFoundError(f"datalist {source!r} lists no image")
    for item in items:
        resolved = pathlib.Path(item[key])
        item[key] = str(resolved if resolved.is_absolute() else (path.parent / resolved).resolve())
        if not os.path.isfile(item[key]):
            raise FileNotFoundError(f"datalist {source!r} lists {item[key]!r}, which does not exist")
    return items


def bundle_root(name: str) -> str:
    """The folder of bundle ``name``: where ``monai.bundle run`` put it on ``sys.path``, else ``bundles/<name>``."""
    import sys

    for entry in sys.path:
        path = pathlib.Path(entry)
        if path.name == name and (path / "configs").is_dir():
            return str(path)
    local = pathlib.Path("bundles") / name
    return str(local) if local.is_dir() else "."


def ensure_phantoms(dataset_dir: str, spatial_dims: int) -> str:
    """Generate the default phantom dataset into ``dataset_dir`` if that folder is missing or empty.

    Raises:
        FileNotFoundError: ``dataset_dir`` exists, is not empty and holds no ``dataset.json``
            (a wrong path: nothing is written into someone else's folder).
    """
    from medseg_dropclass.data.phantoms import DEFAULT_2D, DEFAULT_3D, make_phantom_dataset

    if os.path.isfile(os.path.join(dataset_dir, "dataset.json")):
        return dataset_dir
    if os.path.exists(dataset_dir) and (not os.path.isdir(dataset_dir) or os.listdir(dataset_dir)):
        raise FileNotFoundError(
            f"dataset_dir {dataset_dir!r} holds no dataset.json; point it at a Decathlon-format dataset, "
            "or at a missing/empty folder to generate the phantoms there"
        )
    make_phantom_dataset(dataset_dir, DEFAULT_2D if spatial_dims == 2 else DEFAULT_3D)
    return dataset_dir


def require_file(path: str, what: str) -> str:
    """``path`` if it is a file, else ``FileNotFoundError`` naming ``what`` and ``path``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    return path


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
        if isinstance(value, bool) and bool not in expected:
            wrong.append(f"{name}={value!r} (bool; expected {'/'.join(t.__name__ for t in expected)})")
        elif not isinstance(value, expected):
            wrong.append(f"{name}={value!r} ({type(value).__name__}; expected {'/'.join(t.__name__ for t in expected)})")
    if wrong:
        raise TypeError("config value(s) of the wrong type: " + "; ".join(wrong))
    return True


def latest_checkpoint(directory: str, pattern: str = "checkpoint_epoch=*.pt") -> Optional[str]:
    """The newest epoch checkpoint in ``directory`` (by epoch number), or ``None``."""
    def epoch(path: str) -> int:
        stem = pathlib.Path(path).stem
        try:
            return int(stem.rsplit("=", 1)[1])
        except (IndexError, ValueError):
            return -1

    found = sorted(glob.glob(os.path.join(directory, pattern)), key=epoch)
    return found[-1] if found else None


class VerifyImaged(MapTransform):
    """Check an image's channel count at inference; a :class:`DatasetError` names the file."""

    def __init__(self, keys, channels: int) -> None:
        super().__init__(keys)
        self.channels = channels

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key].shape[0] != self.channels:
                raise DatasetError(f"{source_name(d, key)}: image has {d[key].shape[0]} channel(s), the model expects {self.channels}")
        return d
