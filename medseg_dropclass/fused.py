"""The train-mode DropClass head (both branches, batch norm included) as one chunked autograd function.

Unfused, the dropped branch makes about twenty full-resolution passes over a ``C``-channel map
(scale, conv, batch-norm statistics and normalisation, ReLU, their backwards and a gradient
accumulation into ``x``); on CPU those passes, not the arithmetic, are the cost. Here every
pixel-wise step runs on chunks of pixels that stay in cache, and intermediates are recomputed in
backward instead of stored. Batch-norm statistics of ``z = W x`` come from the ``(C, C)`` Gram
matrix of ``x``: ``mean(z) = W mean(x)`` and ``var(z) = diag(W Cov(x) W^T)``.

Computed (``x``: ``(B, C, N)``, ``W``: ``(C, C)`` the projection weight already scaled by
``mean_{k != z} S_k``, ``gamma, beta``: batch-norm affine, ``Wc, bc``: the classifier)::

    logits         = Wc x + bc
    dropped_logits = Wc ReLU(gamma * (W x - mean) / sqrt(var + eps) + beta) + bc

with ``mean, var`` the biased batch statistics of ``W x`` over ``B`` and ``N`` (as
``torch.nn.BatchNorm`` in train mode). Matches the unfused head to float rounding; the variance
from the Gram matrix loses precision only when ``|mean(x)|`` dwarfs ``std(x)``, which post-ReLU,
normalised features do not.
"""

from typing import Any, Tuple

import torch

__all__ = ["fused_dropclass_train", "TRAIN_CHUNK"]

# Pixels per chunk on CPU: a (32, 16384) float chunk is 2 MiB.
TRAIN_CHUNK = 16384


def _chunks(batch: int, pixels: int, chunk: int):
    for b in range(batch):
        for start in range(0, pixels, chunk):
            yield b, slice(start, min(start + chunk, pixels))


class _FusedDropClassTrain(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, weight, gamma, beta, cls_weight, cls_bias, eps: float, chunk: int):  # type: ignore[override]
        batch, channels, pixels = x.shape
        count = batch * pixels
        gram = x.new_zeros(channels, channels)
        sum_x = x.new_zeros(channels)
        for b, span in _chunks(batch, pixels, chunk):
            xc = x[b, :, span]
            gram.addmm_(xc, xc.t())
            sum_x += xc.sum(1)
        mean_x = sum_x / count
        cov_x = gram / count - torch.outer(mean_x, mean_x)
        mean_z = weight @ mean_x
        var_z = ((weight @ cov_x) * weight).sum(1).clamp_min(0.0)
        inv_std = torch.rsqrt(var_z + eps)
        a = gamma * inv_std
        folded = a[:, None] * weight
        shift = (beta - a * mean_z)[:, None]

        num_classes = cls_weight.shape[0]
        logits = x.new_empty(batch, num_classes, pixels)
        dropped = x.new_empty(batch, num_classes, pixels)
        bias = cls_bias[:, None]
        for b, span in _chunks(batch, pixels, chunk):
            xc = x[b, :, span]
            # out= a row-strided slice: BLAS writes it in place (ld = N), no copy
            torch.addmm(bias, cls_weight, xc, out=logits[b, :, span])
            hidden = torch.addmm(shift, folded, xc).relu_()
            torch.addmm(bias, cls_weight, hidden, out=dropped[b, :, span])

        ctx.save_for_backward(x, weight, cls_weight, gram, sum_x, mean_z, inv_std, a, folded, shift)
        ctx.chunk = chunk
        ctx.mark_non_differentiable(mean_z, var_z)
        return logits, dropped, mean_z, var_z

    @staticmethod
    def backward(ctx: Any, grad_logits, grad_dropped, _grad_mean, _grad_var):  # type: ignore[override]
        x, weight, cls_weight, gram, sum_x, mean_z, inv_std, a, folded, shift = ctx.saved_tensors
        batch, channels, pixels = x.shape
        count = batch * pixels
        if grad_logits is None:
            grad_logits = torch.zeros((batch, cls_weight.shape[0], pixels), dtype=x.dtype, device=x.device)
        if grad_dropped is None:
            grad_dropped = torch.zeros_like(grad_logits)

        grad_x = torch.empty_like(x)
        grad_cls_weight = torch.zeros_like(cls_weight)
        grad_cls_bias = grad_logits.sum((0, 2)) + grad_dropped.sum((0, 2))
        grad_y_x = x.new_zeros(channels, channels)  # sum over pixels of dL/dy x^T
        grad_beta = x.new_zeros(channels)
        cls_weight_t = cls_weight.t()
        for b, span in _chunks(batch, pixels, ctx.chunk):
            xc = x[b, :, span]
            gm = grad_logits[b, :, span]
            gd = grad_dropped[b, :, span]
            hidden = torch.addmm(shift, folded, xc).relu_()
            grad_cls_weight.addmm_(gm, xc.t()).addmm_(gd, hidden.t())
            grad_y = torch.ops.aten.threshold_backward(cls_weight_t @ gd, hidden, 0.0)
            grad_beta += grad_y.sum(1)
            grad_y_x.addmm_(grad_y, xc.t())
            torch.addmm(cls_weight_t @ gm, folded.t(), grad_y, out=grad_x[b, :, span])

        # Batch-norm backward in closed form: dL/dz = a*gy - d*(W x) + e, per channel.
        grad_gamma = inv_std * ((weight * grad_y_x).sum(1) - mean_z * grad_beta)
        d = a * inv_std * grad_gamma / count
        e = d * mean_z - a * grad_beta / count
        grad_weight = a[:, None] * grad_y_x - d[:, None] * (weight @ gram) + torch.outer(e, sum_x)
        correction = weight.t() @ (d[:, None] * weight)
        offset = (weight.t() @ e)[:, None]
        for b, span in _chunks(batch, pixels, ctx.chunk):
            grad_x[b, :, span].addmm_(correction, x[b, :, span], alpha=-1.0).add_(offset)
        return grad_x, grad_weight, grad_gamma, grad_beta, grad_cls_weight, grad_cls_bias, None, None


def fused_dropclass_train(
    x: torch.Tensor,
    weight: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    cls_weight: torch.Tensor,
    cls_bias: torch.Tensor,
    eps: float,
    chunk: int = TRAIN_CHUNK,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Main and dropped logits of the train-mode head, and the batch statistics of ``W x``.

    Args:
        x: ``(B, C, N)`` features (N pixels).
        weight: ``(C, C)`` projection weight times the kept-class scale.
        gamma, beta: ``(C,)`` batch-norm affine parameters.
        cls_weight: ``(K, C)``; cls_bias: ``(K,)``.
        eps: batch-norm epsilon.
        chunk: pixels per chunk (CPU); on an accelerator each batch item is one chunk.

    Returns:
        ``logits (B, K, N)``, ``dropped_logits (B, K, N)``, ``mean (C,)`` and biased ``var (C,)``
        of ``W x`` (for the running statistics; not differentiable).
    """
    if x.device.type != "cpu":
        chunk = max(int(x.shape[2]), 1)
    return _FusedDropClassTrain.apply(x, weight, gamma, beta, cls_weight, cls_bias, eps, chunk)
