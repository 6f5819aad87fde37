"""Confusion matrix -> per-class IoU and Dice (``ignore_index`` pixels excluded), and the nnU-Net-style
per-case summary that every evaluation of the project reports (bundle evaluate, demo, compare)."""

from typing import Dict, Optional, Sequence, TypeVar

import numpy as np
import torch

from medseg_dropclass.validation import check_label_values, nanmean

__all__ = [
    "FREQUENCY_BINS",
    "frequency_bin",
    "confusion_matrix",
    "iou_from_counts",
    "per_class_iou",
    "per_class_dice",
    "summarize_cases",
]

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)

# (name, lower share inclusive, upper share exclusive) of the training pixels
FREQUENCY_BINS = (("<0.1%", 0.0, 0.001), ("0.1-1%", 0.001, 0.01), (">1%", 0.01, 1.01))


def frequency_bin(share: float) -> str:
    """The :data:`FREQUENCY_BINS` name of a class share."""
    for name, low, high in FREQUENCY_BINS:
        if low <= share < high:
            return name
    raise ValueError(f"class share {share} is outside 0..1")


def confusion_matrix(
    prediction: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """``(K, K)`` counts, rows = target class, columns = predicted class.

    Args:
        prediction: class indices, any shape.
        target: class indices of the same shape; ``ignore_index`` pixels are left out.

    Raises:
        ValueError: shapes differ, or a target value outside ``0..K-1`` that is not ``ignore_index``.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(prediction.shape)} differs from target shape {tuple(target.shape)}")
    prediction, target = prediction.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index
    prediction, target = prediction[keep], target[keep]
    if target.numel() and (target.min() < 0 or target.max() >= num_classes):
        check_label_values(target.unique(), num_classes, where="target")
    counts = torch.bincount(target * num_classes + prediction, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_from_counts(tp: ArrayOrTensor, fp: ArrayOrTensor, fn: ArrayOrTensor) -> ArrayOrTensor:
    """IoU = TP / (TP + FP + FN) elementwise, for torch tensors or numpy arrays of counts (any shape, summed however
    the caller pools: per case, per seed, over a dataset); NaN where the class is in neither reference nor prediction."""
    union = tp + fp + fn
    if isinstance(union, torch.Tensor):
        return torch.where(
            union > 0, tp / union.clamp_min(1), torch.full_like(union, float("nan"), dtype=torch.float64)
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def per_class_iou(matrix: torch.Tensor) -> torch.Tensor:
    """``(K,)`` IoU = TP / (TP + FP + FN); NaN for a class absent from both target and prediction."""
    matrix = matrix.double()
    tp = matrix.diag()
    return iou_from_counts(tp, matrix.sum(0) - tp, matrix.sum(1) - tp)


def per_class_dice(matrix: torch.Tensor) -> torch.Tensor:
    """``(K,)`` Dice = 2 TP / (2 TP + FP + FN); NaN for a class absent from both target and prediction."""
    matrix = matrix.double()
    tp = matrix.diag()
    denominator = matrix.sum(0) + matrix.sum(1)
    return torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.full_like(tp, float("nan")))


def summarize_cases(
    cases: Sequence[dict],
    class_names: Sequence[str],
    class_share: Optional[Sequence[float]] = None,
    include_background: bool = False,
) -> dict:
    """nnU-Net-style summary of per-case confusion matrices.

    Args:
        cases: ``[{"reference": name, "confusion": (K, K) counts, rows = reference class}, ...]``.
        class_names: ``K`` names.
        class_share: share of each class in the training pixels (adds the frequency-bin means).
        include_background: count class 0 in ``foreground_mean`` (named for the usual case).

    Returns:
        ``metric_per_case`` (per class: Dice, IoU, TP, FP, FN, n_ref, n_pred), ``mean`` (per class, over
        the cases where the class has a value), ``foreground_mean``, ``dataset`` (all cases pooled into one
        matrix) and, with ``class_share``, ``frequency_bins`` and ``class_share``. A class absent from both
        the reference and the prediction of a case has no value there (NaN, left out of the means).
    """
    names = list(class_names)
    per_case = []
    for case in cases:
        matrix = torch.as_tensor(case["confusion"]).long()
        dice, iou = per_class_dice(matrix), per_class_iou(matrix)
        tp, n_ref, n_pred = matrix.diag(), matrix.sum(1), matrix.sum(0)
        per_case.append(
            {
                "reference": case["reference"],
                "metrics": {
                    n: {
                        "Dice": float(dice[k]),
                        "IoU": float(iou[k]),
                        "TP": int(tp[k]),
                        "FP": int(n_pred[k] - tp[k]),
                        "FN": int(n_ref[k] - tp[k]),
                        "n_ref": int(n_ref[k]),
                        "n_pred": int(n_pred[k]),
                    }
                    for k, n in enumerate(names)
                },
            }
        )
    mean = {n: {m: nanmean(c["metrics"][n][m] for c in per_case) for m in ("Dice", "IoU")} for n in names}
    counted = names if include_background else names[1:]
    pooled = sum(
        (torch.as_tensor(c["confusion"]).long() for c in cases), torch.zeros(len(names), len(names), dtype=torch.long)
    )
    pooled_dice, pooled_iou = per_class_dice(pooled), per_class_iou(pooled)
    summary = {
        "metric_per_case": per_case,
        "mean": mean,
        "foreground_mean": {m: nanmean(mean[n][m] for n in counted) for m in ("Dice", "IoU")},
        "dataset": {n: {"Dice": float(pooled_dice[k]), "IoU": float(pooled_iou[k])} for k, n in enumerate(names)},
    }
    if class_share is not None:
        share = [float(v) for v in class_share]
        bins: Dict[str, dict] = {}
        for name, _, _ in FREQUENCY_BINS:
            members = [n for n, v in zip(names[1:], share[1:]) if frequency_bin(v) == name]
            bins[name] = {m: nanmean(mean[n][m] for n in members) for m in ("Dice", "IoU")}
            bins[name]["classes"] = members
        summary["frequency_bins"] = bins
        summary["class_share"] = dict(zip(names, share))
    return summary
