import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.transforms import Compose, LoadImaged

from medseg_dropclass.data import DatasetError, class_table, count_classes, write_class_statistics
from tests.data.conftest import shared_fixture, write_nifti
from tests.cli_runner import run_script


def test_counts_shares_and_flags(tmp_path):
    labels = [np.zeros((10, 10, 10), np.uint8), np.zeros((10, 10, 10), np.uint8)]
    labels[0][:3] = 1  # 300 voxels
    labels[1][0, 0, :5] = 2  # 5 voxels
    labels[1][1, 1, 1] = 255
    items = [{"label": write_nifti(tmp_path / f"l{i}.nii.gz", l)} for i, l in enumerate(labels)]
    loader = Compose([LoadImaged("label", image_only=True)])
    result = count_classes(items, loader, 3, ignore_index=255, progress=False)
    assert result["counts"].tolist() == [1694, 300, 5] and result["ignored"] == 1 and result["cases"] == 2
    rows = class_table(result["counts"], ["background", "organ", "lesion"])
    assert [r["flag"] for r in rows] == ["", "", "<1%"]
    assert rows[2]["share"] == 5 / 1999
    paths = write_class_statistics(rows, str(tmp_path / "out"), "tiny")
    assert "| 2 | lesion | 5 | 0.2501% | <1% |" in paths["markdown"].read_text()
    assert paths["csv"].read_text().splitlines()[0] == "class_id,name,voxels,share,flag"
    assert paths["png"].stat().st_size > 5000
    with pytest.raises(DatasetError, match=r"l1.nii.gz: label value 2 outside the classes 0..1"):
        count_classes(items, loader, 2, ignore_index=255, progress=False)


@pytest.mark.shared
def test_real_lesions_are_flagged_below_one_percent():
    root = shared_fixture("nrrd_lesions")
    items = [{"label": str(root / f"{c}_label.nrrd")} for c in ("brain1", "brain2", "breast1")]
    result = count_classes(items, Compose([LoadImaged("label", image_only=True)]), 2, progress=False)
    rows = class_table(result["counts"], ["background", "lesion"])
    assert rows[1]["flag"] in ("<1%", "<0.1%") and rows[1]["voxels"] > 0


@pytest.mark.shared
def test_cli_on_phantoms_and_cityscapes(phantom2d, tmp_path):
    run = lambda *args: run_script("data_scripts/class_stats.py", *args)  # noqa: E731
    done = run("decathlon", str(phantom2d), "--output-dir", str(tmp_path / "p"))
    assert done.returncode == 0, done.stderr
    assert "lesion_c" in done.stdout and (tmp_path / "p" / "class_stats.png").is_file()
    failed = run("decathlon", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "x"))
    assert failed.returncode == 1 and "nowhere/dataset.json: no such file" in failed.stderr
    root = shared_fixture("cityscapes_mini")
    done = run("cityscapes", str(root), "--split", "val", "--output-dir", str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr
    assert "| 0 | road |" in done.stdout


def test_neighbour_cooccurrence_finds_the_host_organ():
    from medseg_dropclass.data.stats import neighbour_cooccurrence

    label = torch.zeros(1, 30, 30, dtype=torch.long)
    label[0, 5:25, 5:25] = 1  # host organ
    label[0, 12:15, 12:15] = 3  # lesion inside the host: its whole ring is organ 1
    label[0, 27:29, 27:29] = 2  # class 2 away from the lesion
    other = torch.zeros(1, 30, 30, dtype=torch.long)
    other[0, 1:3, 1:3] = 3  # a lesion in the background in a second case
    items = [{"label": label}, {"label": other}]
    table = neighbour_cooccurrence(items, lambda item: item, 4, classes=[3, 2], radius=1)
    ring = 4 * 3 + 4  # the 1-voxel ring around a 3x3 square
    torch.testing.assert_close(table[0], torch.tensor([12 / (ring + 12), ring / (ring + 12), 0.0, 0.0], dtype=torch.float64))
    assert table[1, 0] == 1.0 and table.sum(1).tolist() == [1.0, 1.0]
