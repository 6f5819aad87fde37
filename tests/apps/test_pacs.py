"""The PACS round trip against a real Orthanc (Debian's orthanc + orthanc-dicomweb, started on the loopback address
with its own storage): a series is retrieved over DICOMweb, segmented, and its SEG stored back in the same study,
referencing the series and every instance, equal to the local prediction; never stored twice for one model version
unless forced; an unknown study, an unreachable server and a series the bundle refuses end with a named error and
store nothing; the watch mode segments a series once it has arrived."""

import pathlib

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from medseg_dropclass.apps.predict import predict
from medseg_dropclass.data.dicom import dicom_series_files
from medseg_dropclass.data.dicom_seg import read_dicom_seg
from tests.cli_runner import run_cli
from tests.data.test_dicom import write_series
from tests.programs import free_port, orthanc_server

pytestmark = pytest.mark.services
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BUNDLE = "phantom3d_dropclass"


@pytest.fixture
def pacs(tmp_path):
    with orthanc_server(tmp_path / "orthanc") as url:
        yield url


def upload_phantom_series(url: str, phantom3d: pathlib.Path, folder: pathlib.Path, uid: str, shift=None) -> list:
    """The first 3D phantom test case as a CT-like series (study ``uid + ".0"``, series ``uid``), stored in the PACS."""
    case = sorted((phantom3d / "imagesTs").iterdir())[0]
    volume = np.asarray(nib.load(str(case)).dataobj, dtype=np.float64).transpose(2, 1, 0)
    spacing = tuple(float(v) for v in nib.load(str(case)).header.get_zooms()[:3])
    write_series(folder, spacing=spacing, array=np.round(volume * 1000).astype(np.int16), uid=uid, shift=shift)
    datasets = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    DICOMwebClient(url).store_instances(datasets)
    return datasets


def seg_series(url: str, study: str) -> list:
    return [s for s in DICOMwebClient(url).search_for_series(study) if s["00080060"]["Value"][0] == "SEG"]


def pacs_cli(url: str, *arguments: str):
    return run_cli("pacs", "--url", url, "--bundle", BUNDLE, *arguments, cwd=REPO_ROOT)


def test_a_series_goes_through_the_bundle_and_its_seg_comes_back_once(pacs, phantom3d, tmp_path):
    uid = "1.2.826.0.1.3680043.2.1125.7"
    sources = upload_phantom_series(pacs, phantom3d, tmp_path / "series", uid)
    done = pacs_cli(pacs, "--study", uid + ".0")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "16 instance(s) segmented" in done.stdout and "stored" in done.stdout
    [stored] = seg_series(pacs, uid + ".0")
    client = DICOMwebClient(pacs)
    [seg] = client.retrieve_series(uid + ".0", stored["0020000E"]["Value"][0])
    assert seg.StudyInstanceUID == uid + ".0" and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    referenced = {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {d.SOPInstanceUID for d in sources}  # every instance of the series
    assert seg.ContentDescription.startswith("DEMONSTRATION MODEL")  # the synthetic bundle says so on its output
    seg.save_as(str(tmp_path / "from_pacs.dcm"), enforce_file_format=True)
    local = predict(BUNDLE, str(tmp_path / "series"), str(tmp_path / "local"), progress=False)
    nifti = np.asarray(nib.load(local["written"][0]).dataobj).transpose(2, 1, 0)
    _, files = dicom_series_files(str(tmp_path / "series"))
    assert len(np.unique(nifti)) >= 3
    np.testing.assert_array_equal(read_dicom_seg(str(tmp_path / "from_pacs.dcm"), files), nifti)

    again = pacs_cli(pacs, "--study", uid + ".0")
    assert again.returncode == 0 and "already has a SEG" in again.stdout
    assert len(seg_series(pacs, uid + ".0")) == 1  # not stored twice for the same model version
    forced = pacs_cli(pacs, "--study", uid + ".0", "--series", uid, "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert len(seg_series(pacs, uid + ".0")) == 2


def test_an_unknown_study_a_server_down_and_a_refused_series_store_nothing(pacs, phantom3d, tmp_path):
    done = pacs_cli(pacs, "--study", "1.2.3.999")
    assert done.returncode == 1 and f"error: {pacs}: no study 1.2.3.999" in done.stderr

    down = f"http://127.0.0.1:{free_port()}/dicom-web"
    done = pacs_cli(down, "--study", "1.2.3.999")
    assert done.returncode == 1 and f"error: {down}: cannot reach the DICOMweb server" in done.stderr

    uid = "1.2.826.0.1.3680043.2.1125.8"  # slice 5 displaced: not evenly spaced, refused by the series checks
    upload_phantom_series(pacs, phantom3d, tmp_path / "uneven", uid, shift=lambda z: 1.0 if z == 5 else 0.0)
    done = pacs_cli(pacs, "--study", uid + ".0")
    assert done.returncode == 1
    assert f"error: series {uid} of study {uid}.0 was not segmented (nothing stored)" in done.stderr
    assert "evenly" in done.stderr
    assert seg_series(pacs, uid + ".0") == []


def test_watch_segments_a_series_once_it_has_arrived(pacs, phantom3d, tmp_path):
    uid = "1.2.826.0.1.3680043.2.1125.9"
    upload_phantom_series(pacs, phantom3d, tmp_path / "series", uid)
    done = pacs_cli(pacs, "--watch", "--poll-seconds", "0.1", "--max-polls", "4")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("SEG 1.2") == 1  # seen complete at the 2nd poll, segmented once, left alone after
    assert "watched 1 series: 1 SEG(s) stored" in done.stdout
    assert len(seg_series(pacs, uid + ".0")) == 1
