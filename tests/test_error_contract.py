"""One error contract: a bad file, folder or checkpoint ends with ``error: <path>: <problem>`` last and exit 1, checked
before inference runs; a training that writes no model.pt says so and why; outputs are never written through links."""

import os
import pathlib
import shutil

import nibabel as nib
import numpy as np
import pytest

from tests.cli_runner import run_cli
from tests.data.broken_datasets import last_error

REPO = pathlib.Path(__file__).resolve().parents[1]


def cli(*args, cwd=REPO):
    return run_cli(*args, cwd=cwd)


def test_evaluate_without_model_pt_after_a_short_training(phantom2d, tmp_path):
    """val_interval 10 and one epoch: no validation, no model.pt. Training said nothing, evaluate ended in a 74-line
    traceback ("Failed to evaluate ConfigExpression")."""
    common = ["--dataset_dir", str(phantom2d), "--output_dir", str(tmp_path / "run")]
    done = cli("run", "phantom2d_dropclass", "train", *common, "--max_epochs", "1", "--batch_size", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "no model.pt written" in done.stdout and "val_interval=10 epochs and training ran max_epochs=1" in done.stdout
    )
    done = cli("run", "phantom2d_dropclass", "evaluate", *common)
    model = tmp_path / "run" / "checkpoints" / "model.pt"
    assert done.returncode == 1 and last_error(done.stderr).startswith(
        f"{model}: no such checkpoint (training writes model.pt at a validation"
    )
    assert "--ckpt_path <run>/checkpoints/checkpoint_epoch=N.pt" in last_error(done.stderr)
    assert "Traceback" not in done.stderr


def test_a_file_that_is_not_a_checkpoint(phantom2d, tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    done = cli(
        "predict",
        "--bundle",
        "phantom2d_dropclass",
        "--input",
        str(phantom2d / "imagesTs"),
        "--output-dir",
        str(tmp_path / "o"),
        "--ckpt",
        str(tmp_path / "notes.pt"),
    )
    assert done.returncode == 1 and last_error(done.stderr).startswith(
        f"{tmp_path / 'notes.pt'}: not a PyTorch checkpoint"
    ), done.stderr[-2000:]
    assert not (tmp_path / "o").exists()  # refused before any case was read or any folder made
    done = cli(
        "run",
        "phantom2d_dropclass",
        "inference",
        "--input",
        str(phantom2d / "imagesTs"),
        "--output_dir",
        str(tmp_path / "o"),
        "--ckpt_path",
        str(tmp_path / "notes.pt"),
    )
    assert done.returncode == 1 and last_error(done.stderr).startswith(
        f"{tmp_path / 'notes.pt'}: not a PyTorch checkpoint"
    ), done.stderr[-2000:]


def test_outputs_that_cannot_be_written_are_refused_before_inference(phantom2d, tmp_path):
    from medseg_dropclass.apps.predict import predict
    from medseg_dropclass.validation import InputError

    source = sorted((phantom2d / "imagesTs").iterdir())[0]
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(InputError, match=r"a_file/out: the output folder cannot be created"):
        predict("phantom2d_dropclass", str(source), str(tmp_path / "a_file" / "out"), progress=False)
    with pytest.raises(InputError, match=rf"{source}: the output folder is an input file"):
        predict("phantom2d_dropclass", str(source), str(source), progress=False)
    done = cli("run", "phantom2d_dropclass", "inference", "--input", str(source), "--output_dir", str(source))
    assert (
        done.returncode == 1
        and last_error(done.stderr) == f"{source}: the output folder is an input file; choose another --output_dir"
    )


def test_a_symlinked_output_is_never_written_through(phantom2d, tmp_path):
    from medseg_dropclass.apps.predict import predict
    from medseg_dropclass.validation import InputError

    source = sorted((phantom2d / "imagesTs").iterdir())[0]
    stem = source.name.replace(".nii.gz", "")
    (tmp_path / "out").mkdir()
    for target in (tmp_path / "existing.nii.gz", tmp_path / "missing.nii.gz"):
        if target.name == "existing.nii.gz":
            target.write_bytes(b"precious")
        link = tmp_path / "out" / f"{stem}_seg.nii.gz"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target)
        with pytest.raises(InputError, match=r"the output is a symbolic link; refusing to write through it"):
            predict("phantom2d_dropclass", str(source), str(tmp_path / "out"), overwrite=True, progress=False)
    assert (tmp_path / "existing.nii.gz").read_bytes() == b"precious" and not (tmp_path / "missing.nii.gz").exists()


def test_a_3d_input_too_small_to_segment(tmp_path):
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(np.ones((1, 1, 1), np.float32), np.eye(4)), str(tmp_path / "in" / "one.nii.gz"))
    done = cli(
        "run", "phantom3d_dropclass", "inference", "--input", str(tmp_path / "in"), "--output_dir", str(tmp_path / "o")
    )
    assert done.returncode == 1 and last_error(done.stderr).startswith(
        f"{tmp_path / 'in' / 'one.nii.gz'}: a volume of shape (1, 1, 1) is too small"
    )
    done = cli(
        "predict",
        "--bundle",
        "phantom3d_dropclass",
        "--input",
        str(tmp_path / "in"),
        "--output-dir",
        str(tmp_path / "p"),
    )
    assert done.returncode == 1 and "one.nii.gz: a volume of shape (1, 1, 1) is too small" in done.stderr
    assert not list((tmp_path / "p").glob("*.nii.gz"))


def test_check_data_tells_errors_from_warnings(phantom2d, tmp_path):
    import json

    shutil.copytree(phantom2d, tmp_path / "data")
    content = json.loads((tmp_path / "data" / "dataset.json").read_text())
    content.pop("tensorImageSize")
    content["test"] = []
    (tmp_path / "data" / "dataset.json").write_text(json.dumps(content))
    done = cli("check-data", str(tmp_path / "data"))
    assert done.returncode == 0 and "all files fine (2 warning(s) above)" in done.stdout, done.stderr[-2000:]
    assert (
        "warning: " in done.stderr
        and "split 'test' is empty" in done.stderr
        and "training needs --spatial_dims 2 (or 3)" in done.stderr
    )
    content["training"][0]["image"] = os.path.relpath(phantom2d / content["training"][0]["image"], tmp_path / "data")
    (tmp_path / "data" / "dataset.json").write_text(json.dumps(content))
    done = cli("check-data", str(tmp_path / "data"))
    assert (
        done.returncode == 1
        and "outside the dataset folder (training); training refuses it unless --allow_external_paths True"
        in done.stderr
    )
