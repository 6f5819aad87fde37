"""``package``: a bundle as a self-contained model-zoo package that MONAI's own CLI runs from its folder."""

import hashlib
import json
import pathlib
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from medseg_dropclass.apps.package import RUNTIME_PACKAGES, installed_versions, package_bundle
from medseg_dropclass.apps.predict import predict
from medseg_dropclass.engine.bundles import find_bundle
from tests.cli_runner import run_cli


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    return package_bundle(
        "phantom3d_dropclass", str(tmp_path_factory.mktemp("dist")), archive=True, exports=["torchscript"]
    )


def monai_bundle(*args, cwd):
    """MONAI's own command line in a child process (the subject here is that MONAI alone runs the package)."""
    command = [sys.executable, "-m", "monai.bundle", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_the_package_holds_merged_configs_complete_metadata_and_hashed_weights(packaged):
    names = {str(p.relative_to(packaged)) for p in packaged.rglob("*") if p.is_file()}
    for name in ("train", "evaluate", "inference", "multi_gpu_train"):
        config = json.loads((packaged / "configs" / f"{name}.json").read_text())
        assert "preprocessing" in config and "network_def" in config and "_meta_" not in config  # the base merged in
        assert not any(key.startswith("+") or "#" in key for key in config)
    assert {"configs/logging.conf", "configs/metadata.json", "models/model.pt", "docs/README.md", "LICENSE"} <= names
    meta = json.loads((packaged / "configs" / "metadata.json").read_text())
    installed = installed_versions()
    expected = {k: v for k, v in installed.items() if k not in ("monai", "torch", "numpy")}
    assert expected.items() <= meta["required_packages_version"].items()
    assert {"highdicom", "SimpleITK", "scipy", "onnxruntime"} <= set(meta["required_packages_version"])
    assert set(expected) == set(RUNTIME_PACKAGES) - {"monai", "torch", "numpy"} - (
        set(RUNTIME_PACKAGES) - set(installed)
    )
    assert meta["monai_version"] == installed["monai"] and meta["pytorch_version"] == installed["torch"]
    for name in ("model.pt", "model.ts"):  # the weights and the exported network, each with its hash
        digest = hashlib.sha256((packaged / "models" / name).read_bytes()).hexdigest()
        assert (
            f'path: "models/{name}"\n    url: ""\n    hash_val: "{digest}"'
            in (packaged / "large_files.yml").read_text()
        )
    import zipfile

    with zipfile.ZipFile(packaged.parent / f"{packaged.name}.zip") as archive:
        assert f"{packaged.name}/configs/inference.json" in archive.namelist()


def test_nothing_is_overwritten(packaged):
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        package_bundle("phantom3d_dropclass", str(packaged.parent))
    done = run_cli("package", "--bundle", "phantom3d_dropclass", "--output-dir", packaged.parent, cwd=packaged.parent)
    assert done.returncode == 1 and "exists and is not empty" in done.stderr


def test_monai_alone_segments_and_trains_and_the_labels_equal_the_source_bundle(packaged, phantom3d, tmp_path):
    from monai.bundle import ckpt_export, verify_net_in_out

    images = phantom3d / "imagesTs"
    done = monai_bundle("run", "--config_file", "configs/inference.json", "--input", images, "--output_dir", tmp_path / "pkg",
                        cwd=packaged)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    predict("phantom3d_dropclass", str(images), str(tmp_path / "source"), progress=False)
    outputs = sorted((tmp_path / "pkg").glob("*_seg.nii.gz"))
    assert outputs and len(outputs) == len(list(images.glob("*.nii.gz")))
    for packaged_file in outputs:
        source_file = tmp_path / "source" / packaged_file.name
        np.testing.assert_array_equal(nib.load(str(packaged_file)).get_fdata(), nib.load(str(source_file)).get_fdata())
    done = monai_bundle("run", "--config_file", "configs/train.json", "--dataset_dir", phantom3d, "--max_epochs", "1",
                        "--val_interval", "1", "--batch_size", "1", "--output_dir", tmp_path / "run", cwd=packaged)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "checkpoint_epoch=1.pt").is_file()
    meta, inference = str(packaged / "configs" / "metadata.json"), str(packaged / "configs" / "inference.json")
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=inference)
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(packaged / "models" / "model.pt"),
                meta_file=meta, config_file=inference)  # fmt: skip
    import zipfile

    with zipfile.ZipFile(tmp_path / "model.ts") as archive:  # one merged inference config travels with the model
        extra = [n for n in archive.namelist() if "/extra/" in n]
    assert any(n.endswith("inference.json") for n in extra) and not any(n.endswith(".yaml") for n in extra)
    assert find_bundle("phantom3d_dropclass") != packaged


@pytest.mark.shared
def test_the_package_metadata_verifies_against_monai_schema(packaged):
    from monai.bundle import verify_metadata

    from tests.conftest import SHARED

    schema = SHARED / "monai" / "meta_schema_20240725.json"
    if not schema.is_file():
        pytest.skip(f"{schema} is absent")
    verify_metadata(meta_file=str(packaged / "configs" / "metadata.json"), filepath=str(schema))


def test_a_missing_checkpoint_is_named(tmp_path):
    done = run_cli("package", "--bundle", "phantom3d_dropclass", "--output-dir", tmp_path, "--ckpt", tmp_path / "no.pt",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1 and f"{tmp_path / 'no.pt'}: no such checkpoint" in done.stderr
    assert not pathlib.Path(tmp_path / "phantom3d_dropclass").exists()


def test_a_packaged_acdc_bundle_segments_volumes_slice_by_slice_under_monai_alone(tmp_path):
    """The 2D-on-slices bundle (train_on_slices): its package segments 3D volumes through MONAI's CLI, equal to the
    source bundle's predict with the same weights (ACDC ships none: a network's initial weights stand in)."""
    import torch

    from medseg_dropclass.data.acdc import h5_cases, write_acdc_decathlon
    from medseg_dropclass.engine.bundles import inference_parser
    from tests.data.test_acdc import h5_copy

    data = tmp_path / "acdc"
    write_acdc_decathlon(h5_cases(h5_copy(tmp_path / "h5")), data, "h5 (test)")
    weights = tmp_path / "model.pt"
    torch.manual_seed(0)
    torch.save(inference_parser("acdc_dropclass").get_parsed_content("network_def").state_dict(), weights)
    packaged = package_bundle("acdc_dropclass", str(tmp_path / "dist"), checkpoint=str(weights))
    images = tmp_path / "in"
    images.mkdir()
    for name in ("acdc_patient081_ES.nii.gz", "acdc_patient086_ED.nii.gz"):
        (images / name).write_bytes((data / "imagesTr" / name).read_bytes())
    done = monai_bundle("run", "--config_file", "configs/inference.json", "--input", images, "--output_dir", tmp_path / "pkg",
                        cwd=packaged)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    predict("acdc_dropclass", str(images), str(tmp_path / "source"), ckpt=str(weights), progress=False)
    for name in ("acdc_patient081_ES", "acdc_patient086_ED"):
        packaged_labels = nib.load(str(tmp_path / "pkg" / f"{name}_seg.nii.gz"))
        assert packaged_labels.shape == nib.load(str(images / f"{name}.nii.gz")).shape
        source_labels = nib.load(str(tmp_path / "source" / f"{name}_seg.nii.gz")).get_fdata()
        np.testing.assert_array_equal(packaged_labels.get_fdata(), source_labels)
