"""DICOM SEG out: a label map on a series' grid round-trips through highdicom frame by frame (matched by slice position,
not file order); a label map off the grid, a slice without a frame of reference and dicom-seg for a NIfTI input are
refused by name; predict --format dicom-seg and the bundle's inference config write SEGs that match the NIfTI
prediction voxel for voxel and reference the source series; pydicom's CT_small.dcm works as a one-slice series."""

import pathlib
import shutil
import subprocess
import sys

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medseg_dropclass.data.dicom import dicom_series_files, dicom_series_volume
from medseg_dropclass.data.dicom_seg import label_frames, read_dicom_seg, write_dicom_seg
from medseg_dropclass.data.transforms import DatasetError
from medseg_dropclass.engine.bundles import inference_parser
from medseg_dropclass.apps.predict import predict

from tests.data.test_dicom import write_series
from tests.cli_runner import run_cli

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

NAMES = ["background", "organ", "lesion", "absent"]


def label_on_series(folder: pathlib.Path):
    volume, _ = dicom_series_volume(str(folder))
    labels = np.zeros(sitk.GetArrayFromImage(volume).shape, np.uint8)  # (z, y, x)
    labels[1:5, 5:20, 3:30] = 1
    labels[2, 10:12, 10:14] = 2  # class 3 never occurs; slices 0, 5, 6, 7 hold background only
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(volume)
    return image, labels


def test_a_label_map_round_trips_through_a_seg_matched_by_slice_position(tmp_path):
    write_series(tmp_path / "ct", size=(40, 36, 8))
    image, labels = label_on_series(tmp_path / "ct")
    uid, files = dicom_series_files(str(tmp_path / "ct"))
    shuffled = files[::-1]  # frames follow the sources given, wherever they lie in the file list
    path = write_dicom_seg(image, shuffled, str(tmp_path / "seg.dcm"), NAMES, "Test model", "0.2.0")
    np.testing.assert_array_equal(read_dicom_seg(path, shuffled), labels[::-1])
    np.testing.assert_array_equal(label_frames(image, files), labels)

    seg = hd.seg.segread(path)
    assert seg.get_segment_numbers() == [1, 2, 3]  # every foreground class, present or not
    assert [seg.get_segment_description(k).segment_label for k in (1, 2, 3)] == NAMES[1:]
    algorithm = seg.get_segment_description(1).algorithm_identification[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("Test model", "0.2.0")
    assert seg.SeriesDescription == "RESEARCH USE ONLY: Test model"
    long_name = "Cardiac cine MRI segmentation with DropClass (2D UNet on slices, ACDC)"
    path = write_dicom_seg(image, files, str(tmp_path / "long.dcm"), NAMES, long_name, "0.2.0")
    described = pydicom.dcmread(path).SeriesDescription  # cut at DICOM's 64 characters, the notice kept whole
    assert len(described) <= 64 and described.startswith("RESEARCH USE ONLY: Cardiac cine MRI")
    sources = [pydicom.dcmread(f) for f in files]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    assert {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence} == {str(s.SOPInstanceUID) for s in sources}
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID and seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert int(seg.NumberOfFrames) == 5  # 4 slices of segment 1, one of segment 2; empty frames left out
    position = {str(s.SOPInstanceUID): [float(v) for v in s.ImagePositionPatient] for s in sources}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient], position[source], atol=1e-4)


def test_a_label_map_off_the_series_grid_and_a_slice_without_frame_of_reference_are_named(tmp_path):
    write_series(tmp_path / "ct", size=(40, 36, 8))
    image, _ = label_on_series(tmp_path / "ct")
    _, files = dicom_series_files(str(tmp_path / "ct"))
    shifted = sitk.Image(image)
    shifted.SetOrigin(tuple(o + 0.4 for o in image.GetOrigin()))
    with pytest.raises(DatasetError, match=r"slice_000.dcm: position .* not on one of its 8 planes"):
        label_frames(shifted, files)
    with pytest.raises(DatasetError, match=r"slice_000.dcm: 36 x 40 pixels; the label map's planes are 36 x 39"):
        label_frames(image[:39, :, :], files)
    with pytest.raises(DatasetError, match="outside the 2 classes"):
        write_dicom_seg(image, files, str(tmp_path / "x.dcm"), NAMES[:2], "m", "1")
    bare = pydicom.dcmread(files[3])
    del bare.FrameOfReferenceUID
    bare.save_as(files[3])
    with pytest.raises(DatasetError, match=r"slice_003.dcm: no FrameOfReferenceUID"):
        write_dicom_seg(image, files, str(tmp_path / "y.dcm"), NAMES, "m", "1")
    assert not (tmp_path / "x.dcm").exists() and not (tmp_path / "y.dcm").exists()


def phantom_series(phantom3d, folder: pathlib.Path) -> None:
    """The first 3D phantom test case as a CT-like DICOM series (intensities x 1000 as int16; the model z-scores them)."""
    case = sorted((phantom3d / "imagesTs").iterdir())[0]
    volume = np.asarray(nib.load(str(case)).dataobj, dtype=np.float64).transpose(2, 1, 0)  # (x, y, z) -> (z, y, x)
    spacing = tuple(float(v) for v in nib.load(str(case)).header.get_zooms()[:3])
    write_series(folder, spacing=spacing, array=np.round(volume * 1000).astype(np.int16))


def test_predict_writes_a_seg_equal_to_its_nifti_prediction_and_the_config_agrees(tmp_path, phantom3d):
    phantom_series(phantom3d, tmp_path / "series_a")
    done = run_cli("predict", "--bundle", "phantom3d_dropclass", "--input", str(tmp_path / "series_a"), "--output-dir", str(tmp_path / "out"), "--format", "dicom-seg", cwd=REPO_ROOT)  # the shipped models/model.pt
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 of 1 case(s) written" in done.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["series_a_seg.dcm", "series_a_seg.nii.gz"]
    nifti = np.asarray(nib.load(str(tmp_path / "out" / "series_a_seg.nii.gz")).dataobj).transpose(2, 1, 0)  # (x, y, z) -> (z, rows, columns)
    _, files = dicom_series_files(str(tmp_path / "series_a"))
    from_seg = read_dicom_seg(str(tmp_path / "out" / "series_a_seg.dcm"), files)
    assert len(np.unique(nifti)) >= 3  # background and at least two organs: the frames carry several segments
    np.testing.assert_array_equal(from_seg, nifti)
    seg = pydicom.dcmread(tmp_path / "out" / "series_a_seg.dcm")
    metadata = inference_parser("phantom3d_dropclass")
    assert seg.SegmentSequence[0].SegmentAlgorithmName == metadata.get("_meta_#name")
    assert seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == metadata.get("_meta_#version")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == metadata.get_parsed_content("class_names")[1:]

    done = run_cli("run", "phantom3d_dropclass", "inference", "--input", str(tmp_path / "series_a"), "--output_dir", str(tmp_path / "config"), "--output_format", "dicom-seg", cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_array_equal(read_dicom_seg(str(tmp_path / "config" / "series_a_seg.dcm"), files), from_seg)
    (tmp_path / "config" / "series_a_seg.nii.gz").unlink()
    with pytest.raises(FileExistsError, match="series_a_seg.dcm"):  # an existing SEG is never replaced silently
        predict("phantom3d_dropclass", str(tmp_path / "series_a"), str(tmp_path / "config"), output_format="dicom-seg", progress=False)


def test_ct_small_is_a_one_slice_series_and_a_nifti_input_cannot_become_a_seg(tmp_path, phantom2d):
    from pydicom.data import get_testdata_file

    (tmp_path / "ct_small").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct_small" / "CT_small.dcm")
    result = predict("phantom2d_dropclass", str(tmp_path / "ct_small"), str(tmp_path / "out"), output_format="dicom-seg", progress=False)
    assert not result["failed"] and [pathlib.Path(p).name for p in result["written"]] == ["ct_small_seg.nii.gz", "ct_small_seg.dcm"]
    nifti = np.asarray(nib.load(result["written"][0]).dataobj)
    assert nifti.shape == (128, 128)
    from_seg = read_dicom_seg(result["written"][1], [str(tmp_path / "ct_small" / "CT_small.dcm")])
    np.testing.assert_array_equal(from_seg[0], nifti.T)  # NIfTI (x, y) against DICOM (rows, columns)
    source = pydicom.dcmread(tmp_path / "ct_small" / "CT_small.dcm")
    seg = pydicom.dcmread(result["written"][1])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID

    with pytest.raises(ValueError, match=r"imagesTs: --format dicom-seg needs a folder holding a DICOM series"):
        predict("phantom2d_dropclass", str(phantom2d / "imagesTs"), str(tmp_path / "n"), output_format="dicom-seg", progress=False)


def test_segments_carry_the_bundles_codes_and_colours_and_the_seg_says_what_the_model_is(tmp_path, phantom3d):
    phantom_series(phantom3d, tmp_path / "series_a")
    result = predict("phantom3d_dropclass", str(tmp_path / "series_a"), str(tmp_path / "out"), output_format="dicom-seg", progress=False)
    seg = pydicom.dcmread(result["written"][1])
    codes = inference_parser("phantom3d_dropclass").get("_meta_#segment_codes")
    for segment in seg.SegmentSequence:
        entry = codes[segment.SegmentLabel]
        category, kind = segment.SegmentedPropertyCategoryCodeSequence[0], segment.SegmentedPropertyTypeCodeSequence[0]
        assert [category.CodeValue, category.CodingSchemeDesignator, category.CodeMeaning] == entry["category"]
        assert [kind.CodeValue, kind.CodingSchemeDesignator, kind.CodeMeaning] == entry["type"]
        assert hd.color.CIELabColor.from_dicom_value(segment.RecommendedDisplayCIELabValue).to_rgb() == tuple(entry["color"])
    lesions = [s.SegmentLabel for s in seg.SegmentSequence if s.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"]
    assert lesions == ["lesion_a", "lesion_b", "lesion_c"]  # Morphologically Abnormal Structure
    assert seg.ContentDescription.startswith("DEMONSTRATION MODEL; ")
    assert seg.SeriesDescription.startswith("RESEARCH USE ONLY")
    with pytest.raises(ValueError, match=r"segment_codes\['organ'\]\['type'\]: \['1', 'SCT'\] is not \[code value"):
        hd_codes = {"organ": {"category": ["1", "SCT", "x"], "type": ["1", "SCT"]}}
        from medseg_dropclass.data.dicom_seg import segment_descriptions

        segment_descriptions(["background", "organ"], "m", "1", hd_codes)


def test_every_bundle_that_takes_dicom_codes_every_class():
    from medseg_dropclass.engine.bundles import available_bundles

    for bundle in available_bundles():
        meta = inference_parser(bundle)
        if str(meta.get("_meta_#network_data_format#inputs#image#modality")).upper() in ("CT", "MR", "SYNTHETIC"):
            names = meta.get_parsed_content("class_names")[1:]
            assert sorted(meta.get("_meta_#segment_codes", {})) == sorted(names), bundle


@pytest.mark.services
def test_dciodvfy_finds_no_error_and_no_warning_in_a_seg(tmp_path, phantom3d):
    from tests.programs import dciodvfy

    phantom_series(phantom3d, tmp_path / "series_a")
    result = predict("phantom3d_dropclass", str(tmp_path / "series_a"), str(tmp_path / "out"), output_format="dicom-seg", progress=False)
    assert dciodvfy(result["written"][1]) == []
