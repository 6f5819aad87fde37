"""Analysis of trained networks: classifier weight similarity (Grad-CAM and the comparison come later)."""

from medseg_dropclass.analysis.similarity import class_weight_similarity, similarity_summary

__all__ = ["class_weight_similarity", "similarity_summary"]
