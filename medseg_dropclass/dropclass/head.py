"""DropClass (Chu, Kim and Han, NeurIPS 2021) as a dimension-generic segmentation head.

The paper's symbols, used in the docstrings below:

- ``w_k``: the row of the final 1x1 classifier's weight for class ``k``, shape ``(C,)``.
  For a linear head ``w_k`` is exactly the Grad-CAM weight of class ``k``, so no extra
  backward pass is needed to get it.
- ``S_k = ReLU(w_k)``: the importance of each feature channel for class ``k``.
- ``z``: the dropped class. The feature map is scaled channel-wise by
  ``mean_{k != z} S_k``, passed through a projection (1x1 conv + norm + ReLU) and
  classified again by the same classifier: the *dropped* logits.

At inference nothing is dropped: the scale is the mean of ``S_k`` over all classes.
"""

from collections import OrderedDict
from typing import NamedTuple, Optional, Tuple, Union

import torch
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_norm_layer
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from medseg_dropclass.dropclass._kernels.fused import fused_dropclass_train, fused_is_faster_on
from medseg_dropclass.dropclass._kernels.pointwise import pointwise_conv, projection_then_classifier
from medseg_dropclass.validation import check_num_classes

__all__ = [
    "DropClassOutput",
    "DropClassHead",
    "ClassifierHead",
    "class_importance",
    "kept_class_scale",
    "check_spatial_dims",
]

INFERENCE_PATHS = ("projection", "classifier")


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 1, 2 or 3, else raise a ``ValueError`` naming it."""
    if isinstance(spatial_dims, bool) or spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims={spatial_dims!r} is not supported; allowed: 1, 2 or 3")
    return int(spatial_dims)


class DropClassOutput(NamedTuple):
    """What a DropClass head returns in train mode.

    Attributes:
        logits: main logits ``classifier(x)``, ``(B, K, *spatial)``.
        dropped_logits: ``classifier(projection(x * mean_{k != z} S_k))``, ``(B, K, *spatial)``.
        drop_class: the dropped class ``z``, or ``None`` when nothing was dropped this step.
    """

    logits: torch.Tensor
    dropped_logits: torch.Tensor
    drop_class: Optional[int]


def class_importance(classifier_weight: torch.Tensor) -> torch.Tensor:
    """Channel importance ``S_k = ReLU(w_k)`` of every class.

    Args:
        classifier_weight: weight of a 1x1 convolution, ``(K, C, 1[, 1[, 1]])``, or ``(K, C)``.

    Returns:
        ``(K, C)`` tensor; gradients flow back into the classifier weight.
    """
    return torch.relu(classifier_weight.reshape(classifier_weight.shape[0], classifier_weight.shape[1]))


def kept_class_scale(importance: torch.Tensor, drop_class: Optional[int] = None) -> torch.Tensor:
    """Mean importance over the kept classes, ``mean_{k != z} S_k``.

    Args:
        importance: ``(K, C)`` from :func:`class_importance`.
        drop_class: the dropped class ``z``; ``None`` keeps every class.

    Returns:
        ``(C,)`` per-channel scale. The dropped class's row is multiplied by an exact zero,
        so ``w_z`` receives no gradient through this scale.
    """
    if drop_class is None:
        return importance.mean(0)
    num_classes = importance.shape[0]
    keep = torch.ones(num_classes, 1, dtype=importance.dtype, device=importance.device)
    keep[drop_class] = 0.0
    return (keep * importance).sum(0) / (num_classes - 1)


class DropClassHead(nn.Module):
    """Classifier head that trains with DropClass and infers with all classes kept.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels ``C`` of the feature map the head receives.
        num_classes: number of classes ``K`` (>= 2).
        norm: MONAI norm of the projection (name or ``(name, kwargs)``); batch norm as in the
            authors' code. Batch norm is folded into the projection conv at inference.
        inference_path: ``"projection"`` (the paper: ``classifier(projection(x * mean_k S_k))``)
            or ``"classifier"`` (the main logits ``classifier(x)``).
        detach_dropped_class: in the dropped branch, classify with ``w_z`` and ``b_z`` detached, so that
            neither the dropped loss nor the suppression of ``z`` reaches the shared classifier's row
            of ``z`` (only the features and the other rows learn from them). Tests whether pushing
            ``w_z`` down is what collapses a class.
        fused: the train path with batch norm: ``True`` the fused chunked function
            (:mod:`medseg_dropclass.dropclass._kernels.fused`), ``False`` plain autograd, ``None`` (default) fused only on the
            devices where it was measured faster (:func:`~medseg_dropclass.dropclass._kernels.fused.fused_is_faster_on`: CPU, and
            CUDA for 3D maps outside autocast) and for
            at most :data:`~medseg_dropclass.dropclass._kernels.fused.FUSED_MAX_CHANNELS` input channels (wider heads, e.g. HRNet's 240,
            train faster through plain autograd, which stores more: ``fused=True`` keeps the memory low).
            Both give the same values and gradients to float rounding.

    Forward:
        ``x``: ``(B, C, *spatial)``. In eval mode returns the logits ``(B, K, *spatial)`` as a plain
        tensor. In train mode returns :class:`DropClassOutput`; ``drop_class=None`` means no class
        is dropped this step (the scale is the mean over all classes).

    Raises:
        ValueError: bad ``spatial_dims``, ``num_classes < 2``, ``in_channels < 1``, an unknown
            ``inference_path``, input channels that do not match ``in_channels``, or a
            ``drop_class`` outside ``0..num_classes-1``.
    """

    __constants__ = [
        "fold_norm",
        "use_projection_at_inference",
        "spatial_dims",
        "in_channels",
        "num_classes",
        "detach_dropped_class",
    ]
    fused: Optional[bool]

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        norm: Union[str, tuple] = "batch",
        inference_path: str = "projection",
        detach_dropped_class: bool = False,
        fused: Optional[bool] = None,
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.fused = fused
        check_num_classes(num_classes, "DropClass")
        if in_channels < 1:
            raise ValueError(f"in_channels={in_channels} must be >= 1")
        if inference_path not in INFERENCE_PATHS:
            raise ValueError(f"inference_path={inference_path!r} is not one of {INFERENCE_PATHS}")
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.inference_path = inference_path
        self.use_projection_at_inference = inference_path == "projection"
        self.detach_dropped_class = bool(detach_dropped_class)

        conv_type = Conv[Conv.CONV, spatial_dims]
        self.classifier = conv_type(in_channels, num_classes, kernel_size=1)
        norm_layer = get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=in_channels)
        self.projection = nn.Sequential(
            OrderedDict(
                conv=conv_type(in_channels, in_channels, kernel_size=1, bias=False),
                norm=norm_layer,
                act=nn.ReLU(inplace=True),
            )
        )
        # A batch norm with running statistics is affine at inference: fold it into the conv.
        self.fold_norm = isinstance(norm_layer, _BatchNorm) and norm_layer.track_running_stats

    def forward(self, x: torch.Tensor, drop_class: Optional[int] = None) -> Union[torch.Tensor, DropClassOutput]:
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"DropClassHead got a feature map with {x.shape[1]} channels; expected in_channels={self.in_channels}"
            )
        if not self.training:
            return self.infer(x)
        if drop_class is not None and not 0 <= drop_class < self.num_classes:
            raise ValueError(
                f"drop_class={drop_class} is outside 0..{self.num_classes - 1} (num_classes={self.num_classes})"
            )
        scale = kept_class_scale(class_importance(self.classifier.weight), drop_class)
        detach = self.detach_dropped_class and drop_class is not None
        if self.fold_norm and not detach and not torch.jit.is_scripting() and self.use_fused(x):
            return self.fused_train_forward(x, scale, drop_class)
        logits = self.classify(x)
        projected = self.project(x, scale)
        if detach and drop_class is not None:
            dropped_logits = self.classify_without_class_gradient(projected, drop_class)
        else:
            dropped_logits = self.classify(projected)
        return DropClassOutput(logits, dropped_logits, drop_class)

    @torch.jit.unused
    def use_fused(self, x: torch.Tensor) -> bool:
        """Whether this train step takes the fused path (``fused``, or by ``x``'s device and the channel count when
        ``fused`` is None)."""
        if self.fused is not None:
            return bool(self.fused)
        autocast = torch.is_autocast_enabled(x.device.type)
        return fused_is_faster_on(x.device, self.in_channels, self.spatial_dims, autocast)

    @torch.jit.unused
    def fused_train_forward(self, x: torch.Tensor, scale: torch.Tensor, drop_class: Optional[int]) -> DropClassOutput:
        """The train forward through :func:`~medseg_dropclass.dropclass._kernels.fused.fused_dropclass_train` (batch norm only)."""
        norm = self.projection.norm
        batch, channels = x.shape[0], x.shape[1]
        spatial = [int(s) for s in x.shape[2:]]
        ones = torch.ones(channels, dtype=x.dtype, device=x.device)
        logits, dropped_logits, mean, var = fused_dropclass_train(
            x.reshape(batch, channels, -1),
            self.projection.conv.weight.reshape(channels, channels) * scale.view(1, -1),
            norm.weight if norm.weight is not None else ones,
            norm.bias if norm.bias is not None else torch.zeros_like(ones),
            self.classifier.weight.reshape(self.num_classes, channels),
            self.classifier.bias,
            norm.eps,
        )
        self.update_running_stats(mean, var, logits.shape[0] * logits.shape[2])
        shape = [batch, self.num_classes] + spatial
        return DropClassOutput(logits.view(shape), dropped_logits.view(shape), drop_class)

    @torch.jit.unused
    def classify_without_class_gradient(self, x: torch.Tensor, drop_class: int) -> torch.Tensor:
        """``classifier(x)`` with the row and bias of ``drop_class`` detached (same values, no gradient)."""
        weight, bias = self.classifier.weight, self.classifier.bias
        row = torch.zeros(self.num_classes, dtype=torch.bool, device=weight.device)
        row[drop_class] = True
        weight = torch.where(row.view([-1] + [1] * (weight.ndim - 1)), weight.detach(), weight)
        bias = torch.where(row, bias.detach(), bias)
        return pointwise_conv(x, weight, bias)

    @torch.jit.unused
    def update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        """Update the projection norm's running statistics as ``torch.nn.BatchNorm`` does in train mode."""
        norm = self.projection.norm
        if not norm.training:
            return
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
            momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
            norm.running_mean.lerp_(mean, momentum)
            norm.running_var.lerp_(var * count / max(count - 1, 1), momentum)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """``classifier(x)``, run as a matmul (see :mod:`medseg_dropclass.dropclass._kernels.pointwise`)."""
        return pointwise_conv(x, self.classifier.weight, self.classifier.bias)

    def channel_view(self, values: torch.Tensor) -> torch.Tensor:
        """``(C,)`` -> ``(1, C, 1, ...)`` so that it scales the input channels of a 1x1 conv weight."""
        return values.view([1, -1] + [1] * self.spatial_dims)

    def project(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``ReLU(norm(conv(x * scale)))`` with the scale folded into the conv weight.

        ``conv(x * s) == conv_{W diag(s)}(x)``: scaling the ``(C, C)`` weight instead of the full-size
        feature map saves an elementwise pass and its backward over every pixel.
        """
        projected = pointwise_conv(x, self.projection.conv.weight * self.channel_view(scale))
        return self.projection.act(self.projection.norm(projected))

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Logits with every class kept, ``(B, K, *spatial)``; the path used in eval mode."""
        if not self.use_projection_at_inference:
            return self.classify(x)
        scale = class_importance(self.classifier.weight).mean(0)
        if self.fold_norm and not self.training:
            weight, bias = self.folded_projection(scale)
            return projection_then_classifier(x, weight, bias, self.classifier.weight, self.classifier.bias)
        return self.classify(self.project(x, scale))

    def folded_projection(self, scale: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight ``(C, C)`` and bias ``(C,)`` of ``norm(conv(x * scale))`` for an eval-mode batch norm."""
        conv = self.projection.conv
        norm = self.projection.norm
        inv_std = torch.rsqrt(norm.running_var + norm.eps)
        shift = -norm.running_mean * inv_std
        if norm.weight is not None:
            inv_std = inv_std * norm.weight
            shift = shift * norm.weight + norm.bias
        weight = conv.weight.reshape(self.in_channels, self.in_channels) * scale.view(1, -1) * inv_std.view(-1, 1)
        return weight, shift


class ClassifierHead(nn.Module):
    """The baseline arm's head: a plain 1x1 convolution ``.classifier``, no DropClass branch.

    It takes the same ``drop_class`` argument as :class:`~medseg_dropclass.DropClassHead` so one
    training loop drives both arms, and refuses a class to drop.
    """

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_num_classes(num_classes)
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.classifier = Conv[Conv.CONV, spatial_dims](in_channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor, drop_class: Optional[int] = None) -> torch.Tensor:
        if drop_class is not None:
            raise ValueError(f"drop_class={drop_class} given to a network built with dropclass=False")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"ClassifierHead got a feature map with {x.shape[1]} channels; expected in_channels={self.in_channels}"
            )
        return pointwise_conv(x, self.classifier.weight, self.classifier.bias)
