"""The dropped branch's cross-entropy and suppression as one autograd function (one softmax, one gradient tensor).

Unfused, ``nll_loss(log_softmax(l), t)`` plus ``mean(exp(log_softmax(l)[:, z]))`` keeps the log-probabilities and
in backward builds three full-size ``(B, K, *spatial)`` tensors (the NLL's zero-filled scatter, the class select's
zero-filled gradient and the log-softmax backward) and adds them; at full resolution with 19 classes these passes
over memory, not the arithmetic, are the cost. Here the forward keeps the probabilities and the backward writes the
closed-form gradient of both terms into one tensor::

    d nll / d l_j  = w_t (p_j - [j = t]) / sum(w)        (labelled pixels; 0 where the target is ignored)
    d supp / d l_j = r   p_z ([j = z] - p_j)             (r: the pixel's weight in the suppression mean)

Computed in float32 for half-precision inputs (mixed precision: the softmax and the means stay accurate; the
gradient is returned in the input's dtype), in float64 for float64 inputs.
"""

from typing import Any, Optional, Tuple

import torch

__all__ = ["dropped_ce_and_suppression"]


class _DroppedCEAndSuppression(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits, target, drop_class: int, ignore_index: int, weight, region):  # type: ignore[override]
        dtype = logits.dtype
        logits = logits.double() if dtype == torch.float64 else logits.float()
        batch, classes = logits.shape[0], logits.shape[1]
        flat = logits.reshape(batch, classes, -1)
        labels = target.reshape(batch, 1, -1)
        labelled = labels != ignore_index
        safe = labels.masked_fill(~labelled, 0)
        probability = torch.log_softmax(flat, dim=1)
        picked = probability.gather(1, safe)  # log p_t, (B, 1, N)
        pixel_weight = labelled.to(logits.dtype) if weight is None else weight.to(logits.dtype)[safe] * labelled
        total_weight = pixel_weight.sum()
        nll = -(picked * pixel_weight).sum() / total_weight.clamp_min(torch.finfo(logits.dtype).tiny)
        probability.exp_()
        p_z = probability[:, drop_class : drop_class + 1]  # (B, 1, N)
        if region is None:
            suppression = p_z.mean()
            region_weight = None
        else:
            mask = region.reshape(batch, 1, -1).to(logits.dtype)
            count = mask.sum().clamp_min(1.0)
            suppression = (p_z * mask).sum() / count
            region_weight = mask / count
        ctx.save_for_backward(probability, safe, pixel_weight, region_weight)
        ctx.total_weight = total_weight
        ctx.drop_class, ctx.shape, ctx.dtype = drop_class, logits.shape, dtype
        ctx.pixels = flat.shape[0] * flat.shape[2]
        return nll, suppression

    @staticmethod
    def backward(ctx: Any, grad_nll, grad_suppression) -> Tuple[Optional[torch.Tensor], ...]:  # type: ignore[override]
        probability, safe, pixel_weight, region_weight = ctx.saved_tensors
        z = ctx.drop_class
        ce = (
            pixel_weight * (grad_nll / ctx.total_weight)
            if float(ctx.total_weight) > 0
            else torch.zeros_like(pixel_weight)
        )
        p_z = probability[:, z : z + 1]
        suppress = p_z * (
            grad_suppression / ctx.pixels if region_weight is None else grad_suppression * region_weight
        )  # (B, 1, N)
        grad = probability * (ce - suppress)
        grad.scatter_add_(1, safe, -ce)
        grad[:, z : z + 1] += suppress
        return grad.reshape(ctx.shape).to(ctx.dtype), None, None, None, None, None


def dropped_ce_and_suppression(
    logits: torch.Tensor,
    target: torch.Tensor,
    drop_class: int,
    ignore_index: int = 255,
    weight: Optional[torch.Tensor] = None,
    region: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(nll_loss(log_softmax(logits), target), mean softmax(logits)[z])`` with one softmax and one gradient.

    Args:
        logits: ``(B, K, *spatial)`` dropped-branch logits.
        target: ``(B, *spatial)`` class indices with the pixels of ``z`` already set to ``ignore_index``.
        weight: per-class CE weights ``(K,)`` (as ``F.nll_loss``: the mean is weighted by them).
        region: ``(B, *spatial)`` boolean pixels of the suppression mean (``None``: all pixels).

    Returns:
        Two scalars (float32, float64 for float64 logits). The CE is 0 with zero gradient when every pixel is ignored (``F.nll_loss`` gives NaN).
    """
    return _DroppedCEAndSuppression.apply(logits, target, int(drop_class), int(ignore_index), weight, region)
