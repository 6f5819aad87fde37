"""DICOM Segmentation out (highdicom): a label map on a DICOM series' grid becomes one SEG object over that series.

A viewer shows a SEG over its source images only if every frame names the slice it belongs to and sits where that
slice does. :func:`label_frames` therefore matches each source slice to a plane of the label map by its
``ImagePositionPatient`` (never by file order) and refuses a label map that is not on the series' grid;
:func:`write_dicom_seg` then writes one binary segment per foreground class, named by the bundle's class names,
with the algorithm's name and version from the bundle metadata. highdicom builds the object (references to the
source series and SOP instances, per-frame positions, the segment sequence); what is kept here is the mapping.
"""

import pathlib
from typing import Mapping, Optional, Sequence

import numpy as np

from medseg_dropclass.data.domain import brief_notices
from medseg_dropclass.data.transforms import DatasetError

__all__ = ["label_frames", "GENERIC_CODES", "segment_descriptions", "series_description_text", "RESEARCH_NOTICE", "write_dicom_seg", "read_dicom_seg"]


def _read_sources(source_files: Sequence[str]):
    import pydicom

    datasets = []
    for file in source_files:
        try:
            datasets.append(pydicom.dcmread(file))
        except Exception as error:  # noqa: BLE001  (pydicom raises several types for a broken file)
            raise DatasetError(f"{file}: cannot be read as DICOM ({error})") from error
    return datasets


def label_frames(label, source_files: Sequence[str], datasets=None, tolerance: float = 1e-3) -> np.ndarray:
    """The label map's plane under each source slice: ``(len(source_files), Rows, Columns)`` uint8, in source order.

    ``label`` is a SimpleITK image on the series' grid (3D; or 2D for a one-slice series segmented by a 2D model).

    Raises:
        DatasetError: a source slice lies off the label map's grid (another origin, orientation or spacing),
            or its ``Rows`` x ``Columns`` differ from the label map's plane; the message names the slice file.
    """
    import SimpleITK as sitk

    datasets = datasets if datasets is not None else _read_sources(source_files)
    array = sitk.GetArrayFromImage(label)  # (z, y, x) or (y, x): y runs down the columns, x along a row
    if array.ndim == 2:
        if len(datasets) != 1:
            raise DatasetError(f"{source_files[0]}: a 2D label map for a series of {len(datasets)} slices")
        array = array[None]
        planes = [0]
    else:
        direction = np.asarray(label.GetDirection(), dtype=np.float64).reshape(3, 3)
        planes = []
        for file, ds in zip(source_files, datasets):
            orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
            if not (np.allclose(direction[:, 0], orientation[:3], atol=tolerance) and np.allclose(direction[:, 1], orientation[3:], atol=tolerance)):
                raise DatasetError(f"{file}: orientation {orientation.round(4).tolist()} differs from the label map's "
                                   f"{direction[:, :2].T.round(4).tolist()} (the label map is not on this series' grid)")
            index = np.asarray(label.TransformPhysicalPointToContinuousIndex([float(v) for v in ds.ImagePositionPatient]))
            plane = int(round(index[2]))
            if np.abs(index[:2]).max() > tolerance or abs(index[2] - plane) > tolerance or not 0 <= plane < array.shape[0]:
                raise DatasetError(f"{file}: position {[float(v) for v in ds.ImagePositionPatient]} is at voxel index "
                                   f"{index.round(3).tolist()} of the label map, not on one of its {array.shape[0]} planes")
            planes.append(plane)
    for file, ds in zip(source_files, datasets):
        if (int(ds.Rows), int(ds.Columns)) != array.shape[1:]:
            raise DatasetError(f"{file}: {ds.Rows} x {ds.Columns} pixels; the label map's planes are {array.shape[1]} x {array.shape[2]}")
    return np.ascontiguousarray(array[planes]).astype(np.uint8)


GENERIC_CODES = {"category": ["85756007", "SCT", "Tissue"], "type": ["91723000", "SCT", "Anatomical Structure"]}


def segment_descriptions(
    class_names: Sequence[str],
    algorithm_name: str,
    algorithm_version: str,
    segment_codes: Optional[Mapping[str, Mapping]] = None,
) -> list:
    """One highdicom ``SegmentDescription`` per foreground class (segment ``k`` = class ``k``; 0 is background).

    ``segment_codes`` is the bundle metadata's ``segment_codes``: per class name ``{"category": [value, scheme,
    meaning], "type": [...], "color": [r, g, b]}`` (e.g. SNOMED CT "Right ventricle" in category "Anatomical
    Structure", "Lesion" in "Morphologically Abnormal Structure"); the colour becomes the segment's recommended
    display colour. A class it does not name is coded Tissue / Anatomical Structure, with no colour.

    Raises:
        ValueError: an entry that is not three strings per code or three 0-255 integers per colour (names the class).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name=algorithm_name, version=algorithm_version, family=codes.cid7162.ArtificialIntelligence)
    descriptions = []
    for k, name in enumerate(class_names):
        if k == 0:
            continue
        entry = dict((segment_codes or {}).get(str(name)) or GENERIC_CODES)
        concepts = {}
        for key in ("category", "type"):
            code = entry.get(key)
            if not (isinstance(code, (list, tuple)) and len(code) == 3 and all(isinstance(v, str) and v for v in code)):
                raise ValueError(f"segment_codes[{name!r}][{key!r}]: {code!r} is not [code value, scheme, meaning]")
            concepts[key] = hd.sr.CodedConcept(*code)
        color = entry.get("color")
        if color is not None and not (
            isinstance(color, (list, tuple)) and len(color) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in color)
        ):
            raise ValueError(f"segment_codes[{name!r}]['color']: {color!r} is not three integers 0-255")
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=k, segment_label=str(name)[:64], segmented_property_category=concepts["category"],
                segmented_property_type=concepts["type"], algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                display_color=hd.color.CIELabColor.from_rgb(*color) if color is not None else None,
            )
        )
    return descriptions


def write_dicom_seg(
    label,
    source_files: Sequence[str],
    output: str,
    class_names: Sequence[str],
    algorithm_name: str,
    algorithm_version: str,
    series_description: Optional[str] = None,
    segment_codes: Optional[Mapping[str, Mapping]] = None,
    notices: Sequence[str] = (),
) -> str:
    """Write the label map ``label`` (SimpleITK image on the series' grid) as a binary DICOM SEG over ``source_files``.

    Returns the written path. Frames without any foreground are left out (highdicom's default); every class but
    background is described, present or not, so segment numbers are the bundle's class indices, coded by
    ``segment_codes`` (:func:`segment_descriptions`). ``notices`` (e.g. an out-of-domain input, a demonstration
    model) go first into the ContentDescription, in brief (:func:`~medseg_dropclass.data.domain.brief_notices`: the
    field holds 64 characters).

    Raises:
        DatasetError: a source file that is not DICOM, a label map off the series' grid, or label values outside the classes.
    """
    import highdicom as hd

    from medseg_dropclass import __version__

    datasets = _read_sources(source_files)
    for file, ds in zip(source_files, datasets):
        if not getattr(ds, "FrameOfReferenceUID", None):
            raise DatasetError(f"{file}: no FrameOfReferenceUID (0020,0052); a SEG cannot be placed over a slice without one")
    frames = label_frames(label, source_files, datasets)
    if frames.max(initial=0) >= len(class_names):
        raise DatasetError(f"{output}: label value {int(frames.max())} outside the {len(class_names)} classes {list(class_names)}")
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(class_names, algorithm_name, algorithm_version, segment_codes),
        series_instance_uid=hd.UID(),
        series_number=int(getattr(datasets[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medseg_dropclass",
        manufacturer_model_name=algorithm_name[:64],
        software_versions=f"medseg_dropclass {__version__}",
        device_serial_number="none",
        content_label="SEGMENTATION",
        content_description="; ".join([*brief_notices(notices), series_description or f"{algorithm_name} {algorithm_version}"])[:64],
        series_description=series_description_text(series_description or algorithm_name),
    )
    path = pathlib.Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(path))
    return str(path)


RESEARCH_NOTICE = "RESEARCH USE ONLY"


def series_description_text(name: str) -> str:
    """The SEG's SeriesDescription (a viewer's series list shows it; DICOM allows 64 characters): the research-use
    notice first, so that cutting a long name never cuts the notice."""
    return f"{RESEARCH_NOTICE}: {name}"[:64]


def read_dicom_seg(path: str, source_files: Sequence[str]) -> np.ndarray:
    """A SEG's segments as one label map under each source slice, ``(len(source_files), Rows, Columns)`` uint8."""
    import highdicom as hd

    seg = hd.seg.segread(path)
    uids = [str(ds.SOPInstanceUID) for ds in _read_sources(source_files)]
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    present = [uid for uid in uids if uid in referenced]
    frames = np.zeros((len(uids),) + (int(seg.Rows), int(seg.Columns)), dtype=np.uint8)
    if present:
        pixels = seg.get_pixels_by_source_instance(present, combine_segments=True, ignore_spatial_locations=False)
        for uid, plane in zip(present, pixels):
            frames[uids.index(uid)] = plane
    return frames
