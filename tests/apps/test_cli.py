"""The command line: check-data, compare on any Decathlon dataset, and the bundles found from an installed wheel."""

import json
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from medseg_dropclass.apps.cli import main
from tests.cli_runner import run_cli
from tests.data.conftest import write_decathlon

REPO = pathlib.Path(__file__).resolve().parents[2]


def multichannel_cases(spatial, channels, count=4):
    cases = []
    rng = np.random.default_rng(0)
    for i in range(count):
        label = np.zeros(spatial, np.uint8)
        label[tuple(slice(2, s - 2) for s in spatial)] = 1
        label[tuple(slice(s // 2 - 1, s // 2 + 1) for s in spatial)] = 2
        image = np.stack([label * (c + 1.0) + rng.normal(0, 0.1, spatial) for c in range(channels)], -1).astype(
            np.float32
        )
        if len(spatial) == 2:
            image = image[:, :, None, :]  # NIfTI keeps channels on the 4th axis, also for 2D images
        cases.append((f"case_{i}", image, label, np.eye(4), np.eye(4)))
    return cases


def write_2d_vector_dataset(root, cases, extra):
    """2D multi-channel images as MHA vector images (NIfTI cannot hold a 2D image with channels for MONAI)."""
    import SimpleITK as sitk

    training = []
    for name, image, label, _, _ in cases:
        for folder, array, vector in (("imagesTr", image[:, :, 0, :], True), ("labelsTr", label, False)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(root / folder / f"{name}.mha"))
        training.append({"image": f"./imagesTr/{name}.mha", "label": f"./labelsTr/{name}.mha"})
    content = {"labels": {"0": "background", "1": "organ", "2": "lesion"}, "training": training, **extra}
    (root / "dataset.json").write_text(json.dumps(content))


@pytest.mark.parametrize(
    "spatial, size, bundle", [((24, 20), "2D", "phantom2d_dropclass"), ((16, 16, 8), "4D", "phantom3d_dropclass")]
)
def test_compare_runs_on_any_decathlon_dataset_with_several_channels(tmp_path, spatial, size, bundle):
    root = tmp_path / "data"
    extra = {"tensorImageSize": size, "modality": {"0": "T1", "1": "T2"}}
    if len(spatial) == 2:
        write_2d_vector_dataset(root, multichannel_cases(spatial, 2), extra)
    else:
        write_decathlon(root, multichannel_cases(spatial, 2), extra=extra)
    extra = (
        {"batch_size": 1, "crop_size": [8, 8, 8]}
        if len(spatial) == 3
        else {"batch_size": 1, "preprocessing#pixdim": None}
    )
    from medseg_dropclass.study.compare import run_study

    results = run_study(
        str(tmp_path / "out"), ["baseline"], [0], 1, dataset_dir=str(root), bundle=bundle, extra_overrides=extra
    )
    assert results["splits"] == ["validation"]  # no labelled test split: the held-out part of training
    assert results["class_names"] == ["background", "organ", "lesion"]
    summary = results["arms"]["baseline"]["seeds"]["0"]["summaries"]["validation"]
    assert len(summary["metric_per_case"]) == 1 and set(summary["mean"]) == {"background", "organ", "lesion"}
    args = json.loads((tmp_path / "out" / "baseline" / "seed0" / "args.json").read_text())
    assert "in_channels" not in args and "num_classes" not in args  # both read from dataset.json


def test_check_data_reports_every_problem_and_passes_a_clean_dataset(tmp_path, capsys, phantom2d):
    main(["check-data", str(phantom2d)])  # returns: exit code 0
    out = capsys.readouterr().out
    assert "all files fine" in out and "lesion_c" in out

    root = tmp_path / "bad"
    label = np.zeros((8, 8, 4), np.uint8)
    label[2:4, 2:4, 1:3] = 5
    image = np.zeros((8, 8, 4), np.float32)
    image[0, 0, 0] = np.nan
    write_decathlon(
        root,
        [
            ("nan_and_value", image, label, np.eye(4), np.eye(4)),
            ("shape", np.zeros((8, 8, 4), np.float32), np.zeros((8, 8, 3), np.uint8), np.eye(4), np.eye(4)),
        ],
        extra={"test": [], "validation": [{"image": "./imagesTr/gone.nii.gz", "label": "./labelsTr/gone.nii.gz"}]},
    )
    (root / "imagesTr" / "truncated.nii.gz").write_bytes(b"\x1f\x8b\x08")
    content = json.loads((root / "dataset.json").read_text())
    content["training"].append({"image": "./imagesTr/truncated.nii.gz", "label": "./labelsTr/shape.nii.gz"})
    (root / "dataset.json").write_text(json.dumps(content))
    with pytest.raises(SystemExit) as ended:
        main(["check-data", str(root)])
    assert ended.value.code == 1
    err = capsys.readouterr().err
    assert "nan_and_value.nii.gz: image holds 1 non-finite voxel(s) (NaN/Inf)" in err
    assert "shape.nii.gz: label shape (8, 8, 3) differs from image shape (8, 8, 4)" in err
    assert "truncated.nii.gz" in err and "cannot be read" in err
    assert "warning: " in err and "split 'test' is empty" in err and "gone.nii.gz: missing (validation image)" in err
    assert "5 problem(s) in " in err  # the empty optional split is a warning, not a problem


def test_the_wheel_carries_the_bundles_and_finds_them_installed(tmp_path):
    import shutil

    # build from a copy: setuptools writes build/ and *.egg-info/ beside the sources
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "medseg_dropclass", source / "medseg_dropclass", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(
        REPO / "bundles", source / "bundles", ignore=shutil.ignore_patterns("__pycache__", "data", "runs", "eval")
    )
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("medseg_dropclass-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for bundle in (
        "_base",
        "phantom2d_dropclass",
        "phantom3d_dropclass",
        "msd_organ_lesion_dropclass",
        "cityscapes_dropclass",
        "voc_dropclass",
    ):
        assert any(n.startswith(f"medseg_dropclass/bundles/{bundle}/configs/") for n in names), bundle
    assert "medseg_dropclass/bundles/phantom2d_dropclass/models/model.pt" in names
    assert "medseg_dropclass/study/arms.yaml" in names  # the arm registry is data the study engine reads
    modules = {
        str(p.relative_to(REPO)) for p in (REPO / "medseg_dropclass").rglob("*.py") if "__pycache__" not in p.parts
    }
    assert sorted(modules - names) == []  # every subpackage is listed in pyproject.toml
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    listing = subprocess.run(
        [sys.executable, "-m", "medseg_dropclass", "bundles"],
        capture_output=True,
        text=True,
        cwd=outside,
        env=env,
        timeout=120,
    )
    assert listing.returncode == 0, listing.stderr[-2000:]
    for line in listing.stdout.splitlines():
        assert str(target) in line, line  # every bundle and the base from the installed copy, not the checkout
    assert len(listing.stdout.splitlines()) == 8  # seven bundles and the base
    help_text = subprocess.run(
        [sys.executable, "-m", "medseg_dropclass", "convert", "acdc", "--help"],
        capture_output=True,
        text=True,
        cwd=outside,
        env=env,
        timeout=120,
    )
    assert help_text.returncode == 0 and "--source" in help_text.stdout  # the converters travel with the install


def test_convert_reaches_every_converter_and_names_an_unknown_kind(tmp_path):
    done = run_cli("convert", "phantoms", "--output-dir", tmp_path / "p", "--size", "32", "--num-train", "2",
                   "--num-test", "1", "--num-shifted", "1", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0 and (tmp_path / "p" / "dataset.json").is_file(), done.stderr[-2000:]
    assert "acdc" in run_cli("convert", "--help", cwd=tmp_path).stdout
    done = run_cli("convert", "nope", cwd=tmp_path)
    assert done.returncode == 2 and "unknown kind 'nope'; known: acdc, camvid, phantoms, class-stats" in done.stderr
