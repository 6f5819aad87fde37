"""DICOM series in: pick a series in a folder, check its geometry, read it as one volume (SimpleITK / GDCM).

What a PACS export hands over is a folder of slices, sometimes of several series, sometimes with a slice
missing. :func:`dicom_series_volume` refuses what would silently give a wrong volume, naming the folder or
the file: no DICOM at all, several series without a chosen UID, slices of different orientation or pixel
spacing, slice positions that are not evenly spaced (within 1% of the step: a missing slice, a variable
step or jitter), a modality the model was not trained on.
"""

import contextlib
import locale
import pathlib
from typing import Iterator, List, Optional, Tuple

import numpy as np

from medseg_dropclass.data.transforms import DatasetError

__all__ = ["is_dicom_folder", "dicom_series_files", "dicom_series_volume", "read_dicom_series", "keep_locale"]

TAGS = {"position": "0020|0032", "orientation": "0020|0037", "spacing": "0028|0030", "modality": "0008|0060"}


@contextlib.contextmanager
def keep_locale() -> Iterator[None]:
    """Restore the process's locale after GDCM, which sets the C locale for good when it reads or writes DICOM
    (text decoding in the rest of the process then falls back to ASCII)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def is_dicom_folder(folder: str) -> bool:
    """Whether GDCM finds a DICOM series in ``folder``."""
    import SimpleITK as sitk

    path = pathlib.Path(folder)
    with keep_locale():
        return path.is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))


def dicom_series_files(folder: str, series_uid: Optional[str] = None) -> Tuple[str, List[str]]:
    """``(series UID, slice files in order)`` of the series in ``folder`` (the only one, or ``series_uid``)."""
    import SimpleITK as sitk

    with keep_locale():
        uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise DatasetError(f"{folder}: no DICOM series (no readable DICOM file in the folder)")
    if series_uid is None:
        if len(uids) > 1:
            raise DatasetError(f"{folder}: {len(uids)} DICOM series ({', '.join(uids)}); choose one with --series-uid")
        series_uid = uids[0]
    elif series_uid not in uids:
        raise DatasetError(f"{folder}: no series {series_uid}; series present: {', '.join(uids)}")
    with keep_locale():
        return series_uid, list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid))


def _numbers(value: str) -> np.ndarray:
    return np.asarray([float(v) for v in value.replace(" ", "").split("\\") if v], dtype=np.float64)


def dicom_series_volume(folder: str, series_uid: Optional[str] = None, modality: Optional[str] = None):
    """The chosen series of ``folder`` as one SimpleITK image (origin, spacing and direction from the slices).

    Raises:
        DatasetError: no series, several without ``series_uid``, slices of another orientation or pixel spacing,
            a gap in the slice positions (a missing slice), or a ``Modality`` other than ``modality``.
    """
    volume, uid, _ = read_dicom_series(folder, series_uid, modality)
    return volume, uid


def read_dicom_series(folder: str, series_uid: Optional[str] = None, modality: Optional[str] = None):
    """:func:`dicom_series_volume` that also returns the slice files in order: ``(image, series UID, files)``."""
    with keep_locale():
        return _read_series(folder, series_uid, modality)


def _read_series(folder: str, series_uid: Optional[str], modality: Optional[str]):
    import SimpleITK as sitk

    uid, files = dicom_series_files(folder, series_uid)
    headers = []
    for file in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(file)
        try:
            reader.ReadImageInformation()
        except RuntimeError as error:
            raise DatasetError(f"{file}: cannot be read as DICOM ({error})") from error
        headers.append({key: reader.GetMetaData(tag) if reader.HasMetaDataKey(tag) else "" for key, tag in TAGS.items()})
    first = headers[0]
    if modality is not None and first["modality"].strip() and first["modality"].strip().upper() != modality.upper():
        raise DatasetError(f"{files[0]}: modality {first['modality'].strip()}; the model was trained on {modality}")
    for file, header in zip(files[1:], headers[1:]):
        for key in ("orientation", "spacing"):
            if header[key] and first[key] and not np.allclose(_numbers(header[key]), _numbers(first[key]), atol=1e-4):
                raise DatasetError(f"{file}: {key} {header[key]} differs from {files[0]}'s {first[key]} (one series, one geometry)")
    spacing = None
    if len(files) > 1 and all(h["position"] and h["orientation"] for h in headers):
        spacing = _slice_step(folder, files, headers)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    volume = reader.Execute()
    if spacing is not None and volume.GetDimension() == 3:
        volume.SetSpacing((*volume.GetSpacing()[:2], spacing))  # the measured step, not ITK's estimate
    return volume, uid, files


SLICE_STEP_TOLERANCE = 0.01  # of the step: what dcm2niix and highdicom accept as evenly spaced


def _slice_step(folder: str, files: List[str], headers: List[dict]) -> float:
    """The slice step (mm) of a series whose slice positions along the normal are evenly spaced within
    :data:`SLICE_STEP_TOLERANCE` of the step; else :class:`DatasetError` naming the slices that break it."""
    orientation = _numbers(headers[0]["orientation"])
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.asarray([_numbers(h["position"]) @ normal for h in headers])
    order = np.argsort(positions, kind="stable")
    steps = np.diff(positions[order])
    typical = float(np.median(steps))
    names = [pathlib.Path(files[i]).name for i in order]
    if typical <= 0 or np.any(steps <= 0):
        first = int(np.argmin(steps)) if len(steps) else 0
        raise DatasetError(
            f"{folder}: two slices at the same position ({names[first]} and {names[first + 1]}): a duplicate slice, or "
            "several series in one folder"
        )
    deviation = np.abs(steps - typical)
    bad = np.flatnonzero(deviation > SLICE_STEP_TOLERANCE * typical)
    if len(bad):
        worst = int(bad[np.argmax(deviation[bad])])
        raise DatasetError(
            f"{folder}: slice positions are not evenly spaced (within {100 * SLICE_STEP_TOLERANCE:g}% of the step): {len(bad)} of "
            f"{len(steps)} step(s) differ, the largest {steps[worst]:.3f} mm between {names[worst]} and {names[worst + 1]}, "
            f"typically {typical:.3f} mm (a missing slice, a variable spacing or jitter); one spacing would place slices "
            "wrongly, so the series is refused: resample it onto a regular grid first"
        )
    return float(np.mean(steps))
