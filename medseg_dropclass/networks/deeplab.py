"""DeepLabV3 / V3+-style feature network, 1D/2D/3D: dilated encoder, ASPP with image pooling, light decoder.

The DropClass (or plain) head runs on the decoder's map, at stride 4 with the V3+ skip from the
encoder's stride-4 stage or at the output stride without it, and the logits are interpolated to
the input size, as in DeepLab itself; running the head at the input size would multiply its cost
by 16 or more for no change in what it computes.
"""

import logging
from typing import Optional, Sequence

import torch
from torch import nn

from medseg_dropclass.networks.blocks import ASPP, NormType, conv, interpolation_mode, norm_layer, upsample_to
from medseg_dropclass.networks.encoders import RESNETS, MobileNetV3Encoder, ResNetEncoder, check_output_stride
from medseg_dropclass.networks.pretrained import load_pretrained
from medseg_dropclass.networks.registry import FeatureNetwork, register_network

__all__ = ["DeepLabFeatures", "deeplabv3_features", "ENCODERS"]

ENCODERS = tuple(RESNETS) + ("mobilenetv3",)
logger = logging.getLogger(__name__)


def _conv_norm_relu(
    spatial_dims: int, in_channels: int, out_channels: int, kernel: int, norm: NormType
) -> nn.Sequential:
    return nn.Sequential(
        conv(spatial_dims, in_channels, out_channels, kernel),
        norm_layer(spatial_dims, norm, out_channels),
        nn.ReLU(inplace=True),
    )


class DeepLabFeatures(nn.Module):
    """Encoder -> ASPP -> decoder; returns ``(B, decoder_channels, *spatial / stride)``.

    Args:
        encoder: a module returning ``(low_level, high_level)`` with ``low_channels``/``high_channels``.
        aspp_channels, aspp_dilations: ASPP width and dilation rates.
        decoder_channels: channels of the returned map (the head's ``C``).
        skip: DeepLabV3+ decoder (fuse the stride-4 features, 48 channels after a 1x1 reduction).
    """

    def __init__(
        self,
        spatial_dims: int,
        encoder: nn.Module,
        aspp_channels: int,
        aspp_dilations: Sequence[int],
        decoder_channels: int,
        skip: bool,
        norm: NormType,
        dropout: float,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.aspp = ASPP(spatial_dims, encoder.high_channels, aspp_channels, tuple(aspp_dilations), norm, dropout)
        self.skip = skip
        self.mode = interpolation_mode(spatial_dims)
        if skip:
            reduced = 48
            self.reduce = _conv_norm_relu(spatial_dims, encoder.low_channels, reduced, 1, norm)
            self.decoder = nn.Sequential(
                _conv_norm_relu(spatial_dims, aspp_channels + reduced, decoder_channels, 3, norm),
                _conv_norm_relu(spatial_dims, decoder_channels, decoder_channels, 3, norm),
            )
        else:
            self.reduce = nn.Identity()
            self.decoder = _conv_norm_relu(spatial_dims, aspp_channels, decoder_channels, 3, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.encoder(x)
        context = self.aspp(high)
        if self.skip:
            context = torch.cat([upsample_to(context, low, self.mode), self.reduce(low)], dim=1)
        return self.decoder(context)


@register_network("deeplabv3")
def deeplabv3_features(
    spatial_dims: int,
    in_channels: int,
    encoder: str = "resnet50",
    width: float = 1.0,
    output_stride: int = 16,
    aspp_channels: int = 256,
    aspp_dilations: Optional[Sequence[int]] = None,
    decoder_channels: int = 256,
    skip: bool = True,
    norm: NormType = "batch",
    dropout: float = 0.1,
    pretrained: Optional[str] = None,
) -> FeatureNetwork:
    """DeepLabV3(+) features for :func:`~medseg_dropclass.build_network` (``"deeplabv3"``).

    Args:
        encoder: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"mobilenetv3"`` (Large).
        width: channel multiplier of the encoder (0.25: a CPU-sized network).
        output_stride: 8 or 16 (the last stages dilate instead of striding).
        aspp_dilations: default ``(6, 12, 18)`` at stride 16 and ``(12, 24, 36)`` at stride 8.
        decoder_channels: channels the head sees (256 in DeepLab; less is cheaper on CPU).
        skip: DeepLabV3+ decoder with the stride-4 skip (head at stride 4) or plain V3 (head at the output stride).
        pretrained: a local checkpoint for the encoder (e.g. torchvision ImageNet ResNet weights);
            loaded by name and shape, with a report of missing and unused keys in the log.
    """
    check_output_stride(output_stride)
    if encoder in RESNETS:
        backbone: nn.Module = ResNetEncoder(spatial_dims, in_channels, encoder, width, output_stride, norm)
    elif encoder == "mobilenetv3":
        backbone = MobileNetV3Encoder(spatial_dims, in_channels, width, output_stride, norm)
    else:
        raise ValueError(f"unknown encoder {encoder!r}; allowed: {', '.join(ENCODERS)}")
    if pretrained is not None:
        logger.info("%s", load_pretrained(backbone, pretrained))
    if aspp_dilations is None:
        aspp_dilations = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
    module = DeepLabFeatures(
        spatial_dims, backbone, aspp_channels, aspp_dilations, decoder_channels, skip, norm, dropout
    )
    return FeatureNetwork(module, decoder_channels, output_stride, 4 if skip else output_stride)
