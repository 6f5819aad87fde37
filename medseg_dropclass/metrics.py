"""Confusion matrix -> per-class IoU and Dice, with ``ignore_index`` pixels excluded."""

from typing import Dict, List

import torch

__all__ = ["confusion_matrix", "per_class_iou", "per_class_dice", "summarize"]


def confusion_matrix(prediction: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
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
        bad = target[(target < 0) | (target >= num_classes)][0]
        raise ValueError(f"target value {int(bad)} is outside the classes 0..{num_classes - 1}")
    counts = torch.bincount(target * num_classes + prediction, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_iou(matrix: torch.Tensor) -> torch.Tensor:
    """``(K,)`` IoU = TP / (TP + FP + FN); NaN for a class absent from both target and prediction."""
    matrix = matrix.double()
    tp = matrix.diag()
    union = matrix.sum(0) + matrix.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def per_class_dice(matrix: torch.Tensor) -> torch.Tensor:
    """``(K,)`` Dice = 2 TP / (2 TP + FP + FN); NaN for a class absent from both target and prediction."""
    matrix = matrix.double()
    tp = matrix.diag()
    denominator = matrix.sum(0) + matrix.sum(1)
    return torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.full_like(tp, float("nan")))


def summarize(matrix: torch.Tensor, class_names: List[str]) -> Dict[str, Dict[str, float]]:
    """Per-class IoU, Dice and target share, keyed by class name."""
    iou, dice = per_class_iou(matrix), per_class_dice(matrix)
    total = max(int(matrix.sum()), 1)
    return {
        name: {"iou": float(iou[k]), "dice": float(dice[k]), "share": float(matrix[k].sum()) / total}
        for k, name in enumerate(class_names)
    }
