"""predict: case by case with the bundle's own pieces; equal to the bundle's inference config; a failing case is
reported and skipped; the onnxruntime backend runs an exported model to the same labels."""

import pathlib

import nibabel as nib
import numpy as np
import pytest

from medseg_dropclass.apps.export import export_network
from medseg_dropclass.apps.predict import CasesFailedError, predict
from medseg_dropclass.engine.bundles import bundles_dir, run_bundle
from medseg_dropclass.validation import error_in_chain
from tests.cli_runner import run_cli

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def inputs_with_a_broken_case(phantom2d, folder):
    folder.mkdir()
    images = sorted((phantom2d / "imagesTs").iterdir())
    for image in images:
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "broken.nii.gz").write_bytes(images[0].read_bytes()[:300])
    return images


def test_predict_matches_the_inference_config_and_skips_a_broken_case(phantom2d, tmp_path):
    images = inputs_with_a_broken_case(phantom2d, tmp_path / "in")
    done = run_cli(
        "predict",
        "--bundle",
        "phantom2d_dropclass",
        "--input",
        str(tmp_path / "in"),
        "--output-dir",
        str(tmp_path / "out"),
        cwd=REPO_ROOT,
    )
    assert done.returncode == 1  # one case failed ...
    assert f"2 of 3 case(s) written to {tmp_path / 'out'}" in done.stdout
    assert "broken.nii.gz: cannot be read as an image" in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        i.name.replace(".nii.gz", "_seg.nii.gz") for i in images
    ]  # ... the others ran

    with pytest.raises(RuntimeError) as failure:  # the bundle's own inference config: the same contract
        run_bundle("phantom2d_dropclass", "inference", input=str(tmp_path / "in"), output_dir=str(tmp_path / "config"))
    (line,) = str(error_in_chain(failure.value, (CasesFailedError,), context=False)).splitlines()
    assert line.startswith(f"{tmp_path / 'in' / 'broken.nii.gz'}: cannot be read as an image")
    assert len(list((tmp_path / "config").iterdir())) == len(images)
    for image in images:
        name = image.name.replace(".nii.gz", "_seg.nii.gz")
        ours, theirs = nib.load(str(tmp_path / "out" / name)), nib.load(str(tmp_path / "config" / name))
        assert np.array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj)) and np.allclose(
            ours.affine, theirs.affine
        )
        assert ours.shape == nib.load(str(image)).shape


def test_the_onnxruntime_backend_gives_the_same_labels(phantom2d, tmp_path):
    import torch
    from monai.bundle import ConfigParser

    from medseg_dropclass.engine.bundles import config_files

    root = bundles_dir() / "phantom2d_dropclass"
    parser = ConfigParser()
    parser.read_config(config_files(root, "inference"))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    export_network(network, torch.zeros(1, 1, 96, 96), str(tmp_path / "m.onnx"), "onnx")
    with_torch = predict("phantom2d_dropclass", str(phantom2d / "imagesTs"), str(tmp_path / "t"), progress=False)
    with_onnx = predict(
        "phantom2d_dropclass",
        str(phantom2d / "imagesTs"),
        str(tmp_path / "o"),
        backend="onnxruntime",
        model=str(tmp_path / "m.onnx"),
        progress=False,
    )
    assert not with_torch["failed"] and not with_onnx["failed"] and len(with_onnx["written"]) == 2
    for a, b in zip(sorted(with_torch["written"]), sorted(with_onnx["written"])):
        labels_a, labels_b = np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj)
        assert (labels_a == labels_b).mean() > 0.999  # float32 rounding may flip a tie, nothing more


def test_predict_refuses_a_missing_model_and_never_replaces_outputs(phantom2d, tmp_path):
    done = run_cli(
        "predict",
        "--bundle",
        "phantom2d_dropclass",
        "--input",
        str(phantom2d / "imagesTs"),
        "--output-dir",
        str(tmp_path / "o"),
        "--backend",
        "onnxruntime",
        "--model",
        str(tmp_path / "none.onnx"),
        cwd=REPO_ROOT,
    )
    assert done.returncode == 1 and "none.onnx: no such ONNX model" in done.stderr
    done = run_cli("predict", "--bundle", "phantom2d_dropclass", "--input", phantom2d / "imagesTs", "--output-dir",
                   tmp_path / "o", "--backend", "onnxruntime", cwd=tmp_path)  # fmt: skip
    assert (
        done.returncode == 1
        and "phantom2d_dropclass_model.onnx: no such ONNX model (the default of --model" in done.stderr
    )
    predict("phantom2d_dropclass", str(phantom2d / "imagesTs"), str(tmp_path / "o"), progress=False)
    done = run_cli(
        "predict",
        "--bundle",
        "phantom2d_dropclass",
        "--input",
        str(phantom2d / "imagesTs"),
        "--output-dir",
        str(tmp_path / "o"),
        cwd=REPO_ROOT,
    )
    assert done.returncode == 1 and "already exist" in done.stderr and "--overwrite" in done.stderr


def test_a_large_case_is_segmented_slab_by_slab_to_the_same_labels(tmp_path):
    """Above --stream-above voxels a sliding-window bundle keeps only the class map (benchmarks/large_volume.py: 18x the
    input's memory before, 2.5x after, on 512x512x200); on the bundle's own grid the labels are those of the full path."""
    import nibabel as nib

    from medseg_dropclass.apps.predict import predict

    (tmp_path / "in").mkdir()
    volume = np.random.default_rng(0).normal(40, 30, (60, 52, 30)).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.5, 1.0])), str(tmp_path / "in" / "ct.nii.gz"))
    labels = {}
    for name, stream_above in (("slab", 0), ("whole", 2**62)):
        result = predict(
            "phantom3d_dropclass", str(tmp_path / "in"), str(tmp_path / name), progress=False, stream_above=stream_above
        )
        assert not result["failed"]
        labels[name] = np.asarray(nib.load(result["written"][0]).dataobj)
    assert labels["slab"].shape == volume.shape and np.array_equal(labels["slab"], labels["whole"])
    assert len(np.unique(labels["whole"])) > 1  # a real prediction, not an empty map
