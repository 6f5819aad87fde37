"""Inputs of inference: a folder of images or a JSON datalist."""

import json
import os
import pathlib
from typing import Sequence

__all__ = ["image_datalist"]


def image_datalist(source: str, key: str = "image", suffixes: Sequence[str] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")) -> list:
    """``[{"image": path}, ...]`` from a folder of images (NIfTI/NRRD/MHA by default) or a JSON datalist.

    A JSON file may hold a list of paths or of ``{"image": path}`` dicts, or a Decathlon
    ``dataset.json`` (its ``test`` entries). Relative paths are taken from the file's folder.

    Raises:
        FileNotFoundError: the source does not exist, lists a missing file, or holds no image.
    """
    path = pathlib.Path(source)
    suffixes = tuple(suffixes)
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
