"""The measures a cardiologist reads off a cine-MR segmentation, as the ACDC challenge reports them: ventricular
end-diastolic and end-systolic volumes (mL), the ejection fraction (%), their agreement with the reference
(Bland-Altman bias and 95% limits), and the 95th-percentile Hausdorff distance per structure (MONAI's metric, in mm).
Kept here beside Dice/IoU because a segmentation that scores well can still misstate a volume that matters."""

from typing import Dict, Optional, Sequence

import numpy as np
import torch

__all__ = ["structure_volume_ml", "ejection_fraction", "bland_altman", "hausdorff95"]


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
