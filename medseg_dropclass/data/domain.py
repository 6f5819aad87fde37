"""What a model was trained on, and the notices an input outside it gets.

A bundle's ``metadata.json`` may hold ``training_domain``, computed from its training images by
:func:`training_domain` (``python -m medseg_dropclass convert training-domain``): the modality, the voxel spacing
range per axis, the orientations seen and, where intensities are absolute (CT), the intensity range. Before a case
is segmented, :func:`domain_notices` compares it with that: a spacing, orientation or intensity range outside what
the model saw gives a notice (written into the log, the review page and the DICOM SEG), not a refusal; what the
bundle cannot take at all (another modality, another channel count or dimension) is refused elsewhere, by the
input checks. A bundle trained on synthetic phantoms says on every output that it is a demonstration.
"""

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "DEMONSTRATION_NOTICE",
    "SPACING_TOLERANCE",
    "describe_image",
    "acquisition_plane",
    "training_domain",
    "domain_notices",
    "brief_notices",
]

DEMONSTRATION_NOTICE = "DEMONSTRATION: trained on synthetic phantoms only"
SPACING_TOLERANCE = 1.25  # a spacing within [min / 1.25, max * 1.25] of the training range gives no notice
INTENSITY_PERCENTILES = (0.5, 99.5)


def describe_image(path: str, intensity: bool = True) -> Dict[str, object]:
    """An image's spacing (mm, per axis, ITK order x, y, z), orientation code (3D, e.g. ``"RAS"``; ``""`` for 2D)
    and, with ``intensity``, its 0.5th and 99.5th intensity percentiles (without: only the header is read)."""
    import SimpleITK as sitk

    from medseg_dropclass.data.dicom import keep_locale

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with keep_locale():
        reader.ReadImageInformation()
        image = reader.Execute() if intensity else None
    orientation = ""
    if reader.GetDimension() == 3:
        orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(reader.GetDirection())
    described: Dict[str, object] = {"spacing_mm": [float(v) for v in reader.GetSpacing()], "orientation": orientation}
    if image is not None:
        values = sitk.GetArrayViewFromImage(image)
        low, high = np.percentile(values, INTENSITY_PERCENTILES) if values.size else (0.0, 0.0)
        described["intensity"] = [float(low), float(high)]
    return described


def acquisition_plane(orientation: str) -> str:
    """The plane of an image's slices from its orientation code's third letter (``"LPS"`` -> ``"axial"``): the
    bundles reorient every image, so only the plane the slices were acquired in (and their spacing) is a difference
    the model may not have seen."""
    return {"S": "axial", "I": "axial", "A": "coronal", "P": "coronal", "L": "sagittal", "R": "sagittal"}.get(
        orientation[2:3].upper(), "oblique"
    )


def training_domain(image_files: Sequence[str], modality: str, absolute_intensity: bool = False) -> Dict[str, object]:
    """The domain of a model trained on ``image_files``: ``{"modality", "spacing_mm": [[min, max] per axis],
    "orientations": [codes], "intensity": [lowest 0.5th, highest 99.5th percentile]}`` (intensity only with
    ``absolute_intensity``, e.g. CT in HU; an MR magnitude has no absolute scale)."""
    if not image_files:
        raise ValueError("training_domain: no training images")
    described = [describe_image(f) for f in image_files]
    spacing = np.asarray([d["spacing_mm"] for d in described], dtype=np.float64)
    domain: Dict[str, object] = {
        "modality": str(modality),
        "spacing_mm": [[round(float(lo), 4), round(float(hi), 4)] for lo, hi in zip(spacing.min(0), spacing.max(0))],
        "orientations": sorted({str(d["orientation"]) for d in described if d["orientation"]}),
    }
    if absolute_intensity:
        domain["intensity"] = [
            round(min(d["intensity"][0] for d in described), 2),
            round(max(d["intensity"][1] for d in described), 2),
        ]
    return domain


def brief_notices(notices: Sequence[str]) -> List[str]:
    """Notices cut to their headline for a 64-character DICOM field: ``"DEMONSTRATION MODEL"`` and one
    ``"OUT OF DOMAIN: spacing, axial slices"`` for all out-of-domain notices (the full text is in the log and on
    the review page)."""
    brief = ["DEMONSTRATION MODEL"] if DEMONSTRATION_NOTICE in notices else []
    kinds = [n.split(": ", 1)[1].split(" ")[0] for n in notices if n.startswith("OUT OF DOMAIN: ")]
    kinds = [f"{k} slices" if k in ("axial", "coronal", "sagittal", "oblique") else k for k in kinds]
    return brief + ([f"OUT OF DOMAIN: {', '.join(kinds)}"] if kinds else [])


def domain_notices(
    case: Mapping[str, object], domain: Optional[Mapping[str, object]], modality: Optional[str] = None
) -> List[str]:
    """Notices for one case (:func:`describe_image`) against a bundle's ``training_domain`` (``None``: nothing
    known, no notice) and its input ``modality`` (``"synthetic"``: the demonstration notice)."""
    notices = []
    if str(modality or (domain or {}).get("modality", "")).lower() == "synthetic":
        notices.append(DEMONSTRATION_NOTICE)
    if not domain:
        return notices
    spacing, ranges = list(case.get("spacing_mm", [])), list(domain.get("spacing_mm", []))
    if ranges and len(spacing) == len(ranges):
        outside = [
            f"{'xyz'[axis]} {value:.2f} mm (trained on {lo:.2f}-{hi:.2f})"
            for axis, (value, (lo, hi)) in enumerate(zip(spacing, ranges))
            if not lo / SPACING_TOLERANCE <= value <= hi * SPACING_TOLERANCE
        ]
        if outside:
            notices.append("OUT OF DOMAIN: spacing " + ", ".join(outside))
    planes = sorted({acquisition_plane(code) for code in domain.get("orientations", [])})
    if planes and case.get("orientation") and acquisition_plane(str(case["orientation"])) not in planes:
        notices.append(
            f"OUT OF DOMAIN: {acquisition_plane(str(case['orientation']))} slices (trained on {', '.join(planes)})"
        )
    if domain.get("intensity") and case.get("intensity"):
        lo, hi = (float(v) for v in domain["intensity"])  # type: ignore[union-attr]
        margin = 0.25 * (hi - lo)
        low, high = (float(v) for v in case["intensity"])  # type: ignore[union-attr]
        if low < lo - margin or high > hi + margin:
            notices.append(f"OUT OF DOMAIN: intensities {low:.0f} to {high:.0f} (trained on {lo:.0f} to {hi:.0f})")
    return notices
