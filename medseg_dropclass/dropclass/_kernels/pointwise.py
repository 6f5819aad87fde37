"""1x1 convolutions as matrix products over a ``(B, C, N)`` view, for any number of spatial dims.

On CPU, oneDNN runs a 1x1 convolution on an NCHW map through layout reorders; measured here on
``(4, 32, 256, 256)``: 11.4 ms for a 32->8 conv against 2.2 ms for the same product as a matmul,
and its backward was slower still. Heads keep ``nn.Conv*d`` modules (so state dicts and
``Conv[Conv.CONV, spatial_dims]`` stay as MONAI writes them) and run them through these functions.
"""

from typing import List, Optional

import torch

__all__ = ["pointwise_conv", "projection_then_classifier"]

# Pixels per chunk in the fused inference path: a (C, chunk) float intermediate of C=32 channels
# is 2 MiB, which stays in a CPU's L2/L3 cache between the two products.
INFERENCE_CHUNK = 16384


@torch.jit.unused
def _exporting() -> bool:
    return bool(torch.compiler.is_exporting() or torch.compiler.is_compiling())


@torch.jit.unused
def _autocasting(x: torch.Tensor) -> bool:
    return torch.is_autocast_enabled(x.device.type)


@torch.jit.unused
def _in_float32(
    x: torch.Tensor,
    projection_weight: torch.Tensor,
    projection_bias: torch.Tensor,
    classifier_weight: torch.Tensor,
    classifier_bias: Optional[torch.Tensor],
    chunk: int,
) -> torch.Tensor:
    """The chunked products with autocast off, in float32 (as the fused train path computes): autocast does not
    reach products written with ``out=``, which then met a float16/bfloat16 map and float32 weights."""
    with torch.autocast(x.device.type, enabled=False):
        return projection_then_classifier(
            x.float(), projection_weight, projection_bias, classifier_weight, classifier_bias, chunk
        )


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``conv1x1(x)`` for ``x`` of shape ``(B, C, *spatial)`` and ``weight`` ``(K, C, 1, ...)`` or ``(K, C)``.

    Returns ``(B, K, *spatial)``, contiguous.
    """
    batch, channels = x.shape[0], x.shape[1]
    spatial: List[int] = list(x.shape[2:])  # not int(s): a tracer (torch.export) keeps the sizes symbolic
    # bmm over an expanded weight: torch.matmul broadcasting a 2D weight copies the input in backward
    matrix = weight.reshape(weight.shape[0], channels)
    out = torch.bmm(matrix.expand(batch, matrix.shape[0], channels), x.reshape(batch, channels, -1))
    if bias is not None:
        out = out + bias.view(1, -1, 1)
    return out.view([batch, int(weight.shape[0])] + spatial)


def projection_then_classifier(
    x: torch.Tensor,
    projection_weight: torch.Tensor,
    projection_bias: torch.Tensor,
    classifier_weight: torch.Tensor,
    classifier_bias: Optional[torch.Tensor],
    chunk: int = INFERENCE_CHUNK,
) -> torch.Tensor:
    """``classifier(ReLU(projection(x)))`` in cache-sized chunks of pixels (inference only).

    Args:
        x: ``(B, C, *spatial)``.
        projection_weight: ``(C', C[, 1...])``; projection_bias: ``(C',)``.
        classifier_weight: ``(K, C'[, 1...])``; classifier_bias: ``(K,)`` or ``None``.

    Returns:
        ``(B, K, *spatial)``, float32 under autocast (the products run in float32 there). Without autograd
        the ``(C', N)`` intermediate never exists at full size, so the extra memory traffic over a plain
        classifier is one read of ``x``; when gradients are needed the products run unchunked.
    """
    needs_grad = x.requires_grad or projection_weight.requires_grad or classifier_weight.requires_grad
    exporting = False
    if not torch.jit.is_scripting():
        exporting = _exporting()  # torch.export / ONNX: a chunk loop over a symbolic pixel count cannot be traced
        if _autocasting(x):
            return _in_float32(x, projection_weight, projection_bias, classifier_weight, classifier_bias, chunk)
    if (torch.is_grad_enabled() and needs_grad) or exporting:
        # differentiable (e.g. Grad-CAM through the eval path): out= products cannot record autograd
        hidden = torch.relu(pointwise_conv(x, projection_weight, projection_bias))
        return pointwise_conv(hidden, classifier_weight, classifier_bias)
    batch, channels = x.shape[0], x.shape[1]
    spatial: List[int] = list(x.shape[2:])  # not int(s): a tracer (torch.export) keeps the sizes symbolic
    flat = x.reshape(batch, channels, -1)
    pixels = flat.shape[2]
    # pixel-major products ((n, C) @ (C, C')) run faster in MKL than channel-major ones here
    w1_t = projection_weight.reshape(projection_weight.shape[0], channels).t()
    b1 = projection_bias.view(1, -1)
    w2_t = classifier_weight.reshape(classifier_weight.shape[0], w1_t.shape[1]).t()
    num_classes = int(w2_t.shape[1])
    out = torch.empty((batch, num_classes, pixels), dtype=x.dtype, device=x.device)
    if classifier_bias is None:
        b2 = torch.zeros((1, num_classes), dtype=x.dtype, device=x.device)
    else:
        b2 = classifier_bias.view(1, -1)
    if x.device.type != "cpu":
        chunk = max(pixels, 1)  # on an accelerator one large product beats many small launches
    for b in range(batch):
        for start in range(0, pixels, chunk):
            stop = min(start + chunk, pixels)
            hidden = torch.addmm(b1, flat[b, :, start:stop].t(), w1_t).relu_()
            torch.addmm(b2, hidden, w2_t, out=out[b, :, start:stop].t())
    return out.view([batch, num_classes] + spatial)
