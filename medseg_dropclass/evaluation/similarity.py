"""Cosine similarity between the classifier's class weight vectors (the paper's entanglement measure)."""

from typing import Dict, Sequence

import torch

from medseg_dropclass.evaluation.figures import save_figure

__all__ = ["class_weight_similarity", "similarity_summary", "similarity_figure", "save_similarity_heatmap"]


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


def similarity_figure(similarity: torch.Tensor, class_names: Sequence[str], title: str = "", annotate: bool = True):
    """The ``(K, K)`` similarity matrix as a matplotlib heatmap figure (TensorBoard image and PNG alike)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    similarity = torch.as_tensor(similarity).detach().cpu()
    k = similarity.shape[0]
    figure, axis = plt.subplots(figsize=(2 + 0.55 * k, 1.6 + 0.5 * k), dpi=80)
    shown = axis.imshow(similarity.numpy(), vmin=-1, vmax=1, cmap="coolwarm")
    if annotate:
        for i in range(k):
            for j in range(k):
                axis.text(j, i, f"{float(similarity[i, j]):.2f}", ha="center", va="center", fontsize=6)
    axis.set_xticks(range(k))
    axis.set_xticklabels(class_names, rotation=90, fontsize=7)
    axis.set_yticks(range(k))
    axis.set_yticklabels(class_names, fontsize=7)
    axis.set_title(title or "cosine similarity of class weight vectors", fontsize=9)
    figure.colorbar(shown, ax=axis, fraction=0.046)
    figure.tight_layout()
    return figure


def save_similarity_heatmap(similarity: torch.Tensor, class_names: Sequence[str], path: str, title: str = "") -> str:
    """Write the ``(K, K)`` similarity matrix as an annotated heatmap PNG."""
    figure = similarity_figure(similarity, class_names, title)
    save_figure(figure, path, dpi=100)
    return path
