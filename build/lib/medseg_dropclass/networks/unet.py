"""MONAI ``UNet`` as a feature network for a DropClass or plain classifier head."""

from typing import Sequence, Union

from monai.networks.layers.utils import get_norm_layer
from monai.networks.nets import UNet
from torch import nn

from medseg_dropclass.networks.registry import FeatureNetwork, register_network

__all__ = ["unet_features"]


@register_network("unet")
def unet_features(
    spatial_dims: int,
    in_channels: int,
    feature_channels: int = 32,
    channels: Sequence[int] = (32, 64, 128, 256),
    strides: Sequence[int] = (2, 2, 2),
    num_res_units: int = 2,
    norm: Union[str, tuple] = "instance",
    dropout: float = 0.0,
) -> FeatureNetwork:
    """MONAI ``UNet`` whose output is a ``feature_channels`` map, followed by norm + ReLU.

    MONAI's UNet ends in a plain convolution, not a 1x1 classifier, so it is built with
    ``out_channels=feature_channels`` and the head's classifier comes after it. The norm + ReLU
    make the features non-negative activations, as Grad-CAM importance ``ReLU(w_k)`` assumes.
    """
    unet = UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=feature_channels,
        channels=channels,
        strides=strides,
        num_res_units=num_res_units,
        norm=norm,
        dropout=dropout,
    )
    module = nn.Sequential(
        unet, get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=feature_channels), nn.ReLU(inplace=True)
    )
    divisor = 1
    for stride in strides:
        divisor *= int(stride)
    return FeatureNetwork(module, feature_channels, divisor)
