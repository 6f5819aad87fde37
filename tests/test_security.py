"""No code from data: every path by which a file name, an ID, a study folder or a command-line value ran code on main,
each with a payload that would create a file. The file never appears; the value is taken literally or refused."""

import json
import pathlib
import pickle
import shutil

import pytest

from tests.cli_runner import run_cli

REPO = pathlib.Path(__file__).resolve().parents[1]
PAYLOAD = "$__import__('os').system('touch PWNED')"  # creates PWNED in the working directory when evaluated


class _Unpickled:
    """A pickle that runs ``touch PWNED`` when loaded without ``weights_only``."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def cli(*args, cwd):
    return run_cli(*args, cwd=cwd)


def test_a_study_folder_is_read_without_running_anything(phantom2d, tmp_path, monkeypatch):
    """``compare --report-only`` (and figures) read each run's args.json and final checkpoint: the payload in args.json
    and a checkpoint that executes on unpickling both ran on main."""
    from medseg_dropclass.engine import CheckpointError
    from medseg_dropclass.engine.bundles import bundle_parser
    from medseg_dropclass.study.compare import write_figures

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "study" / "baseline" / "seed0"
    (run / "run" / "checkpoints").mkdir(parents=True)
    args = {"dataset_dir": str(phantom2d), "seed": 0, "output_dir": PAYLOAD, "class_names": [PAYLOAD] * 7}
    (run / "args.json").write_text(json.dumps(args))
    (run / "run" / "checkpoints" / "checkpoint_epoch=1.pt").write_bytes(pickle.dumps({"network": _Unpickled()}))
    parser = bundle_parser("phantom2d_dropclass", args)
    assert (
        parser.get_parsed_content("output_dir") == PAYLOAD and parser.get_parsed_content("class_names") == [PAYLOAD] * 7
    )
    results = {
        "bundle": "phantom2d_dropclass",
        "class_names": list("abcdefg"),
        "splits": ["test"],
        "arms": {"baseline": {"seeds": {"0": {"similarity": {"matrix": [[1.0] * 7] * 7}}}}},
    }
    with pytest.raises(
        CheckpointError, match=r"checkpoint_epoch=1.pt: not a PyTorch checkpoint of tensors and plain values"
    ):
        write_figures(results, str(tmp_path / "study"))
    assert not (tmp_path / "PWNED").exists()


def test_input_paths_with_dollar_and_hash_are_file_names(phantom2d, tmp_path, monkeypatch):
    """A folder named like an expression ran it; ``in/a#b`` became ``in/a::b``."""
    from medseg_dropclass.apps.predict import predict

    monkeypatch.chdir(tmp_path)
    source = sorted((phantom2d / "imagesTs").iterdir())[0]
    for folder in (PAYLOAD, "in/a#b", "@x", "%y"):
        (tmp_path / folder).mkdir(parents=True)
        shutil.copy(source, tmp_path / folder / source.name)
        result = predict("phantom2d_dropclass", folder, f"out/{folder.replace('/', '_')}", progress=False)
        assert not result["failed"] and len(result["written"]) == 1, folder
        assert pathlib.Path(result["written"][0]).is_file()
    assert not (tmp_path / "PWNED").exists()


def test_a_series_uid_is_an_id(tmp_path, monkeypatch):
    from medseg_dropclass.apps.predict import predict
    from medseg_dropclass.data.transforms import DatasetError
    from tests.data.test_dicom import write_series

    monkeypatch.chdir(tmp_path)
    write_series(tmp_path / "series")
    with pytest.raises(DatasetError, match=r"no series \$__import__"):
        predict(
            "phantom3d_dropclass", str(tmp_path / "series"), str(tmp_path / "out"), series_uid=PAYLOAD, progress=False
        )
    assert not (tmp_path / "PWNED").exists()


def test_compare_set_takes_json_values_as_literals(tmp_path):
    done = cli(
        "compare",
        "--report-only",
        "--output-dir",
        "study",
        "--set",
        f"class_names={json.dumps([PAYLOAD])}",
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "no finished run" in done.stderr, done.stderr[-2000:]
    done = cli("compare", "--report-only", "--output-dir", "study", "--set", "class_names=[oops", cwd=tmp_path)
    assert done.returncode == 2 and "'[oops' is not valid JSON" in done.stderr
    done = cli("compare", "--report-only", "--output-dir", "study", "--set", "max_epoch=3", cwd=tmp_path)
    assert done.returncode == 2 and "'max_epoch' is not a key" in done.stderr and "closest: max_epochs" in done.stderr
    assert not (tmp_path / "PWNED").exists()


def test_run_takes_literals_from_the_command_line_and_the_args_file(tmp_path):
    (tmp_path / "args.json").write_text(json.dumps({"dataset_dir": PAYLOAD}))
    for args in (["--args_file", "args.json"], ["--dataset_dir", PAYLOAD]):
        done = cli("run", "phantom2d_dropclass", "train", *args, "--output_dir", "o", cwd=tmp_path)
        assert (
            done.returncode == 1
            and "error: $__import__('os').system('touch PWNED')/dataset.json: no such file" in done.stderr
        ), done.stderr[-2000:]
    assert not (tmp_path / "PWNED").exists()


def test_run_help_lists_the_keys_and_trains_nothing(tmp_path):
    done = cli("run", "phantom2d_dropclass", "train", "--help", cwd=tmp_path)
    assert (
        done.returncode == 0
        and "--max-epochs" in done.stdout
        and "120" in done.stdout
        and "--sampling-weights" in done.stdout
    )
    assert "configs: train, evaluate, inference, multi_gpu_train" in done.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "config, args, message",
    [
        (
            "train",
            ["--max_epoch", "1"],
            "'max_epoch' is not a key of phantom2d_dropclass's train configs; closest: max_epochs",
        ),
        (
            "inference",
            ["--ckpt-pth", "/nonexistent/model.pt"],
            "'ckpt_pth' is not a key of phantom2d_dropclass's inference configs; closest: ckpt_path",
        ),
        ("train", ["--max-epochs", "1", "--max_epochs", "2"], "--max_epochs given twice"),
        ("train", ["--schedule#_target_", "os.system"], "'schedule#_target_' is reserved"),
        ("train", ["--loss#alpah", "2"], "DropClassLoss takes no argument 'alpah'; closest: loss#alpha"),
        ("train", ["--max_epochs"], "--max_epochs needs a value"),
    ],
)
def test_run_refuses_unknown_keys_before_anything_runs(tmp_path, config, args, message):
    done = cli("run", "phantom2d_dropclass", config, *args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "predictions").exists()
