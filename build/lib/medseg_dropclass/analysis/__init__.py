"""Analysis: the baseline-vs-DropClass comparison, Grad-CAM (the per-case summary lives in ``metrics``,
the class-weight similarity in ``similarity``)."""

from medseg_dropclass.analysis.gradcam import class_gradcam, save_gradcam_overlays
from medseg_dropclass.metrics import FREQUENCY_BINS, frequency_bin, summarize_cases
from medseg_dropclass.similarity import class_weight_similarity, save_similarity_heatmap, similarity_summary

__all__ = [
    "FREQUENCY_BINS",
    "frequency_bin",
    "summarize_cases",
    "class_gradcam",
    "save_gradcam_overlays",
    "class_weight_similarity",
    "save_similarity_heatmap",
    "similarity_summary",
]
