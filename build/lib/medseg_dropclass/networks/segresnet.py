"""MONAI ``SegResNet`` as a feature network for a DropClass or plain classifier head."""

from typing import Sequence, Union

from monai.networks.layers.utils import get_norm_layer
from monai.networks.nets import SegResNet
from torch import nn

from medseg_dropclass.networks.registry import FeatureNetwork, register_network

__all__ = ["segresnet_features"]


@register_network("segresnet")
def segresnet_features(
    spatial_dims: int,
    in_channels: int,
    feature_channels: int = 16,
    blocks_down: Sequence[int] = (1, 2, 2, 4),
    blocks_up: Sequence[int] = (1, 1, 1),
    norm: Union[str, tuple] = ("group", {"num_groups": 8}),
    dropout: float = 0.0,
) -> FeatureNetwork:
    """MONAI ``SegResNet`` with ``use_conv_final=False``: the decoder's ``feature_channels`` map.

    SegResNet's own final block is norm + ReLU + 1x1 conv; this keeps the norm + ReLU and leaves
    the 1x1 conv to the head.
    """
    net = SegResNet(
        spatial_dims=spatial_dims,
        init_filters=feature_channels,
        in_channels=in_channels,
        out_channels=1,
        blocks_down=tuple(blocks_down),
        blocks_up=tuple(blocks_up),
        norm=norm,
        dropout_prob=dropout or None,
        use_conv_final=False,
    )
    module = nn.Sequential(
        net, get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=feature_channels), nn.ReLU(inplace=True)
    )
    return FeatureNetwork(module, feature_channels, 2 ** (len(blocks_down) - 1))
