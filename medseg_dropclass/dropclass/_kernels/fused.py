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

from typing import Any, Optional, Tuple

import torch

__all__ = [
    "fused_dropclass_train",
    "fused_is_faster_on",
    "FUSED_DEVICE_TYPES",
    "FUSED_CUDA_SPATIAL_DIMS",
    "FUSED_MAX_CHANNELS",
    "TRAIN_CHUNK",
]

# Pixels per chunk on CPU: a (32, 16384) float chunk is 2 MiB.
TRAIN_CHUNK = 16384

# Where the fused path was measured faster than plain autograd (benchmarks/step_overhead.py): every map on CPU
# (it was tuned for CPU caches); on CUDA only 3D maps in float32. Measured on an H200 (torch 2.11, 2026-12-04, two
# sittings, training-step ratio to the baseline, fused vs plain): UNet 3D 64^3 1.138 / 1.193 vs 2.015 / 1.956,
# SegResNet 3D 1.216 / 1.273 vs 1.415 / 1.422; but 2D UNet 1.563 vs 1.334, SegResNet 2D 1.443 vs 1.186, DeepLab
# ResNet-18 1.358 vs 1.157. Under autocast on CUDA only the plain path was measured (it computes in float16, the
# fused one in float32), so it stays plain there. Other devices: plain, unmeasured.
FUSED_DEVICE_TYPES = ("cpu", "cuda")
FUSED_CUDA_SPATIAL_DIMS = (3,)

# The fused path trades memory passes for arithmetic: it runs six (C, C) products per pixel (the Gram matrix, the
# forward, the recomputed hidden map, two gradients, the batch-norm correction) where plain autograd runs three.
# That wins while the passes over a C-channel map cost more than the products, i.e. for few channels. Measured on the
# 2-core CPU (benchmarks/step_overhead.py networks, training-step ratio to the baseline, fused vs plain, 2026-12-02):
# C=32 (UNet 2D) 1.133 vs 1.179, C=64 (DeepLab ResNet-18 decoder) 1.224 vs 1.190 (fastest rounds 1.169 vs 1.211: a
# tie, and the fused path's peak memory is lower, 1.139 vs 1.182), C=240 (HRNet-W18-small-v1) 1.514 vs 1.360.
FUSED_MAX_CHANNELS = 64


def fused_is_faster_on(
    device: torch.device, channels: Optional[int] = None, spatial_dims: Optional[int] = None, autocast: bool = False
) -> bool:
    """Whether the fused path is the default (``DropClassHead(fused=None)``, ``DropClassLoss(fused=None)``): on CPU;
    on CUDA for maps of :data:`FUSED_CUDA_SPATIAL_DIMS` spatial dims outside autocast (``spatial_dims`` unknown: no);
    and, given the head's feature ``channels``, at most :data:`FUSED_MAX_CHANNELS` of them."""
    kind = torch.device(device).type
    if kind not in FUSED_DEVICE_TYPES:
        return False
    if kind == "cuda" and (autocast or spatial_dims not in FUSED_CUDA_SPATIAL_DIMS):
        return False
    return channels is None or int(channels) <= FUSED_MAX_CHANNELS


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

        num_classes = cls_weight.shape[0]
        # one product gives the main logits (first K rows) and the projection (last C rows)
        stacked = torch.cat([cls_weight, folded])
        stacked_bias = torch.cat([cls_bias, beta - a * mean_z])[:, None]
        logits = x.new_empty(batch, num_classes, pixels)
        dropped = x.new_empty(batch, num_classes, pixels)
        bias = cls_bias[:, None]
        for b, span in _chunks(batch, pixels, chunk):
            both = torch.addmm(stacked_bias, stacked, x[b, :, span])
            logits[b, :, span] = both[:num_classes]
            torch.addmm(bias, cls_weight, both[num_classes:].relu_(), out=dropped[b, :, span])

        ctx.save_for_backward(x, weight, cls_weight, gram, sum_x, mean_z, inv_std, a, stacked, stacked_bias)
        ctx.chunk = chunk
        ctx.mark_non_differentiable(mean_z, var_z)
        return logits, dropped, mean_z, var_z

    @staticmethod
    def backward(ctx: Any, grad_logits, grad_dropped, _grad_mean, _grad_var):  # type: ignore[override]
        x, weight, cls_weight, gram, sum_x, mean_z, inv_std, a, stacked, stacked_bias = ctx.saved_tensors
        batch, channels, pixels = x.shape
        num_classes = cls_weight.shape[0]
        count = batch * pixels
        if grad_logits is None:
            grad_logits = torch.zeros((batch, num_classes, pixels), dtype=x.dtype, device=x.device)
        if grad_dropped is None:
            grad_dropped = torch.zeros_like(grad_logits)
        folded, shift = stacked[num_classes:], stacked_bias[num_classes:]

        grad_x = torch.empty_like(x)
        grad_cls_hidden = torch.zeros_like(cls_weight)  # sum of dL/d(dropped) hidden^T
        grad_stacked_x = x.new_zeros(num_classes + channels, channels)  # sum of [gm; gy] x^T
        grad_beta = x.new_zeros(channels)
        grad_cls_bias = grad_logits.sum((0, 2)) + grad_dropped.sum((0, 2))
        cls_weight_t, stacked_t = cls_weight.t(), stacked.t()
        chunk = min(ctx.chunk, pixels)
        grads = x.new_empty(num_classes + channels, chunk)  # [dL/dlogits; dL/dy] of one chunk
        for b, span in _chunks(batch, pixels, ctx.chunk):
            xc = x[b, :, span]
            width = xc.shape[1]
            g = grads[:, :width]
            hidden = torch.addmm(shift, folded, xc).relu_()
            gd = grad_dropped[b, :, span]
            grad_cls_hidden.addmm_(gd, hidden.t())
            g[:num_classes] = grad_logits[b, :, span]
            torch.mm(cls_weight_t, gd, out=g[num_classes:])
            g[num_classes:].mul_(hidden > 0)
            grad_beta += g[num_classes:].sum(1)
            grad_stacked_x.addmm_(g, xc.t())
            torch.mm(stacked_t, g, out=grad_x[b, :, span])
        grad_cls_weight = grad_stacked_x[:num_classes] + grad_cls_hidden
        grad_y_x = grad_stacked_x[num_classes:]

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
        of ``W x`` (for the running statistics; not differentiable). Under ``torch.autocast`` every input
        is cast to float32 and the outputs are float32.
    """
    if x.device.type != "cpu":
        chunk = max(int(x.shape[2]), 1)
    if torch.is_autocast_enabled(x.device.type):
        # mixed precision: the statistics (a Gram matrix over every pixel) and both heads in float32, as
        # torch.amp.custom_fwd(cast_inputs=torch.float32) would; the casts carry the gradients back
        with torch.autocast(device_type=x.device.type, enabled=False):
            tensors = [t.float() for t in (x, weight, gamma, beta, cls_weight, cls_bias)]
            return _FusedDropClassTrain.apply(*tensors, eps, chunk)
    return _FusedDropClassTrain.apply(x, weight, gamma, beta, cls_weight, cls_bias, eps, chunk)
