"""Inputs and outputs of inference: a folder of images or a JSON datalist, and one output file per input
that never overwrites an input or an existing file."""

import json
import os
import pathlib
from typing import Dict, List, Mapping, Sequence

from medseg_dropclass.validation import InputError, check_writable_folder

__all__ = ["image_datalist", "plan_output_names", "output_stem", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg", ".jpeg")


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


def output_stem(path: str) -> str:
    """A file's name without its image suffix (``scan.nii.gz`` -> ``scan``)."""
    name = pathlib.Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name.split(".")[0]


def plan_output_names(
    items: Sequence[Mapping[str, str]], output_dir: str, extension: str, postfix: str = "seg", overwrite: bool = False, key: str = "image"
) -> Dict[str, str]:
    """The output name (without ``_postfix`` and ``extension``) of every input, checked before anything is written.

    Each input gets ``<stem>_<postfix><extension>`` in ``output_dir``; inputs whose stems collide (``a.nii``
    and ``a.nii.gz``, or equal names from different folders) get their full file name (dots as ``_``) and,
    if needed, their folder's name as the stem, so every input has its own file.

    Returns:
        ``{input path: output stem}`` (what MONAI's writers call the subject).

    Raises:
        InputError: the output folder is an input file or cannot be created or written, or an output is a symbolic
            link (never written through).
        FileExistsError: an output would replace one of the inputs (output folder = input folder with
            ``scan.nii.gz`` and ``scan_seg.nii.gz``), or an output file exists and ``overwrite`` is False;
            the message names the files.
    """
    inputs = [str(item[key]) for item in items]
    stems: Dict[str, str] = {path: output_stem(path) for path in inputs}
    for rule in (lambda p: pathlib.Path(p).name.replace(".", "_"), lambda p: f"{pathlib.Path(p).parent.name}_{pathlib.Path(p).name.replace('.', '_')}"):
        seen: Dict[str, List[str]] = {}
        for path in inputs:
            seen.setdefault(stems[path], []).append(path)
        for stem, paths in seen.items():
            if len(paths) > 1:
                for path in paths:
                    stems[path] = rule(path)
    counts: Dict[str, List[str]] = {}
    for path in inputs:
        counts.setdefault(stems[path], []).append(path)
    clashes = [paths for paths in counts.values() if len(paths) > 1]
    if clashes:
        raise FileExistsError(f"inputs {clashes[0]} would share one output file in {output_dir}; rename one of them")
    resolved_inputs = {os.path.realpath(p) for p in inputs}
    if os.path.realpath(output_dir) in resolved_inputs:
        raise InputError(f"{output_dir}: the output folder is an input file; choose another --output_dir")
    check_writable_folder(output_dir)
    replaced, existing, links = [], [], []
    for path in inputs:
        target = os.path.join(output_dir, f"{stems[path]}_{postfix}{extension}")
        if os.path.islink(target):
            links.append(f"{target} (-> {os.readlink(target)})")
        elif os.path.realpath(target) in resolved_inputs:
            replaced.append(f"{target} (an input) from {path}")
        elif os.path.exists(target) and not overwrite:
            existing.append(target)
    if links:
        raise InputError(f"{links[0]}: the output is a symbolic link; refusing to write through it (remove it)"
                         + (f"; {len(links) - 1} more" if len(links) > 1 else ""))
    if replaced:
        raise FileExistsError(f"the output folder would overwrite input images: {'; '.join(replaced[:5])}; choose another --output_dir")
    if existing:
        raise FileExistsError(
            f"{len(existing)} output file(s) already exist, e.g. {existing[0]}; pass --overwrite True (bundle run) or --overwrite "
            "(predict) to replace them, or choose another --output_dir"
        )
    return stems
