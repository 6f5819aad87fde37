"""DICOM series in: a CT-like volume written as a DICOM series (SimpleITK/GDCM) reads back with its geometry; bad
folders (no DICOM, two series, a missing slice, mixed orientation, another modality) give errors naming them; predict
segments a series folder into a label volume of the series' size and geometry."""

import pathlib

import numpy as np
import pytest
import SimpleITK as sitk

from medseg_dropclass.data.dicom import dicom_series_files, dicom_series_volume, keep_locale
from medseg_dropclass.data.transforms import DatasetError


def write_series(folder: pathlib.Path, size=(40, 36, 8), spacing=(0.8, 0.8, 2.5), uid="1.2.826.0.1.3680043.2.1125.1",
                 modality="CT", seed=0, orientation=None, array=None, shift=None) -> sitk.Image:
    """A CT-like series, one file a slice (noise, or ``array``: (z, y, x) int16, its shape then gives ``size``);
    ``shift(z)``: mm added to slice z's position along the normal (uneven spacing)."""
    if array is None:
        array = (np.random.default_rng(seed).normal(0, 30, size[::-1]) + 40).astype(np.int16)  # (z, y, x) HU-like
    size = array.shape[::-1]
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((-12.0, 30.5, 100.0))
    folder.mkdir(parents=True, exist_ok=True)
    with keep_locale():  # GDCM sets the C locale for the whole process
        _write_slices(image, folder, size, spacing, uid, modality, orientation, shift)
    return image


def _write_slices(image, folder, size, spacing, uid, modality, orientation, shift=None):
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    for z in range(size[2]):
        piece = image[:, :, z]
        tags = {
            "0008|0060": modality, "0020|000d": uid + ".0", "0020|000e": uid, "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{uid}.{z + 1}", "0020|0013": str(z + 1),
            "0020|0032": "\\".join(map(str, np.add(image.TransformIndexToPhysicalPoint((0, 0, z)), (0, 0, shift(z) if shift else 0)))),
            "0020|0037": orientation(z) if orientation else "\\".join(map(str, direction[0:7:3] + direction[1:8:3])),
            "0028|0030": f"{spacing[1]}\\{spacing[0]}", "0018|0050": str(spacing[2]),
            "0020|0052": uid + ".9", "0010|0010": "Phantom^Test", "0010|0020": "TEST001", "0008|0020": "20261201",
            "0020|0011": "3", "0020|0010": "1",
        }
        for tag, value in tags.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{z:03d}.dcm"))
        writer.Execute(piece)


def test_reading_a_series_leaves_the_process_locale_alone(tmp_path):
    import locale

    before = locale.setlocale(locale.LC_ALL)
    write_series(tmp_path / "ct")
    dicom_series_volume(str(tmp_path / "ct"))
    assert locale.setlocale(locale.LC_ALL) == before  # GDCM alone switches to "C": subprocess text then decodes as ASCII


def test_a_series_reads_back_with_its_geometry(tmp_path):
    written = write_series(tmp_path / "ct")
    volume, uid = dicom_series_volume(str(tmp_path / "ct"), modality="CT")
    assert uid == "1.2.826.0.1.3680043.2.1125.1" and volume.GetSize() == (40, 36, 8)
    np.testing.assert_allclose(volume.GetSpacing(), (0.8, 0.8, 2.5), atol=1e-4)
    np.testing.assert_allclose(volume.GetOrigin(), written.GetOrigin(), atol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume), sitk.GetArrayFromImage(written))


def test_bad_series_folders_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="empty: no DICOM series"):
        dicom_series_files(str(tmp_path / "empty"))

    write_series(tmp_path / "two", uid="1.2.3.4")
    write_series(tmp_path / "two_b", uid="1.2.3.5", seed=1)
    for file in (tmp_path / "two_b").iterdir():
        file.rename(tmp_path / "two" / f"b_{file.name}")
    with pytest.raises(DatasetError, match=r"two: 2 DICOM series \(1.2.3.4, 1.2.3.5\); choose one with --series-uid"):
        dicom_series_files(str(tmp_path / "two"))
    assert dicom_series_files(str(tmp_path / "two"), "1.2.3.5")[0] == "1.2.3.5"
    with pytest.raises(DatasetError, match="no series 9.9"):
        dicom_series_files(str(tmp_path / "two"), "9.9")

    write_series(tmp_path / "gap")
    (tmp_path / "gap" / "slice_004.dcm").unlink()
    with pytest.raises(DatasetError, match=r"gap: slice positions are not evenly spaced .*5.000 mm between slice_003.dcm and slice_005.dcm, typically 2.500 mm"):
        dicom_series_volume(str(tmp_path / "gap"))

    write_series(tmp_path / "tilted", orientation=lambda z: "1\\0\\0\\0\\0.8\\0.6" if z == 5 else "1\\0\\0\\0\\1\\0")
    with pytest.raises(DatasetError, match=r"slice_005.dcm: orientation .* differs from"):
        dicom_series_volume(str(tmp_path / "tilted"))

    write_series(tmp_path / "mr", modality="MR")
    with pytest.raises(DatasetError, match="slice_000.dcm: modality MR; the model was trained on CT"):
        dicom_series_volume(str(tmp_path / "mr"), modality="CT")


@pytest.mark.parametrize("name, shift, message", [
    ("one_long_step", lambda z: 1.0 if z >= 5 else 0.0, r"1 of 7 step\(s\) differ, the largest 3.500 mm between slice_004.dcm and slice_005.dcm, typically 2.500 mm"),
    ("jitter", lambda z: 0.3 * (-1) ** z, r"3 of 7 step\(s\) differ, the largest 3.100 mm"),  # steps 1.9, 3.1, 1.9, ...
    ("small_jitter", lambda z: 0.03 * (-1) ** z, r"3 of 7 step\(s\) differ, the largest 2.560 mm"),  # 2.4%: still refused
])
def test_unevenly_spaced_slices_are_refused_naming_them(tmp_path, name, shift, message):
    """One step of 3.5 mm among 2.5 mm ones, or jitter, was read with ITK's averaged spacing (2.567 mm): later slices of
    the label map would lie in the wrong place."""
    write_series(tmp_path / name, shift=shift)
    with pytest.raises(DatasetError, match=rf"{name}: slice positions are not evenly spaced \(within 1% of the step\): {message}"):
        dicom_series_volume(str(tmp_path / name))


def test_spacing_within_tolerance_is_the_measured_step(tmp_path):
    """Rounding in the position strings (0.005 mm, 0.2% of the step) is accepted; the spacing is the measured step."""
    write_series(tmp_path / "rounded", shift=lambda z: 0.005 * (z % 2))
    volume, _ = dicom_series_volume(str(tmp_path / "rounded"))
    assert volume.GetSpacing()[2] == pytest.approx(2.5 + 0.005 / 7, abs=1e-6)


def test_predict_segments_a_series_folder_with_its_geometry(tmp_path):
    import nibabel as nib
    import torch
    from monai.bundle import ConfigParser

    from medseg_dropclass.engine.bundles import bundles_dir, config_files
    from medseg_dropclass.apps.predict import predict

    written = write_series(tmp_path / "series_a", size=(48, 40, 16), spacing=(1.0, 1.0, 2.5))
    root = bundles_dir() / "phantom3d_dropclass"
    parser = ConfigParser()
    parser.read_config(config_files(root, "inference"))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "m.pt")
    result = predict("phantom3d_dropclass", str(tmp_path / "series_a"), str(tmp_path / "out"), ckpt=str(tmp_path / "m.pt"), progress=False)
    assert not result["failed"] and result["written"] == [str(tmp_path / "out" / "series_a_seg.nii.gz")]
    labels = nib.load(result["written"][0])
    assert labels.shape == (48, 40, 16)
    # the label volume sits where the series does: its first voxel at the series origin (NIfTI is RAS, DICOM LPS)
    origin = labels.affine[:3, 3] * np.array([-1, -1, 1])
    np.testing.assert_allclose(origin, written.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(labels.affine[:3, :3], axis=0), (1.0, 1.0, 2.5), atol=1e-4)
