"""A corpus of broken Decathlon datasets, each a copy of a phantom dataset with one problem, and what training
must say about it: the file (or ``dataset.json``) and the problem on the last line, exit code 1.

Used by ``tests/data/test_broken_datasets.py`` (a few cases, once) and ``benchmarks/broken_datasets.py`` (every
case, 2D and 3D, repeated: the aborts it caught happened in 1-3 of 3 runs).
"""

import json
import pathlib
import shutil
import subprocess
import sys
from typing import Callable, Dict, List, NamedTuple

import nibabel as nib
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]


class Problem(NamedTuple):
    """One broken dataset: how to break a copy, which file the message names, what it says."""

    name: str
    culprit: str  # "image", "label" or "dataset.json"
    message: str  # a part of the final error line
    message_2d: str = ""  # where a 2D bundle says it otherwise


def _first_case(root: pathlib.Path):
    case = json.loads((root / "dataset.json").read_text())["training"][0]
    return root / case["image"], root / case["label"]


def _edit_json(root: pathlib.Path, edit: Callable[[dict], None]) -> None:
    content = json.loads((root / "dataset.json").read_text())
    edit(content)
    (root / "dataset.json").write_text(json.dumps(content))


def break_dataset(source: pathlib.Path, target: pathlib.Path, problem: str) -> pathlib.Path:
    """Copy ``source`` to ``target`` with ``problem``; returns the file the error must name."""
    shutil.copytree(source, target)
    image_file, label_file = _first_case(target)
    image, label = nib.load(str(image_file)), nib.load(str(label_file))
    pixels, classes = np.asarray(image.dataobj).astype(np.float32), np.asarray(label.dataobj).astype(np.int16)
    if problem == "label_out_of_range":
        classes.flat[0] = 9
        nib.save(nib.Nifti1Image(classes, label.affine), str(label_file))
    elif problem == "label_negative":
        classes.flat[0] = -1
        nib.save(nib.Nifti1Image(classes, label.affine), str(label_file))
    elif problem == "label_fractional":
        fractional = classes.astype(np.float32)
        fractional.flat[0] = 0.5
        nib.save(nib.Nifti1Image(fractional, label.affine), str(label_file))
    elif problem == "nan_image":
        pixels.flat[5] = np.nan
        nib.save(nib.Nifti1Image(pixels, image.affine), str(image_file))
    elif problem == "not_an_image":
        image_file.write_text("this is not an image\n")
    elif problem == "empty_file":
        image_file.write_bytes(b"")
    elif problem == "truncated_file":
        content = image_file.read_bytes()
        image_file.write_bytes(content[: len(content) // 2])
    elif problem == "shape_mismatch":
        nib.save(nib.Nifti1Image(classes[:-2], label.affine), str(label_file))
    elif problem == "geometry_mismatch":
        shifted = label.affine.copy()
        shifted[0, 3] += 5.0
        nib.save(nib.Nifti1Image(classes, shifted), str(label_file))
    elif problem == "two_channel_image":
        nib.save(nib.Nifti1Image(np.stack([pixels, pixels], -1), image.affine), str(image_file))
    elif problem == "missing_file":
        image_file.unlink()  # dataset.json names it
    elif problem == "external_path":
        outside = target.parent / f"{target.name}_outside.nii.gz"
        shutil.copy(image_file, outside)
        _edit_json(target, lambda c: c["training"][0].update(image=f"../{outside.name}"))
        return target / "dataset.json"
    elif problem == "no_tensor_image_size":
        _edit_json(target, lambda c: c.pop("tensorImageSize"))
    elif problem == "labels_not_numbered":
        _edit_json(target, lambda c: c.update(labels={"0": "background", "2": "organ"}))
    elif problem == "invalid_json":
        (target / "dataset.json").write_text((target / "dataset.json").read_text()[:-10])
    else:
        raise ValueError(f"unknown problem {problem!r}")
    return {"image": image_file, "label": label_file}.get(PROBLEMS[problem].culprit, target / "dataset.json")


_CORPUS: List[Problem] = [
    Problem("label_out_of_range", "label", "label value 9 outside the classes 0..6"),
    Problem("label_negative", "label", "label value -1 outside the classes 0..6"),
    Problem("label_fractional", "label", "label holds non-integer values"),
    Problem("nan_image", "image", "image holds 1 non-finite voxel(s) (NaN/Inf)"),
    Problem("not_an_image", "image", "cannot be read as an image"),
    Problem("empty_file", "image", "cannot be read as an image"),
    Problem("truncated_file", "image", "cannot be read as an image"),
    Problem("shape_mismatch", "label", "differs from image shape"),
    Problem("geometry_mismatch", "label", "label geometry (affine) differs from image"),
    Problem("two_channel_image", "image", "image has 2 channel(s), expected 1", "a 3D image of shape (48, 48, 2); the model takes 2D images"),
    Problem("missing_file", "dataset.json", "split 'training' lists 1 missing file(s)"),
    Problem("external_path", "dataset.json", "outside the dataset folder (pass --allow_external_paths True"),
    Problem("no_tensor_image_size", "dataset.json", "no 'tensorImageSize' (\"2D\" or \"3D\")"),
    Problem("labels_not_numbered", "dataset.json", "'labels' must number at least 2 classes 0..K-1"),
    Problem("invalid_json", "dataset.json", "cannot be read as JSON"),
]
PROBLEMS: Dict[str, Problem] = {p.name: p for p in _CORPUS}

BUNDLES = {2: "phantom2d_dropclass", 3: "phantom3d_dropclass"}
TINY_OPTIONS = {2: ["--batch_size", "2"], 3: ["--batch_size", "1", "--crop_size", "[16, 16, 8]"]}


def train_on(dataset: pathlib.Path, output: pathlib.Path, spatial_dims: int, timeout: float = 600) -> subprocess.CompletedProcess:
    """``run <phantom bundle> train`` for 1 epoch on ``dataset`` in a child process (cwd: the repository)."""
    command = [sys.executable, "-m", "medseg_dropclass", "run", BUNDLES[spatial_dims], "train", "--dataset_dir", str(dataset),
               "--output_dir", str(output), "--max_epochs", "1", "--val_interval", "1", *TINY_OPTIONS[spatial_dims]]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def last_error(stderr: str) -> str:
    """The text after the last ``error:`` at the start of a line ('' when there is none)."""
    lines = stderr.rstrip().splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("error: "):
            return "\n".join(lines[index:])[len("error: "):]
    return ""


def judge(done: subprocess.CompletedProcess, named: pathlib.Path, problem: Problem, spatial_dims: int = 3) -> str:
    """'' when the run ended as it must (exit 1, the last ``error:`` names the file and the problem), else what was wrong."""
    error = last_error(done.stderr)
    message = problem.message_2d if spatial_dims == 2 and problem.message_2d else problem.message
    if done.returncode != 1:
        return f"exit {done.returncode}"
    if not error.startswith(f"{named}: "):
        return f"error line does not start with {named}: {error[:200]!r}"
    if message not in error:
        return f"error line lacks {message!r}: {error[:300]!r}"
    return ""
