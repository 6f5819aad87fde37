"""The MONAI bundles: configs parse and instantiate, round trips, export, resume, determinism, DDP, bad input,
one evaluator (evaluate config == compare == inference), the installed wheel."""

import json
import pathlib
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from medseg_dropclass.engine.bundles import bundles_dir, config_files, run_bundle
from tests.cli_runner import run_cli
from tests.conftest import SHARED
from tests.data.conftest import shared_fixture, write_decathlon

REPO = pathlib.Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
NAMES = [
    "phantom2d_dropclass",
    "phantom3d_dropclass",
    "msd_organ_lesion_dropclass",
    "cityscapes_dropclass",
    "voc_dropclass",
    "acdc_dropclass",
    "camvid_dropclass",
]
SCHEMA = SHARED / "monai" / "meta_schema_20240725.json"  # MONAI's own schema: not redistributable here
CONTRACT = pathlib.Path(__file__).with_name(
    "metadata_contract.json"
)  # the project's statement of the same requirements
# CPU-sized networks for the bundles whose defaults are GPU-sized
SMALL = {
    "msd_organ_lesion_dropclass": {
        "network_def#feature_channels": 8,
        "crop_size": [32, 32, 16],
        "preprocessing#num_crops": 1,
    },
    "cityscapes_dropclass": {
        "network_def#encoder": "resnet18",
        "network_def#width": 0.125,
        "network_def#aspp_channels": 16,
        "network_def#decoder_channels": 16,
        "preprocessing#crop_size": [64, 128],
        "batch_size": 1,
    },
    "voc_dropclass": {"network_def#preset": "tiny", "preprocessing#crop_size": [64, 64], "batch_size": 2},
    "camvid_dropclass": {
        "network_def#width": 0.125,
        "network_def#aspp_channels": 16,
        "network_def#decoder_channels": 16,
        "preprocessing#crop_size": [16, 16],
        "batch_size": 2,
    },
}


def meta(name):
    return str(BUNDLES / name / "configs" / "metadata.json")


def test_every_bundle_has_the_monai_layout_and_overlays_the_one_base():
    assert bundles_dir().resolve() == BUNDLES.resolve()
    for path in ("base.yaml", "evaluate.yaml", "inference.yaml", "multi_gpu_train.yaml", "logging.conf"):
        assert (BUNDLES / "_base" / "configs" / path).is_file(), path
    for name in NAMES:
        root = BUNDLES / name
        for path in ("configs/metadata.json", "configs/train.yaml", "docs/README.md", "LICENSE"):
            assert (root / path).is_file(), f"{name}/{path}"
        assert (root / "models").is_dir()
        overlay = (root / "configs" / "train.yaml").read_text()
        assert "trainer" not in overlay and "CheckpointSaver" not in overlay  # stated once, in the base
    assert config_files("phantom2d_dropclass", "evaluate") == [
        str(BUNDLES / "_base" / "configs" / "base.yaml"),
        str(BUNDLES / "phantom2d_dropclass" / "configs" / "train.yaml"),
        str(BUNDLES / "_base" / "configs" / "evaluate.yaml"),
    ]
    with pytest.raises(
        FileNotFoundError,
        match=r"bundle 'nope' is neither a shipped bundle \(acdc_dropclass, camvid_dropclass, cityscapes_dropclass, ",
    ):
        config_files("nope")


@pytest.mark.parametrize("name", NAMES)
def test_configs_parse_and_core_components_instantiate(name):
    for combination in (("train",), ("evaluate",), ("multi_gpu_train",), ("inference",)):
        parser = ConfigParser()
        parser.read_config(config_files(name, *combination))
        assert parser.get("network_def")["_target_"] == "medseg_dropclass.build_network"
    parser = ConfigParser()
    parser.read_config(config_files(name, "train"))
    parser.update(
        {
            "device": "$torch.device('cpu')",
            "num_classes": 5,
            "class_names": list("abcde"),
            "in_channels": 1,
            "spatial_dims": 3 if "3d" in name or "msd" in name else 2,
            **SMALL.get(name, {}),
        }
    )
    network = parser.get_parsed_content("network")
    assert type(network.head).__name__ == "DropClassHead"
    controller = parser.get_parsed_content("dropclass_controller")
    assert controller.enabled and controller.loss is parser.get_parsed_content("loss")
    parser.update({"dropclass": False})
    parser.parse()
    baseline = parser.get_parsed_content("network")
    assert type(baseline.head).__name__ == "ClassifierHead"
    assert not parser.get_parsed_content("dropclass_controller").enabled


@pytest.mark.parametrize("name", NAMES)
def test_metadata_holds_the_contract_and_the_network_io_verifies(name):
    import jsonschema
    from monai.bundle import verify_net_in_out

    metadata = json.loads(pathlib.Path(meta(name)).read_text())
    jsonschema.validate(metadata, json.loads(CONTRACT.read_text()))
    pred = metadata["network_data_format"]["outputs"]["pred"]
    assert len(pred["channel_def"]) == pred["num_channels"], "one channel_def entry per output channel"
    overrides = {k: v for k, v in SMALL.get(name, {}).items() if k.startswith("network_def")}
    verify_net_in_out(
        net_id="network_def", meta_file=meta(name), config_file=config_files(name, "inference"), **overrides
    )


def test_the_metadata_contract_can_fail():
    import jsonschema

    metadata = json.loads(pathlib.Path(meta("phantom2d_dropclass")).read_text())
    del metadata["network_data_format"]["outputs"]["pred"]["num_channels"]
    with pytest.raises(jsonschema.ValidationError, match="num_channels"):
        jsonschema.validate(metadata, json.loads(CONTRACT.read_text()))


@pytest.mark.shared
@pytest.mark.parametrize("name", NAMES)
def test_metadata_verifies_against_monai_schema(name):
    from monai.bundle import verify_metadata

    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} is absent")
    verify_metadata(meta_file=meta(name), filepath=str(SCHEMA))


def train_run(name, dataset_dir, output_dir, **overrides):
    run_bundle(name, "train", dataset_dir=str(dataset_dir), output_dir=str(output_dir), **overrides)


@pytest.mark.parametrize("name, fixture", [("phantom2d_dropclass", "phantom2d"), ("phantom3d_dropclass", "phantom3d")])
def test_phantom_round_trip_train_evaluate_infer_export(name, fixture, request, tmp_path):
    dataset_dir = request.getfixturevalue(fixture)
    extra = {"crop_size": [16, 16, 8]} if "3d" in name else {}
    train_run(name, dataset_dir, tmp_path / "run", max_epochs=1, val_interval=1, batch_size=2, **extra)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "model.pt").is_file() and (checkpoints / "checkpoint_epoch=1.pt").is_file()
    assert any((tmp_path / "run" / "tensorboard").iterdir())

    run_bundle(
        name,
        "evaluate",
        dataset_dir=str(dataset_dir),
        output_dir=str(tmp_path / "run"),
        eval_split="test_shifted",
        **extra,
    )
    metrics = (tmp_path / "run" / "eval_test_shifted" / "metrics.csv").read_text()
    assert "dice/lesion_a" in metrics and "iou/organ_small" in metrics and "val_mean_dice" in metrics

    run_bundle(
        name,
        "inference",
        dataset_dir=str(dataset_dir),
        ckpt_path=str(checkpoints / "model.pt"),
        output_dir=str(tmp_path / "pred"),
        **extra,
    )
    source = sorted((dataset_dir / "imagesTs").iterdir())[0]
    written = tmp_path / "pred" / source.name.replace(".nii.gz", "_seg.nii.gz")
    original, prediction = nib.load(str(source)), nib.load(str(written))
    assert prediction.shape == original.shape
    np.testing.assert_allclose(prediction.affine, original.affine, atol=1e-4)  # the input's geometry, kept
    assert set(np.unique(np.asarray(prediction.dataobj))) <= set(range(7))

    from monai.bundle import ckpt_export

    ts = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts),
        ckpt_file=str(checkpoints / "model.pt"),
        meta_file=meta(name),
        config_file=config_files(name, "inference"),
    )
    exported = torch.jit.load(str(ts))
    parser = ConfigParser()
    parser.read_config(config_files(name, "inference"))
    parser.read_meta(meta(name))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(checkpoints / "model.pt", map_location="cpu", weights_only=True))
    network.eval()
    shape = (1, 1, 48, 48) if "2d" in name else (1, 1, 32, 32, 16)
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), network(x), atol=1e-5, rtol=1e-5)


def test_resume_continues_from_the_last_checkpoint_with_the_same_state(phantom2d, tmp_path):
    train_run("phantom2d_dropclass", phantom2d, tmp_path / "a", max_epochs=1, val_interval=5, batch_size=2)
    train_run("phantom2d_dropclass", phantom2d, tmp_path / "a", max_epochs=2, val_interval=5, batch_size=2)
    resumed = torch.load(tmp_path / "a" / "checkpoints" / "checkpoint_epoch=2.pt", weights_only=False)
    train_run("phantom2d_dropclass", phantom2d, tmp_path / "b", max_epochs=2, val_interval=5, batch_size=2)
    straight = torch.load(tmp_path / "b" / "checkpoints" / "checkpoint_epoch=2.pt", weights_only=False)
    assert (
        resumed["trainer"]["iteration"] == straight["trainer"]["iteration"] == 2 * straight["trainer"]["epoch_length"]
    )
    assert resumed["dropclass"]["sampler"]["rng_state"] == straight["dropclass"]["sampler"]["rng_state"]
    assert resumed["lr_scheduler"]["last_epoch"] == straight["lr_scheduler"]["last_epoch"] == 2
    # SGD (the recipe): the poly-decayed learning rate and a momentum buffer for every parameter come back
    assert resumed["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        straight["optimizer"]["param_groups"][0]["lr"]
    )
    assert resumed["optimizer"]["param_groups"][0]["lr"] < 0.01
    assert set(resumed["optimizer"]["state"]) == set(straight["optimizer"]["state"]) and resumed["optimizer"]["state"]
    assert all(state["momentum_buffer"] is not None for state in resumed["optimizer"]["state"].values())
    # weights: close, not equal: the first run's poly schedule ended at max_epochs=1 (a run killed and restarted
    # with the same config is bitwise exact: tests/engine/test_fault_injection.py); a restart from scratch would be far off
    first = torch.load(tmp_path / "a" / "checkpoints" / "checkpoint_epoch=2.pt", weights_only=False)["network"]
    for key, value in straight["network"].items():
        if value.is_floating_point():
            assert (first[key] - value).abs().max() < 0.05, key


def test_same_seed_gives_the_same_training_on_cpu(phantom2d, tmp_path):
    for arm in ("x", "y"):
        train_run("phantom2d_dropclass", phantom2d, tmp_path / arm, max_epochs=1, val_interval=5, batch_size=2)
    a = torch.load(tmp_path / "x" / "checkpoints" / "checkpoint_epoch=1.pt", weights_only=False)["network"]
    b = torch.load(tmp_path / "y" / "checkpoints" / "checkpoint_epoch=1.pt", weights_only=False)["network"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_msd_task_folder_trains(tmp_path):
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    cases = []
    for i in range(3):
        label = np.zeros((24, 24, 12), np.uint8)
        label[6:18, 6:18, 2:10] = 1
        label[10:12, 10:12, 5:7] = 2
        cases.append((f"liver_{i}", np.where(label > 0, 80.0, -50.0).astype(np.float32), label, affine, affine))
    write_decathlon(tmp_path / "Task03_Liver", cases, labels={"0": "background", "1": "liver", "2": "cancer"})
    run_bundle(
        "msd_organ_lesion_dropclass",
        "train",
        dataset_dir=str(tmp_path / "Task03_Liver"),
        output_dir=str(tmp_path / "run"),
        max_epochs=1,
        val_interval=1,
        num_workers=0,
        **SMALL["msd_organ_lesion_dropclass"],
    )
    assert (tmp_path / "run" / "checkpoints" / "model.pt").is_file()


@pytest.mark.shared
@pytest.mark.parametrize(
    "name, fixture, split", [("cityscapes_dropclass", "cityscapes_mini", "val"), ("voc_dropclass", "voc_mini", "train")]
)
def test_natural_image_bundles_train_on_the_real_format_fixtures(name, fixture, split, tmp_path):
    root = shared_fixture(fixture)
    run_bundle(
        name,
        "train",
        dataset_dir=str(root),
        train_split=split,
        output_dir=str(tmp_path / "run"),
        max_epochs=1,
        val_interval=1,
        num_workers=0,
        **SMALL[name],
    )
    assert (tmp_path / "run" / "checkpoints" / "model.pt").is_file()
    images = next(root.rglob("*_leftImg8bit.png")).parent if name.startswith("city") else root / "JPEGImages"
    run_bundle(
        name,
        "inference",
        input=str(images),
        num_workers=0,
        ckpt_path=str(tmp_path / "run" / "checkpoints" / "model.pt"),
        output_dir=str(tmp_path / "pred"),
        **{k: v for k, v in SMALL[name].items() if k.startswith("network_def")},
    )
    written = sorted((tmp_path / "pred").glob("*_seg.png"))
    assert written
    from PIL import Image

    source = Image.open(
        next(
            p
            for p in (
                root.rglob("*_leftImg8bit.png") if name.startswith("city") else (root / "JPEGImages").glob("*.jpg")
            )
        )
    )
    assert any(Image.open(w).size == source.size for w in written)


def test_ddp_with_gloo_two_processes(tmp_path):
    import dataclasses

    from medseg_dropclass.data.phantoms import make_phantom_dataset
    from tests.conftest import TINY_2D

    phantom2d = tmp_path / "data"  # 10 cases: 8 train, 2 validation, at least one per rank
    make_phantom_dataset(str(phantom2d), dataclasses.replace(TINY_2D, num_train=10), progress=False)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29533",
        "-m",
        "medseg_dropclass",
        "run",
        "phantom2d_dropclass",
        "train",
        "multi_gpu_train",
        "--dataset_dir",
        str(phantom2d),
        "--output_dir",
        str(tmp_path / "ddp"),
        "--max_epochs",
        "1",
        "--val_interval",
        "1",
        "--batch_size",
        "2",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (
        done.stdout.count("Engine run finished") + done.stderr.count("Engine run finished") >= 4
    )  # 2 ranks x (train, val)
    saved = sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir())
    assert saved == ["checkpoint_epoch=1.pt", "model.pt"]
    assert (done.stdout + done.stderr).count("Saved checkpoint at epoch: 1") == 1  # written once, by rank 0


def bundle_cli(*args, cwd=REPO):
    return run_cli("run", *args, cwd=cwd)


def test_bad_input_gives_a_clear_message_and_a_failing_exit_code(phantom2d, tmp_path):
    (tmp_path / "not_a_dataset").mkdir()
    (tmp_path / "not_a_dataset" / "notes.txt").write_text("x")
    done = bundle_cli(
        "phantom2d_dropclass",
        "train",
        "--dataset_dir",
        str(tmp_path / "not_a_dataset"),
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert (
        done.returncode != 0
        and "not_a_dataset/dataset.json: no such file (expected a Decathlon dataset.json)" in done.stderr
    )
    assert sorted(p.name for p in (tmp_path / "not_a_dataset").iterdir()) == ["notes.txt"]  # nothing generated there

    done = bundle_cli(
        "phantom2d_dropclass",
        "train",
        "--dataset_dir",
        str(phantom2d),
        "--batch_size",
        "64",
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert (
        done.returncode != 0
        and "has 5 sample(s), fewer than batch_size=64: no training iteration would run" in done.stderr
    )

    done = bundle_cli(
        "phantom2d_dropclass",
        "train",
        "--dataset_dir",
        str(phantom2d),
        "--max_epochs",
        "abc",
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert (
        done.returncode != 0
        and "config value(s) of the wrong type: max_epochs='abc' (str; expected int)" in done.stderr
    )

    done = bundle_cli(
        "phantom2d_dropclass",
        "inference",
        "--input",
        str(phantom2d / "imagesTs"),
        "--ckpt_path",
        str(tmp_path / "none.pt"),
        "--output_dir",
        str(tmp_path / "p"),
    )
    assert done.returncode == 1 and final_error(done.stderr) == f"{tmp_path / 'none.pt'}: no such checkpoint", (
        done.stderr[-2000:]
    )

    done = bundle_cli("no_such_bundle", "train")
    assert done.returncode != 0 and "bundle 'no_such_bundle' is neither a shipped bundle" in done.stderr

    network = ConfigParser()
    network.read_config(config_files("phantom2d_dropclass", "inference"))
    network.read_meta(meta("phantom2d_dropclass"))
    torch.save(network.get_parsed_content("network_def").state_dict(), tmp_path / "m.pt")
    (tmp_path / "rgb").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((48, 48, 1, 3), np.float32), np.eye(4)), str(tmp_path / "rgb" / "two.nii.gz"))
    done = bundle_cli(
        "phantom2d_dropclass",
        "inference",
        "--input",
        str(tmp_path / "rgb"),
        "--ckpt_path",
        str(tmp_path / "m.pt"),
        "--output_dir",
        str(tmp_path / "p"),
    )
    assert done.returncode != 0 and "two.nii.gz: image has 3 channel(s), the model expects 1" in done.stderr


def test_one_evaluator_evaluate_config_compare_and_inference_agree(phantom2d, tmp_path):
    """One checkpoint through the evaluate config, compare's evaluation (the demo's path) and the inference config."""
    import json

    from medseg_dropclass.evaluation.metrics import confusion_matrix
    from medseg_dropclass.study.compare import evaluate_run

    train_run("phantom2d_dropclass", phantom2d, tmp_path / "run", max_epochs=2, val_interval=5, batch_size=2)
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint_epoch=2.pt"
    common = {"dataset_dir": str(phantom2d), "output_dir": str(tmp_path / "run")}
    run_bundle(
        "phantom2d_dropclass",
        "evaluate",
        **common,
        ckpt_path=str(checkpoint),
        eval_split="test",
        eval_dir=str(tmp_path / "a"),
    )
    by_config = json.loads((tmp_path / "a" / "summary.json").read_text())
    by_compare = evaluate_run("phantom2d_dropclass", common, str(checkpoint), "test", tmp_path / "b")
    assert by_config == by_compare
    very_rare = [name for name, share in by_config["class_share"].items() if 0 < share < 0.001]
    assert len(by_config["metric_per_case"]) == 2 and by_config["frequency_bins"]["<0.1%"]["classes"] == very_rare

    run_bundle(
        "phantom2d_dropclass",
        "inference",
        input=str(phantom2d / "imagesTs"),
        ckpt_path=str(checkpoint),
        output_dir=str(tmp_path / "pred"),
    )
    names = by_config["class_share"].keys()
    for case in by_config["metric_per_case"]:
        reference = pathlib.Path(case["reference"])
        image_name = reference.name
        predicted = np.asarray(nib.load(str(tmp_path / "pred" / image_name.replace(".nii.gz", "_seg.nii.gz"))).dataobj)
        label = np.asarray(nib.load(str(reference)).dataobj)
        matrix = confusion_matrix(
            torch.as_tensor(predicted.astype(np.int64)), torch.as_tensor(label.astype(np.int64)), 7
        )
        for k, name in enumerate(names):  # the inference file scores exactly as the evaluator's prediction did
            assert case["metrics"][name]["TP"] == int(matrix[k, k]), (image_name, name)
            assert case["metrics"][name]["n_pred"] == int(matrix[:, k].sum()), (image_name, name)
            assert case["metrics"][name]["n_ref"] == int(matrix[k].sum()), (image_name, name)


def test_a_non_finite_loss_stops_training_with_an_error_and_saves_no_model(phantom2d, tmp_path):
    """A learning rate that blows the weights up: the run stops at the first NaN/Inf loss, exits non-zero
    naming the iteration, and leaves no model.pt (before, it trained on and saved a NaN model with exit 0)."""
    done = bundle_cli(
        "phantom2d_dropclass",
        "train",
        "--dataset_dir",
        str(phantom2d),
        "--output_dir",
        str(tmp_path / "o"),
        "--learning_rate",
        "1e30",
        "--max_epochs",
        "3",
        "--val_interval",
        "1",
        "--batch_size",
        "2",
    )
    assert done.returncode != 0
    assert re.search(r"\nerror: training loss is (nan|inf|-inf) at iteration \d+ \(epoch 1\): stopped", done.stderr), (
        done.stderr[-2000:]
    )
    assert not list((tmp_path / "o").rglob("*.pt"))  # neither model.pt nor an epoch checkpoint of the NaN weights


def test_stop_on_non_finite_loss_handler():
    from types import SimpleNamespace

    from medseg_dropclass.engine import NonFiniteLossError, StopOnNonFiniteLoss

    handler = StopOnNonFiniteLoss()
    engine = SimpleNamespace(state=SimpleNamespace(output={"loss": torch.tensor(0.5)}, iteration=7, epoch=2))
    handler(engine)  # finite: nothing happens
    engine.state.output = {"loss": torch.tensor(float("inf"))}
    with pytest.raises(NonFiniteLossError, match=r"training loss is inf at iteration 7 \(epoch 2\): stopped"):
        handler(engine)


def test_inference_never_overwrites_inputs_or_outputs_and_names_every_input(phantom2d, tmp_path):
    """scan.nii.gz and scan_seg.nii.gz in the output folder: refused (it used to overwrite the input);
    a.nii and a.nii.gz get one output each; an existing output needs --overwrite True."""
    from medseg_dropclass.data import plan_output_names

    folder = tmp_path / "in"
    folder.mkdir()
    source = sorted((phantom2d / "imagesTs").iterdir())[0]
    image = nib.load(str(source))
    for name in ("scan.nii.gz", "scan_seg.nii.gz"):
        nib.save(image, str(folder / name))
    before = (folder / "scan_seg.nii.gz").read_bytes()
    ckpt = tmp_path / "m.pt"
    parser = ConfigParser()
    parser.read_config(config_files("phantom2d_dropclass", "inference"))
    parser.read_meta(meta("phantom2d_dropclass"))
    torch.save(parser.get_parsed_content("network_def").state_dict(), ckpt)
    done = bundle_cli(
        "phantom2d_dropclass",
        "inference",
        "--input",
        str(folder),
        "--ckpt_path",
        str(ckpt),
        "--output_dir",
        str(folder),
    )
    assert (
        done.returncode != 0
        and "the output folder would overwrite input images" in done.stderr
        and "scan_seg.nii.gz" in done.stderr
    )
    assert (folder / "scan_seg.nii.gz").read_bytes() == before

    twins = tmp_path / "twins"
    twins.mkdir()
    nib.save(image, str(twins / "a.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine), str(twins / "a.nii"))
    out = tmp_path / "out"
    done = bundle_cli(
        "phantom2d_dropclass", "inference", "--input", str(twins), "--ckpt_path", str(ckpt), "--output_dir", str(out)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["a_nii_gz_seg.nii.gz", "a_nii_seg.nii.gz"]
    done = bundle_cli(
        "phantom2d_dropclass", "inference", "--input", str(twins), "--ckpt_path", str(ckpt), "--output_dir", str(out)
    )
    assert (
        done.returncode != 0 and "2 output file(s) already exist" in done.stderr and "--overwrite True" in done.stderr
    )
    done = bundle_cli(
        "phantom2d_dropclass",
        "inference",
        "--input",
        str(twins),
        "--ckpt_path",
        str(ckpt),
        "--output_dir",
        str(out),
        "--overwrite",
        "True",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = plan_output_names(
        [{"image": "/x/scan.nii.gz"}, {"image": "/y/scan.nii.gz"}], str(tmp_path / "o2"), ".nii.gz"
    )
    assert names == {"/x/scan.nii.gz": "x_scan_nii_gz", "/y/scan.nii.gz": "y_scan_nii_gz"}


def final_error(stderr: str) -> str:
    """What the command line prints last: ``error: <the cause>`` (possibly several lines)."""
    return stderr.rsplit("\nerror: ", 1)[1].strip() if "\nerror: " in stderr else ""


@pytest.mark.parametrize(
    "problem, culprit, message",
    [
        ("label_negative", "label", "label value -1 outside the classes 0..6"),
        ("label_fractional", "label", "label holds non-integer values"),
        ("geometry_mismatch", "label", "label geometry (affine) differs from image"),
        ("empty_file", "image", "cannot be read as an image (ImageFileError"),
        ("truncated_file", "image", "cannot be read as an image (EOFError"),
        ("two_channel_image", "image", "a 3D image of shape (48, 48, 2); the model takes 2D images"),
        ("nan_image", "image", "image holds 1 non-finite voxel(s) (NaN/Inf)"),
    ],
)
def test_a_bad_training_case_exits_1_with_the_file_and_the_problem_last(phantom2d, tmp_path, problem, culprit, message):
    """Each exited 1 or aborted with 134 after a message buried in MONAI's wrappers; the last line now names both."""
    from tests.data.broken_datasets import PROBLEMS, break_dataset

    named = str(break_dataset(phantom2d, tmp_path / "data", problem))
    assert PROBLEMS[problem].culprit == culprit
    done = bundle_cli(
        "phantom2d_dropclass",
        "train",
        "--dataset_dir",
        str(tmp_path / "data"),
        "--output_dir",
        str(tmp_path / "o"),
        "--max_epochs",
        "1",
        "--batch_size",
        "2",
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert final_error(done.stderr).startswith(f"{named}: ") and message in final_error(done.stderr), done.stderr[
        -2000:
    ]
    assert not (tmp_path / "o" / "checkpoints").exists() or not list((tmp_path / "o" / "checkpoints").iterdir())


def test_inference_names_a_truncated_file_and_a_2d_image_given_to_a_3d_model(phantom2d, tmp_path):
    for name, size in (("phantom2d_dropclass", 2), ("phantom3d_dropclass", 3)):
        parser = ConfigParser()
        parser.read_config(config_files(name, "inference"))
        parser.read_meta(meta(name))
        torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / f"{size}d.pt")
    folder = tmp_path / "in"
    folder.mkdir()
    content = sorted((phantom2d / "imagesTs").iterdir())[0].read_bytes()
    (folder / "cut.nii.gz").write_bytes(content[: len(content) // 2])
    done = bundle_cli(
        "phantom2d_dropclass",
        "inference",
        "--input",
        str(folder),
        "--ckpt_path",
        str(tmp_path / "2d.pt"),
        "--output_dir",
        str(tmp_path / "p"),
    )
    assert done.returncode == 1 and final_error(done.stderr).startswith(
        f"{folder / 'cut.nii.gz'}: cannot be read as an image (EOFError"
    )

    (folder / "cut.nii.gz").unlink()
    (folder / "slice.nii.gz").write_bytes(content)  # a 2D phantom image, given to the 3D bundle
    done = bundle_cli(
        "phantom3d_dropclass",
        "inference",
        "--input",
        str(folder),
        "--ckpt_path",
        str(tmp_path / "3d.pt"),
        "--output_dir",
        str(tmp_path / "p"),
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert (
        final_error(done.stderr)
        == f"{folder / 'slice.nii.gz'}: a 2D image of shape (48, 48); the model takes 3D images"
    )
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").iterdir())


def test_phantoms_are_generated_only_at_the_default_place_or_when_asked(tmp_path, monkeypatch):
    import medseg_dropclass.data

    calls = []
    monkeypatch.setattr(
        medseg_dropclass.data, "ensure_phantoms", lambda folder, dims: calls.append((folder, dims)) or folder
    )
    monkeypatch.setattr(medseg_dropclass.data, "read_dataset_json", lambda folder: folder)

    def dataset_info(**overrides):
        parser = ConfigParser()
        parser.read_config(config_files("phantom3d_dropclass", "train"))
        parser.read_meta(meta("phantom3d_dropclass"))
        parser.update(overrides)
        return parser.get_parsed_content("dataset_info")

    monkeypatch.chdir(tmp_path)
    default = str(tmp_path / "data" / "phantom3d_v2")
    assert dataset_info() == default and calls == [(default, 3)]  # the default place: generated on first use
    assert (
        dataset_info(dataset_dir=str(tmp_path / "typo")) == str(tmp_path / "typo") and len(calls) == 1
    )  # elsewhere: not
    assert dataset_info(dataset_dir=str(tmp_path / "new"), generate_phantoms=True) == str(tmp_path / "new")
    assert calls[-1] == (str(tmp_path / "new"), 3)  # asked for


def test_acdc_bundle_trains_on_slices_and_scores_whole_volumes_with_ed_and_es_apart(tmp_path):
    """Tiny synthetic h5 copy -> converter -> 2D training on slices -> per-volume evaluation (SliceInferer) of the
    RV-shift test split, ED and ES reported apart and together -> inference writes a volume of the input's shape."""
    import json

    from medseg_dropclass.data.acdc import h5_cases, write_acdc_decathlon
    from tests.data.test_acdc import h5_copy

    data = tmp_path / "acdc"
    write_acdc_decathlon(h5_cases(h5_copy(tmp_path / "h5")), data, "h5 (test)")
    common = {"dataset_dir": str(data), "output_dir": str(tmp_path / "run"), "crop_size": [16, 16], "batch_size": 2}
    train_run(
        "acdc_dropclass",
        data,
        tmp_path / "run",
        max_epochs=1,
        val_interval=1,
        **{k: v for k, v in common.items() if k not in ("dataset_dir", "output_dir")},
    )
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint_epoch=1.pt"
    assert checkpoint.is_file() and (tmp_path / "run" / "checkpoints" / "model.pt").is_file()
    run_bundle(
        "acdc_dropclass",
        "evaluate",
        **common,
        ckpt_path=str(checkpoint),
        eval_split="test_shift",
        eval_dir=str(tmp_path / "e"),
    )
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    names = sorted(pathlib.Path(case["reference"]).name for case in summary["metric_per_case"])
    assert names == [
        f"acdc_patient{p:03d}_{phase}.nii.gz" for p in (81, 86) for phase in ("ED", "ES")
    ]  # whole volumes, RV group
    assert summary["groups"]["ED"]["cases"] == 2 and summary["groups"]["ES"]["cases"] == 2
    for group in ("ED", "ES"):  # each group's mean is the mean over its own cases
        own = [c for c in summary["metric_per_case"] if f"_{group}." in c["reference"]]
        values = [
            c["metrics"]["left_ventricle"]["Dice"] for c in own if c["metrics"]["left_ventricle"]["Dice"] is not None
        ]
        assert summary["groups"][group]["mean"]["left_ventricle"]["Dice"] == pytest.approx(np.mean(values))
    metrics = (tmp_path / "e" / "metrics.csv").read_text()
    assert "ED/mean_dice" in metrics and "ES/dice/right_ventricle" in metrics

    # the model card of such a model: HD95, ED and ES apart, the ventricles' EDV and EF against the reference
    from tests.cli_runner import run_cli

    card = tmp_path / "card.md"
    done = run_cli("model-card", "--bundle", "acdc_dropclass", "--evaluate", "--ckpt", str(checkpoint), "--dataset-dir",
                   str(data), "--splits", "test_shift", "--output", str(card), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    text = card.read_text()
    assert "95th-percentile Hausdorff distance" in text and "| left_ventricle |" in text
    assert "Dice per phase:" in text and "ED (2 cases)" in text and "ES (2 cases)" in text
    assert "| right_ventricle | 2 |" in text and "EF bias [limits]" in text
    assert "Spacing note (dataset.json)" in text  # the h5 copy stores no spacing: the card says what the units are

    run_bundle(
        "acdc_dropclass",
        "inference",
        **{**common, "output_dir": str(tmp_path / "p")},
        input=str(data / "imagesTr"),
        ckpt_path=str(checkpoint),
    )
    source = nib.load(str(data / "imagesTr" / "acdc_patient081_ES.nii.gz"))
    predicted = nib.load(str(tmp_path / "p" / "acdc_patient081_ES_seg.nii.gz"))
    assert predicted.shape == source.shape == (24, 20, 3) and np.allclose(predicted.affine, source.affine)


def test_camvid_bundle_trains_evaluates_and_segments_on_synthetic_segnet_files(tmp_path):
    import json

    from PIL import Image

    from tests.data.test_camvid import write_camvid

    root = write_camvid(tmp_path / "CamVid")
    small = SMALL["camvid_dropclass"]
    common = {"dataset_dir": str(root), "output_dir": str(tmp_path / "run"), **small}
    run_bundle(
        "camvid_dropclass",
        "train",
        **common,
        max_epochs=1,
        val_interval=1,
        **{"preprocessing#scale_range": [0.8, 1.2], "preprocessing#foreground_share": 0.5},
    )
    checkpoint = tmp_path / "run" / "checkpoints" / "model.pt"
    assert checkpoint.is_file()
    run_bundle(
        "camvid_dropclass",
        "evaluate",
        **common,
        ckpt_path=str(checkpoint),
        eval_split="test",
        eval_dir=str(tmp_path / "e"),
    )
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == 2 and list(summary["mean"]) == [
        "Sky",
        "Building",
        "Pole",
        "Road",
        "Pavement",
        "Tree",
        "SignSymbol",
        "Fence",
        "Car",
        "Pedestrian",
        "Bicyclist",
    ]
    case = summary["metric_per_case"][0]["metrics"]
    assert case["Road"]["n_ref"] > 0 and case["Pedestrian"]["n_ref"] == 0  # void (11) pixels counted nowhere
    assert sum(m["n_ref"] for m in case.values()) == 24 * 32 - 6
    run_bundle(
        "camvid_dropclass",
        "inference",
        **{**common, "output_dir": str(tmp_path / "p")},
        input=str(root / "test"),
        ckpt_path=str(checkpoint),
    )
    written = sorted((tmp_path / "p").glob("*_seg.png"))
    assert len(written) == 2 and Image.open(written[0]).size == (32, 24)
