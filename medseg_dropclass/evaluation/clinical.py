"""The measures a cardiologist reads off a cine-MR segmentation, as the ACDC challenge reports them: ventricular
end-diastolic and end-systolic volumes (mL), the ejection fraction (%), their agreement with the reference
(Bland-Altman bias and 95% limits), and the 95th-percentile Hausdorff distance per structure (MONAI's metric, in mm).
Kept here beside Dice/IoU because a segmentation that scores well can still misstate a volume that matters."""

from typing import Dict, Optional, Sequence

import numpy as np
import torch

__all__ = ["structure_volume_ml", "ejection_fraction", "bland_altman", "hausdorff95", "cardiac_indices"]


def structure_volume_ml(label: np.ndarray, class_index: int, spacing_mm: Sequence[float]) -> float:
    """The volume of ``class_index`` in a label map ``(*spatial)`` with voxel ``spacing_mm``, in mL (1 mL = 1000 mm^3)."""
    label = np.asarray(label)
    if len(spacing_mm) != label.ndim:
        raise ValueError(f"spacing {tuple(spacing_mm)} has {len(spacing_mm)} values for a {label.ndim}D label map")
    return float(np.count_nonzero(label == class_index) * float(np.prod(spacing_mm)) / 1000.0)


def ejection_fraction(edv_ml: float, esv_ml: float) -> float:
    """``100 * (EDV - ESV) / EDV`` in %; NaN for an empty end-diastolic volume (nothing to eject from)."""
    return float("nan") if edv_ml <= 0 else 100.0 * (edv_ml - esv_ml) / edv_ml


def bland_altman(predicted: Sequence[float], reference: Sequence[float]) -> Dict[str, float]:
    """Agreement of paired measurements: ``bias`` (mean of predicted - reference), ``sd`` of the differences and the
    95% limits of agreement ``bias -/+ 1.96 sd`` (``lower``, ``upper``), over the pairs where both are finite;
    ``n`` pairs. Fewer than 2 pairs: NaN spread."""
    difference = np.asarray(predicted, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    difference = difference[np.isfinite(difference)]
    bias = float(difference.mean()) if difference.size else float("nan")
    sd = float(difference.std(ddof=1)) if difference.size > 1 else float("nan")
    return {"n": int(difference.size), "bias": bias, "sd": sd, "lower": bias - 1.96 * sd, "upper": bias + 1.96 * sd}


def hausdorff95(
    prediction: np.ndarray, reference: np.ndarray, class_index: int, spacing_mm: Optional[Sequence[float]] = None
) -> float:
    """MONAI's 95th-percentile symmetric Hausdorff distance of one class between two label maps ``(*spatial)``, in mm
    with ``spacing_mm`` (voxels without); NaN when the class is absent from either map (no surface to measure)."""
    from monai.metrics import compute_hausdorff_distance

    predicted = torch.as_tensor(np.asarray(prediction) == class_index)
    expected = torch.as_tensor(np.asarray(reference) == class_index)
    if not predicted.any() or not expected.any():
        return float("nan")
    pair = [torch.stack([~m, m])[None].float() for m in (predicted, expected)]  # (1, 2, *spatial) one-hot
    spacing = None if spacing_mm is None else [float(s) for s in spacing_mm]
    return float(compute_hausdorff_distance(pair[0], pair[1], percentile=95, spacing=spacing)[0, 0])


def cardiac_indices(
    metric_per_case: Sequence[dict],
    structures: Sequence[str] = ("left_ventricle", "right_ventricle"),
    pattern: str = r"(patient\d+)_(ED|ES)\.",
) -> Dict[str, Dict[str, object]]:
    """End-diastolic volume and ejection fraction per patient and structure, predicted against reference, from an
    evaluation summary's per-case metrics (voxel counts ``n_pred``/``n_ref`` and ``voxel_ml``; a case's patient and
    phase from its reference file name by ``pattern``), with their Bland-Altman agreement.

    Returns ``{structure: {"patients": [...], "edv_ml": (predicted, reference), "ef_percent": (predicted, reference),
    "edv_agreement": bland_altman, "ef_agreement": bland_altman}}``; patients without both phases are left out.
    """
    import re

    phases: Dict[str, Dict[str, dict]] = {}
    for entry in metric_per_case:
        found = re.search(pattern, str(entry["reference"]).split("/")[-1])
        if found:
            phases.setdefault(found.group(1), {})[found.group(2)] = entry
    patients = sorted(p for p, both in phases.items() if {"ED", "ES"} <= set(both))
    result: Dict[str, Dict[str, object]] = {}
    for structure in structures:
        volumes = {}
        for side in ("n_pred", "n_ref"):
            ed = [
                phases[p]["ED"]["metrics"][structure][side] * phases[p]["ED"].get("voxel_ml", 0.001) for p in patients
            ]
            es = [
                phases[p]["ES"]["metrics"][structure][side] * phases[p]["ES"].get("voxel_ml", 0.001) for p in patients
            ]
            volumes[side] = (ed, [ejection_fraction(d, s) for d, s in zip(ed, es)])
        result[structure] = {
            "patients": patients,
            "edv_ml": (volumes["n_pred"][0], volumes["n_ref"][0]),
            "ef_percent": (volumes["n_pred"][1], volumes["n_ref"][1]),
            "edv_agreement": bland_altman(volumes["n_pred"][0], volumes["n_ref"][0]),
            "ef_agreement": bland_altman(volumes["n_pred"][1], volumes["n_ref"][1]),
        }
    return result
