"""Evaluation: per-case and per-class metrics (Dice, IoU, the frequency bins), the classifier-weight similarity,
Grad-CAM, the figure helper, and the clinical measures of cardiac segmentations (volumes, ejection fraction, Bland-Altman, HD95). May import torch, MONAI, numpy/matplotlib and ``medseg_dropclass.validation``:
it scores predictions and networks handed to it and knows nothing of bundles, data layouts or studies."""

from medseg_dropclass.evaluation.clinical import (
    bland_altman,
    cardiac_indices,
    ejection_fraction,
    hausdorff95,
    structure_volume_ml,
)
from medseg_dropclass.evaluation.gradcam import class_gradcam, save_gradcam_overlays
from medseg_dropclass.evaluation.metrics import (
    FREQUENCY_BINS,
    confusion_matrix,
    frequency_bin,
    per_class_dice,
    per_class_iou,
    summarize_cases,
)
from medseg_dropclass.evaluation.similarity import class_weight_similarity, save_similarity_heatmap, similarity_summary

__all__ = [
    "FREQUENCY_BINS",
    "frequency_bin",
    "confusion_matrix",
    "per_class_iou",
    "per_class_dice",
    "summarize_cases",
    "class_gradcam",
    "save_gradcam_overlays",
    "class_weight_similarity",
    "save_similarity_heatmap",
    "similarity_summary",
    "structure_volume_ml",
    "ejection_fraction",
    "bland_altman",
    "hausdorff95",
    "cardiac_indices",
]
