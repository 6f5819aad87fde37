"""Per-pixel losses for class imbalance, the alternatives a user would reach for instead of DropClass: each takes
logits ``(B, K, *spatial)`` and class indices ``(B, *spatial)`` and leaves ``ignore_index`` pixels out (DropClass's
dropped branch marks its class ``z`` so), and each is the pixel term of :class:`~medseg_dropclass.MaskedDiceCELoss`
in place of plain cross-entropy (the bundles' ``base_loss_name``: ``dicefocal``, ``dicetopk``, ``logit_adjusted``).

- :class:`MaskedFocalLoss`: MONAI's ``FocalLoss`` (softmax, ``gamma``) over the labelled pixels (Dice + focal: the
  most robust compound loss on highly imbalanced lesions in Ma et al.'s Loss Odyssey).
- :class:`TopKCrossEntropyLoss`: the mean cross-entropy of the ``k`` % hardest labelled pixels (nnU-Net's TopK10).
- :class:`LogitAdjustedCrossEntropyLoss`: cross-entropy of ``logits + tau * log(prior)`` (Menon et al., ICLR 2021):
  a rare class must win by a margin in training; inference uses the plain logits, unchanged.
"""

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MaskedFocalLoss", "TopKCrossEntropyLoss", "LogitAdjustedCrossEntropyLoss"]


def _labelled(target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    return target != ignore_index


class MaskedFocalLoss(nn.Module):
    """MONAI's softmax ``FocalLoss`` averaged over the labelled pixels (MONAI's loss has no ``ignore_index``).

    Mean over labelled pixels of ``sum_k -(1 - p_k)^gamma * y_k * log p_k``, i.e. ``-(1 - p_t)^gamma log p_t``
    (in float32, as MONAI computes it, whatever the input's precision).
    """

    def __init__(self, gamma: float = 2.0, ignore_index: int = 255) -> None:
        super().__init__()
        from monai.losses import FocalLoss

        self.focal = FocalLoss(
            include_background=True, to_onehot_y=True, gamma=gamma, use_softmax=True, reduction="none"
        )
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labelled = _labelled(target, self.ignore_index)
        if not bool(labelled.any()):
            return logits.sum() * 0.0
        safe = torch.where(labelled, target, torch.zeros_like(target))  # any class: these pixels are masked below
        per_pixel = self.focal(logits, safe.unsqueeze(1)).sum(dim=1)  # (B, *spatial): only the true class is non-zero
        return per_pixel[labelled].mean().to(logits.dtype)  # MONAI computes in float32


class TopKCrossEntropyLoss(nn.Module):
    """The mean cross-entropy of the ``k_percent`` % labelled pixels with the largest cross-entropy (at least one).

    Args:
        k_percent: share of the hardest pixels kept, in % (nnU-Net's TopK10: 10).
        weight: optional per-class weights ``(K,)`` of the cross-entropy.
    """

    def __init__(self, k_percent: float = 10.0, ignore_index: int = 255, weight: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        if not 0 < k_percent <= 100:
            raise ValueError(f"k_percent={k_percent} must be in (0, 100]")
        self.k_percent, self.ignore_index = float(k_percent), ignore_index
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_pixel = F.cross_entropy(
            logits, target, weight=self.weight, ignore_index=self.ignore_index, reduction="none"
        )
        values = per_pixel[_labelled(target, self.ignore_index)]
        if values.numel() == 0:
            return logits.sum() * 0.0
        k = max(1, int(values.numel() * self.k_percent / 100.0))
        return values.topk(k, sorted=False).values.mean()


class LogitAdjustedCrossEntropyLoss(nn.Module):
    """Cross-entropy of ``logits + tau * log(prior)`` over the labelled pixels (logit adjustment, Menon et al. 2021).

    Args:
        class_share: the training prior of each class ``(K,)``; ``None``: set later with :meth:`set_prior` (the
            bundles do it when training starts, :class:`~medseg_dropclass.engine.LogitAdjustmentPrior`, so that the
            training labels are counted only when this loss is chosen). A class with share 0 gets the smallest
            positive share (its log would be ``-inf``).
        tau: the adjustment's strength (1: the Bayes-optimal balanced error for a calibrated model).
    """

    def __init__(
        self, class_share: Optional[Sequence[float]] = None, tau: float = 1.0, ignore_index: int = 255
    ) -> None:
        super().__init__()
        self.tau, self.ignore_index = float(tau), ignore_index
        self.register_buffer("log_prior", torch.empty(0, dtype=torch.float64), persistent=False)
        if class_share is not None:
            self.set_prior(class_share)

    def set_prior(self, class_share: Sequence[float]) -> None:
        share = torch.as_tensor(list(class_share), dtype=torch.float64)
        if share.ndim != 1 or share.numel() < 2 or bool((share < 0).any()) or float(share.sum()) <= 0:
            raise ValueError(f"class_share {list(class_share)} is not a prior over >= 2 classes")
        floor = share[share > 0].min()
        prior = torch.clamp(share, min=float(floor)) / share.clamp(min=float(floor)).sum()
        self.log_prior = prior.log().to(self.log_prior.device)  # float64; cast to the logits' dtype

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.log_prior.numel() == 0:
            raise RuntimeError("LogitAdjustedCrossEntropyLoss has no class prior: give class_share or call set_prior")
        if logits.shape[1] != self.log_prior.numel():
            raise ValueError(f"{logits.shape[1]} classes in the logits, {self.log_prior.numel()} in class_share")
        if not bool(_labelled(target, self.ignore_index).any()):
            return logits.sum() * 0.0
        shape = (1, -1) + (1,) * (logits.ndim - 2)
        adjusted = logits + self.tau * self.log_prior.to(logits.dtype).view(shape)
        return F.cross_entropy(adjusted, target, ignore_index=self.ignore_index)
