"""CamVid loader and preparation script on tiny synthetic PNGs in the SegNet layout (the data are never needed)."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medseg_dropclass.data.camvid import CAMVID_CLASSES, camvid_datalist, camvid_transforms
from medseg_dropclass.data.transforms import DatasetError
from tests.cli_runner import run_script

REPO = pathlib.Path(__file__).resolve().parents[2]


def street(seed: int, size=(24, 32)):
    """An RGB frame and its annotation: sky on top, road below, a car, a pole, void (11) in a corner."""
    rng = np.random.default_rng(seed)
    label = np.full(size, 1, np.uint8)  # Building
    label[: size[0] // 4] = 0  # Sky
    label[size[0] // 2:] = 3  # Road
    label[size[0] // 2: size[0] // 2 + 4, 4:12] = 8  # Car
    label[2:size[0] // 2, 20] = 2  # Pole
    label[-2:, -3:] = 11  # void
    image = (rng.integers(0, 60, (*size, 3)) + label[..., None] * 15).astype(np.uint8)
    return image, label


def write_camvid(root: pathlib.Path, counts=(("train", 6), ("val", 2), ("test", 2))) -> pathlib.Path:
    for split, count in counts:
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        lines = []
        for index in range(count):
            name = f"0001TP_{index:06d}.png"
            image, label = street(hash((split, index)) % 1000)
            Image.fromarray(image).save(root / split / name)
            Image.fromarray(label).save(root / f"{split}annot" / name)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")  # the authors' absolute paths
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_the_split_lists_resolve_under_root_and_void_becomes_ignore(tmp_path):
    root = write_camvid(tmp_path / "CamVid")
    datalist = camvid_datalist(root, "train")
    assert len(datalist) == 6 and datalist[0]["image"] == str(root / "train" / "0001TP_000000.png")
    assert datalist[0]["label"] == str(root / "trainannot" / "0001TP_000000.png")
    sample = camvid_transforms(train=False)(datalist[0])
    label = sample["label"][0].numpy()
    _, expected = street(hash(("train", 0)) % 1000)
    assert sample["image"].shape == (3, 24, 32) and label.shape == (24, 32)
    assert (label[-2:, -3:] == 255).all() and set(np.unique(label)) == {0, 1, 2, 3, 8, 255}
    np.testing.assert_array_equal(label[expected != 11], expected[expected != 11])
    assert len(CAMVID_CLASSES) == 11 and CAMVID_CLASSES[10] == "Bicyclist"

    crops = camvid_transforms(train=True, crop_size=(16, 16))(datalist[1])
    assert crops["image"].shape == (3, 16, 16)


def test_missing_files_and_bad_lines_are_named(tmp_path):
    root = write_camvid(tmp_path / "CamVid")
    (root / "trainannot" / "0001TP_000003.png").unlink()
    with pytest.raises(DatasetError, match=r"train.txt: 1 listed file\(s\) missing, e.g. \[.*trainannot/0001TP_000003.png"):
        camvid_datalist(root, "train")
    (root / "val.txt").write_text("only_one_path.png\n")
    with pytest.raises(DatasetError, match=r"val.txt, line 1: expected 'IMAGE ANNOTATION'"):
        camvid_datalist(root, "val")
    with pytest.raises(DatasetError, match="nope.txt: no such split list"):
        camvid_datalist(root, "nope")


def test_prepare_downsamples_images_and_keeps_labels_and_void_by_nearest_neighbour(tmp_path):
    root = write_camvid(tmp_path / "CamVid")
    script = REPO / "data_scripts" / "camvid_prepare.py"
    out = tmp_path / "small"
    done = run_script(str(script), "--input", str(root), "--output-dir", str(out), "--size", "12", "16")
    assert done.returncode == 0, done.stderr
    assert "train 6, val 2, test 2" in done.stdout
    datalist = camvid_datalist(out, "train")
    small = np.asarray(Image.open(datalist[0]["label"]))
    full = np.asarray(Image.open(root / "trainannot" / "0001TP_000000.png"))
    assert small.shape == (12, 16) and np.asarray(Image.open(datalist[0]["image"])).shape == (12, 16, 3)
    assert set(np.unique(small)) <= set(np.unique(full)) and 11 in small  # nearest: no new values, void kept
    again = run_script(str(script), "--input", str(root), "--output-dir", str(out))
    assert again.returncode == 1 and "pass --overwrite" in again.stderr

    Image.fromarray(np.full((24, 32), 40, np.uint8)).save(root / "testannot" / "0001TP_000001.png")
    bad = run_script(str(script), "--input", str(root), "--output-dir", str(tmp_path / "bad"))
    assert bad.returncode == 1 and "testannot/0001TP_000001.png: label values [40] outside 0..11" in bad.stderr
