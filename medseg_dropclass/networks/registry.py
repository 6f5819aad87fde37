"""Registry of feature networks and ``build_network``, the one factory for both arms."""

from typing import Any, Callable, Dict, NamedTuple, Union

from torch import nn

from medseg_dropclass.dropclass.head import DropClassHead, check_spatial_dims
from medseg_dropclass.networks.segmentation_net import ClassifierHead, SegmentationNet
from medseg_dropclass.validation import check_num_classes

__all__ = ["FeatureNetwork", "register_network", "build_network", "NETWORKS"]


class FeatureNetwork(NamedTuple):
    """A network that ends at a feature map.

    Attributes:
        module: ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``.
        out_channels: channels of the feature map.
        size_divisor: input sizes must be a multiple of this (others are padded).
        output_stride: the feature map is this many times smaller than the input; the head runs at
            that resolution and the logits are interpolated to the input size (DeepLab, HRNet).
    """

    module: nn.Module
    out_channels: int
    size_divisor: int
    output_stride: int = 1


FeatureBuilder = Callable[..., FeatureNetwork]
NETWORKS: Dict[str, FeatureBuilder] = {}


def register_network(name: str) -> Callable[[FeatureBuilder], FeatureBuilder]:
    """Register ``builder(spatial_dims, in_channels, **kwargs) -> FeatureNetwork`` under ``name``."""

    def decorator(builder: FeatureBuilder) -> FeatureBuilder:
        if name in NETWORKS and NETWORKS[name] is not builder:
            raise ValueError(f"a network named {name!r} is already registered")
        NETWORKS[name] = builder
        return builder

    return decorator


def build_network(
    name: str,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    dropclass: bool = True,
    head_norm: Union[str, tuple] = "batch",
    inference_path: str = "projection",
    detach_dropped_class: bool = False,
    **network_kwargs: Any,
) -> SegmentationNet:
    """Build a registered network with a DropClass head (``dropclass=True``) or a plain 1x1 classifier.

    Both arms share the feature network, so ``dropclass=False`` is the baseline of a comparison.

    Args:
        name: a registered network (``"unet"``, ``"segresnet"``, ...).
        spatial_dims: 2 or 3 for the MONAI networks (1 where the network supports it).
        in_channels: image channels.
        num_classes: classes ``K`` (>= 2).
        dropclass: DropClass head or plain classifier.
        head_norm, inference_path, detach_dropped_class: passed to :class:`~medseg_dropclass.DropClassHead`.
        network_kwargs: passed to the feature network's builder (e.g. ``feature_channels``).
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; registered: {', '.join(sorted(NETWORKS))}")
    check_spatial_dims(spatial_dims)
    if in_channels < 1:
        raise ValueError(f"in_channels={in_channels} must be >= 1")
    check_num_classes(num_classes)
    features = NETWORKS[name](spatial_dims, in_channels, **network_kwargs)
    if dropclass:
        head: nn.Module = DropClassHead(
            spatial_dims,
            features.out_channels,
            num_classes,
            norm=head_norm,
            inference_path=inference_path,
            detach_dropped_class=detach_dropped_class,
        )
    else:
        head = ClassifierHead(spatial_dims, features.out_channels, num_classes)
    return SegmentationNet(
        features.module, head, spatial_dims, in_channels, features.size_divisor, features.output_stride
    )
