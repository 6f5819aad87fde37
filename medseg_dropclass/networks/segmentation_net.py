"""One wiring class for every architecture: a feature network followed by a classifier head."""

from typing import List, Optional, Union

import torch
from torch import nn
from torch.nn import functional as F

from medseg_dropclass.dropclass.head import ClassifierHead, DropClassOutput, check_spatial_dims
from medseg_dropclass.validation import interpolation_mode

__all__ = ["SegmentationNet", "ClassifierHead"]  # ClassifierHead lives in dropclass.head, beside DropClassHead


class SegmentationNet(nn.Module):
    """``head(features(x))``, padding the input to a multiple of ``size_divisor`` and cropping back.

    Args:
        features: maps ``(B, in_channels, *spatial)`` to a feature map ``(B, C, *spatial)``.
        head: :class:`~medseg_dropclass.DropClassHead` or :class:`ClassifierHead`.
        spatial_dims: 1, 2 or 3.
        in_channels: channels the input must have.
        size_divisor: spatial sizes the feature network needs a multiple of; inputs of other
            (odd) sizes are zero-padded at the end and the logits cropped back. Inputs smaller than
            it in any dimension are refused.
        output_stride: the feature map is this many times smaller than the input; the logits
            (main and dropped) are interpolated (bi/trilinear) to the input size.

    Forward:
        ``x``: ``(B, in_channels, *spatial)``; ``drop_class``: the class ``z`` to drop (train mode,
        DropClass head only). Returns logits ``(B, K, *spatial)`` in eval mode (and always for the
        baseline head), a :class:`DropClassOutput` in train mode with a DropClass head.
    """

    __constants__ = ["spatial_dims", "in_channels", "size_divisor", "output_stride", "interpolation"]

    def __init__(
        self,
        features: nn.Module,
        head: nn.Module,
        spatial_dims: int,
        in_channels: int,
        size_divisor: int = 1,
        output_stride: int = 1,
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.in_channels = int(in_channels)
        self.size_divisor = int(size_divisor)
        self.output_stride = int(output_stride)
        self.interpolation = interpolation_mode(spatial_dims)
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor, drop_class: Optional[int] = None) -> Union[torch.Tensor, DropClassOutput]:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input of shape {list(x.shape)} does not fit the network: expected (B, {self.in_channels}, "
                f"{self.spatial_dims} spatial sizes) for in_channels={self.in_channels}, spatial_dims={self.spatial_dims}"
            )
        sizes: List[int] = [int(s) for s in x.shape[2:]]
        if min(sizes) < self.size_divisor:
            raise ValueError(
                f"input spatial size {sizes} is too small for this network: every size must be >= "
                f"{self.size_divisor} (its total downsampling / output stride)"
            )
        pads: List[int] = []
        for size in sizes[::-1]:  # F.pad lists the last dimension first
            pads += [0, (-size) % self.size_divisor]
        padded = any(p > 0 for p in pads)
        if padded:
            x = F.pad(x, pads)
        out = self.head(self.features(x), drop_class)
        if not padded and self.output_stride == 1:
            return out
        full: List[int] = [int(s) for s in x.shape[2:]]
        if isinstance(out, torch.Tensor):
            return self.restore(out, full, sizes)
        return DropClassOutput(
            self.restore(out.logits, full, sizes), self.restore(out.dropped_logits, full, sizes), out.drop_class
        )

    def restore(self, logits: torch.Tensor, padded: List[int], sizes: List[int]) -> torch.Tensor:
        """Logits at the padded input size (interpolated if the features were strided), cropped to ``sizes``."""
        if self.output_stride != 1:
            logits = F.interpolate(logits, size=padded, mode=self.interpolation, align_corners=False)
        for dim, size in enumerate(sizes):
            if logits.shape[dim + 2] != size:  # a no-op narrow still zero-fills a full-size gradient in backward
                logits = logits.narrow(dim + 2, 0, size)
        return logits
