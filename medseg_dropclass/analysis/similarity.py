"""Cosine similarity between the classifier's class weight vectors (the paper's entanglement measure)."""

from typing import Dict, Sequence

import torch

__all__ = ["class_weight_similarity", "similarity_summary"]


def class_weight_similarity(classifier_weight: torch.Tensor) -> torch.Tensor:
    """``(K, K)`` cosine similarity of the rows ``w_k`` of a 1x1 classifier weight ``(K, C, 1, ...)``."""
    rows = classifier_weight.detach().reshape(classifier_weight.shape[0], -1).double()
    rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return rows @ rows.t()


def similarity_summary(similarity: torch.Tensor, class_share: Sequence[float]) -> Dict[str, float]:
    """Mean similarity of the most and of the least frequent class to every other class."""
    share = torch.as_tensor(class_share, dtype=torch.float64)
    k = similarity.shape[0]
    off_diagonal = ~torch.eye(k, dtype=torch.bool)
    most, least = int(share.argmax()), int(share.argmin())
    return {
        "most_frequent_class": most,
        "least_frequent_class": least,
        "most_frequent_mean_similarity": float(similarity[most][off_diagonal[most]].mean()),
        "least_frequent_mean_similarity": float(similarity[least][off_diagonal[least]].mean()),
        "mean_off_diagonal": float(similarity[off_diagonal].mean()),
    }
