"""Analysis: per-case evaluation, the baseline-vs-DropClass comparison, weight similarity, Grad-CAM."""

from medseg_dropclass.analysis.evaluation import FREQUENCY_BINS, evaluate_cases, frequency_bin, summarize_cases, write_summary
from medseg_dropclass.analysis.gradcam import class_gradcam, save_gradcam_overlays
from medseg_dropclass.analysis.similarity import class_weight_similarity, save_similarity_heatmap, similarity_summary

__all__ = [
    "FREQUENCY_BINS",
    "frequency_bin",
    "evaluate_cases",
    "summarize_cases",
    "write_summary",
    "class_gradcam",
    "save_gradcam_overlays",
    "class_weight_similarity",
    "save_similarity_heatmap",
    "similarity_summary",
]
