"""ACDC converter: both sources (official NIfTI layout with Info.cfg, and the h5 copy) on tiny synthetic files
in the same formats; splits by patient; groups from Info.cfg or the numbering; clear errors on bad files."""

import json
import pathlib
import subprocess
import sys

import h5py
import nibabel as nib
import numpy as np
import pytest

from medseg_dropclass.data import read_dataset_json
from medseg_dropclass.data.acdc import COMMON_SPLIT, acdc_splits, group_from_number, h5_cases, official_cases, write_acdc_decathlon
from medseg_dropclass.data.transforms import DatasetError
from tests.cli_runner import run_script

REPO = pathlib.Path(__file__).resolve().parents[2]


def heart(slices: int, size=(24, 20), rv: bool = True, seed: int = 0):
    """A tiny (slices, H, W) cine stack: LV disc, myocardium ring, RV blob (absent where ``rv`` is false)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: size[0], : size[1]]
    label = np.zeros((slices, *size), np.uint8)
    for s in range(slices):
        radius = np.hypot(y - 12, x - 11)
        label[s][radius < 6] = 2
        label[s][radius < 4] = 3
        if rv and s < slices - 1:  # the apical slice has no right ventricle
            label[s][(np.hypot(y - 12, x - 3) < 3) & (label[s] == 0)] = 1
    image = (label * 0.2 + rng.normal(0, 0.05, label.shape)).astype(np.float32)
    return image, label


def write_h5(path, image, label):
    with h5py.File(path, "w") as handle:
        handle["image"], handle["label"] = image, label


def h5_copy(root, patients=(3, 86, 2, 1, 81)):
    """Training patients (3, 86) as slices, validation/test patients (2, 1, 81) as volumes, both frames."""
    (root / "data").mkdir(parents=True)
    for patient in patients:
        for frame in (1, 2):
            image, label = heart(3, rv=frame == 1, seed=patient * 10 + frame)
            if patient in COMMON_SPLIT["training"]:
                for s in range(3):
                    write_h5(root / "data" / f"patient{patient:03d}_frame{frame:02d}_slice_{s + 1}.h5", image[s], label[s])
            else:
                write_h5(root / "data" / f"patient{patient:03d}_frame{frame:02d}.h5", image, label)
    return root


def official(root, patients=((3, "DCM"), (86, None), (1, "RV"))):
    for patient, group in patients:
        folder = root / "training" / f"patient{patient:03d}"
        folder.mkdir(parents=True)
        lines = ["ED: 1", "ES: 9"] + ([f"Group: {group}"] if group else [])
        (folder / "Info.cfg").write_text("\n".join(lines) + "\nHeight: 170.0\nNbFrame: 30\n")
        affine = np.diag([1.5, 1.5, 10.0, 1.0])
        for frame in (1, 9):
            image, label = heart(4, seed=patient + frame)
            nib.save(nib.Nifti1Image(np.moveaxis(image, 0, -1), affine), str(folder / f"patient{patient:03d}_frame{frame:02d}.nii.gz"))
            nib.save(nib.Nifti1Image(np.moveaxis(label, 0, -1), affine), str(folder / f"patient{patient:03d}_frame{frame:02d}_gt.nii.gz"))
        image, _ = heart(4)
        nib.save(nib.Nifti1Image(np.moveaxis(image, 0, -1), affine), str(folder / f"patient{patient:03d}_4d.nii.gz"))  # ignored
    return root


def test_groups_follow_the_official_numbering():
    assert [group_from_number(n) for n in (1, 20, 21, 40, 41, 60, 61, 80, 81, 100)] == [
        "DCM", "DCM", "HCM", "HCM", "MINF", "MINF", "NOR", "NOR", "RV", "RV"]
    with pytest.raises(DatasetError, match="patient 101: the group follows from the number for training patients 001-100 only"):
        group_from_number(101)
    assert len(COMMON_SPLIT["training"]) == 70 and len(COMMON_SPLIT["validation"]) == 10 and len(COMMON_SPLIT["test"]) == 20


def test_h5_copy_slices_are_stacked_back_into_volumes_and_split_by_patient(tmp_path):
    cases = {(c.patient, c.phase): c for c in h5_cases(h5_copy(tmp_path / "h5"))}
    assert sorted(cases) == [(p, ph) for p in (1, 2, 3, 81, 86) for ph in ("ED", "ES")]
    image, label = heart(3, rv=True, seed=31)
    stacked = cases[(3, "ED")]
    assert stacked.image.shape == (24, 20, 3) and np.array_equal(stacked.label, np.moveaxis(label, 0, -1))
    np.testing.assert_array_equal(stacked.image, np.moveaxis(image, 0, -1))
    assert not (cases[(3, "ES")].label == 1).any()  # a frame without right ventricle stays without
    assert (stacked.label[..., 2] == 1).sum() == 0 and (stacked.label[..., 0] == 1).sum() > 0  # the apical slice has none
    assert stacked.group == "DCM" and cases[(86, "ED")].group == "RV" and stacked.group_source == "numbering"

    path = write_acdc_decathlon(h5_cases(tmp_path / "h5"), tmp_path / "out", "h5 (h5 copy): test")
    content = json.loads(path.read_text())
    patients = {split: sorted({e["patient"] for e in content[split]}) for split in content if split.endswith(("_common", "_shift"))}
    assert patients["training_common"] == ["patient003", "patient086"] and patients["validation_common"] == ["patient002"]
    assert patients["test_common"] == ["patient001", "patient081"]
    assert patients["training_shift"] == ["patient003"]  # the RV patient 086 leaves training ...
    assert patients["test_shift"] == ["patient081", "patient086"]  # ... and every RV patient is tested
    assert sorted({e["patient"] for e in content["test_no_rv"]}) == ["patient001"]  # in distribution for "shift"
    assert all(len(content[split]) == 2 * len(patients[split]) for split in patients)  # ED and ES of a patient stay together
    assert "unknown" in content["spacing"] and content["group_source"] == "numbering"
    info = read_dataset_json(path)
    assert info.class_names == ["background", "right_ventricle", "myocardium", "left_ventricle"] and info.spatial_dims == 3
    written = nib.load(str(tmp_path / "out" / "labelsTr" / "acdc_patient003_ED.nii.gz"))
    assert np.array_equal(np.asarray(written.dataobj), stacked.label)
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        write_acdc_decathlon(h5_cases(tmp_path / "h5"), tmp_path / "out", "again")


def test_official_layout_keeps_geometry_and_reads_the_group_from_info_cfg(tmp_path):
    cases = {(c.patient, c.phase): c for c in official_cases(official(tmp_path / "acdc"))}
    assert sorted(cases) == [(1, "ED"), (1, "ES"), (3, "ED"), (3, "ES"), (86, "ED"), (86, "ES")]
    assert cases[(1, "ES")].group == "RV" and cases[(1, "ES")].group_source == "Info.cfg"  # Info.cfg wins over the numbering
    assert cases[(86, "ED")].group == "RV" and cases[(86, "ED")].group_source == "numbering"  # no Group: line
    assert cases[(3, "ES")].source.endswith("patient003_frame09.nii.gz")  # ES from Info.cfg's frame number
    path = write_acdc_decathlon(official_cases(tmp_path / "acdc"), tmp_path / "out", "official (official ACDC layout): test")
    written = nib.load(str(tmp_path / "out" / "imagesTr" / "acdc_patient003_ES.nii.gz"))
    assert np.allclose(written.header.get_zooms(), (1.5, 1.5, 10.0))
    content = json.loads(path.read_text())
    assert content["spacing"] == "kept from the NIfTI files" and content["group_source"] == "Info.cfg and numbering"
    assert sorted({e["patient"] for e in content["test_shift"]}) == ["patient001", "patient086"]


def test_bad_files_give_errors_naming_them(tmp_path):
    root = h5_copy(tmp_path / "h5", patients=(3,))
    (root / "data" / "patient003_frame01_slice_2.h5").unlink()
    with pytest.raises(DatasetError, match=r"patient003_frame01: slice\(s\) \[2\] missing; cannot stack the volume"):
        list(h5_cases(root))

    root = h5_copy(tmp_path / "h5b", patients=(2,))
    (root / "data" / "patient002_frame02.h5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="patient002_frame02.h5: cannot be read as HDF5"):
        list(h5_cases(root))

    root = h5_copy(tmp_path / "h5c", patients=(2,))
    image, label = heart(3)
    label[0, 0, 0] = 7
    write_h5(root / "data" / "patient002_frame01.h5", image, label)
    with pytest.raises(DatasetError, match=r"patient002_frame01.h5: label values \[0, 1, 2, 3, 7\] are not ACDC classes 0..3"):
        list(h5_cases(root))

    root = official(tmp_path / "acdc", patients=((3, "DCM"),))
    (root / "training" / "patient003" / "Info.cfg").write_text("Group: DCM\n")
    with pytest.raises(DatasetError, match=r"patient003/Info.cfg: no 'ED:' line"):
        list(official_cases(root))
    with pytest.raises(DatasetError, match="no patientNNN folders"):
        list(official_cases(tmp_path))


def test_the_script_converts_and_reports_a_bad_input_with_exit_1(tmp_path):
    script = REPO / "data_scripts" / "acdc_to_decathlon.py"
    done = run_script(str(script), "--source", "h5", "--input", str(h5_copy(tmp_path / "h5")), "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "groups from numbering" in done.stdout and "test_shift" in done.stdout
    done = run_script(str(script), "--source", "official", "--input", str(tmp_path / "h5"), "--output-dir", str(tmp_path / "out2"))
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith("error: ") and "no patientNNN folders" in done.stderr


def test_splits_from_groups():
    groups = {n: group_from_number(n) for n in range(1, 101)}
    splits = acdc_splits(groups)
    assert len(splits["training_common"]) == 70 and len(splits["test_shift"]) == 20
    assert not set(splits["training_shift"]) & set(splits["test_shift"])
    assert splits["test_shift_dcm"] == list(range(1, 21)) and not set(splits["training_shift_dcm"]) & set(range(1, 21))  # DCM: 001-020
    assert set(splits["training_shift_dcm"]) == set(splits["training_common"]) - set(range(1, 21))
    assert splits["test_no_dcm"] == [p for p in splits["test_common"] if p > 20]
    assert len(splits["test_no_rv"]) == 16 and not set(splits["test_no_rv"]) & set(splits["test_shift"])
    assert set(splits["training_shift"]) | set(splits["test_shift"]) >= set(splits["training_common"])
