"""Dimension-generic building blocks shared by the DeepLab and HRNet feature networks.

Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``downsample.0``, ...) so that a
2D ImageNet checkpoint downloaded elsewhere maps key for key (see ``pretrained.py``).
"""

from typing import List, Optional, Tuple, Type, Union

import torch
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_norm_layer
from torch import nn
from torch.nn import functional as F

from medseg_dropclass.validation import interpolation_mode

__all__ = [
    "conv",
    "norm_layer",
    "BasicBlock",
    "Bottleneck",
    "make_layer",
    "ASPP",
    "interpolation_mode",
    "NormType",
]

NormType = Union[str, tuple]


def conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = False,
) -> nn.Module:
    """A ``kernel_size`` convolution with 'same' padding (for stride 1) in 1D/2D/3D."""
    return Conv[Conv.CONV, spatial_dims](
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=dilation * (kernel_size - 1) // 2,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )


def norm_layer(spatial_dims: int, norm: NormType, channels: int) -> nn.Module:
    return get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=channels)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs and a residual connection."""

    expansion = 1

    def __init__(
        self,
        spatial_dims: int,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: Optional[nn.Module] = None,
        norm: NormType = "batch",
    ) -> None:
        super().__init__()
        self.conv1 = conv(spatial_dims, inplanes, planes, 3, stride, dilation)
        self.bn1 = norm_layer(spatial_dims, norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(spatial_dims, planes, planes, 3, 1, dilation)
        self.bn2 = norm_layer(spatial_dims, norm, planes)
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """ResNet bottleneck block: 1x1 reduce, 3x3, 1x1 expand (x4), residual."""

    expansion = 4

    def __init__(
        self,
        spatial_dims: int,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: Optional[nn.Module] = None,
        norm: NormType = "batch",
    ) -> None:
        super().__init__()
        self.conv1 = conv(spatial_dims, inplanes, planes, 1)
        self.bn1 = norm_layer(spatial_dims, norm, planes)
        self.conv2 = conv(spatial_dims, planes, planes, 3, stride, dilation)
        self.bn2 = norm_layer(spatial_dims, norm, planes)
        self.conv3 = conv(spatial_dims, planes, planes * self.expansion, 1)
        self.bn3 = norm_layer(spatial_dims, norm, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


Block = Type[Union[BasicBlock, Bottleneck]]
BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def make_layer(
    spatial_dims: int,
    block: Block,
    inplanes: int,
    planes: int,
    blocks: int,
    stride: int = 1,
    dilation: int = 1,
    first_dilation: Optional[int] = None,
    norm: NormType = "batch",
) -> Tuple[nn.Sequential, int]:
    """``blocks`` residual blocks; the first may stride and gets a 1x1 projection shortcut when needed.

    Returns the layer and its output channels.
    """
    downsample = None
    out_channels = planes * block.expansion
    if stride != 1 or inplanes != out_channels:
        downsample = nn.Sequential(
            conv(spatial_dims, inplanes, out_channels, 1, stride), norm_layer(spatial_dims, norm, out_channels)
        )
    first = dilation if first_dilation is None else first_dilation
    layers: List[nn.Module] = [block(spatial_dims, inplanes, planes, stride, first, downsample, norm)]
    layers += [block(spatial_dims, out_channels, planes, 1, dilation, None, norm) for _ in range(1, blocks)]
    return nn.Sequential(*layers), out_channels


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with an image-pooling branch (DeepLabV3), 1D/2D/3D.

    MONAI's ``SimpleASPP`` has no image-pooling branch, so this builds one from MONAI factories:
    a 1x1 branch, one 3x3 branch per dilation, and global average pooling -> 1x1 conv broadcast
    back; concatenated and projected to ``out_channels``. The pooling branch has a bias and no
    norm, so batches of one train (batch norm over a single pooled value per channel cannot).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        dilations=(6, 12, 18),
        norm: NormType = "batch",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        branches = [
            nn.Sequential(
                conv(spatial_dims, in_channels, out_channels, 1),
                norm_layer(spatial_dims, norm, out_channels),
                nn.ReLU(inplace=True),
            )
        ]
        for dilation in dilations:
            branches.append(
                nn.Sequential(
                    conv(spatial_dims, in_channels, out_channels, 3, dilation=dilation),
                    norm_layer(spatial_dims, norm, out_channels),
                    nn.ReLU(inplace=True),
                )
            )
        self.branches = nn.ModuleList(branches)
        self.pooling = nn.Sequential(
            Pool[Pool.ADAPTIVEAVG, spatial_dims](1),
            conv(spatial_dims, in_channels, out_channels, 1, bias=True),
            nn.ReLU(inplace=True),
        )
        total = out_channels * (len(dilations) + 2)
        self.project = nn.Sequential(
            conv(spatial_dims, total, out_channels, 1),
            norm_layer(spatial_dims, norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [branch(x) for branch in self.branches]
        outputs.append(self.pooling(x).expand_as(outputs[0]))
        return self.project(torch.cat(outputs, dim=1))


def upsample_to(x: torch.Tensor, reference: torch.Tensor, mode: str) -> torch.Tensor:
    """``x`` interpolated to the spatial size of ``reference``."""
    return F.interpolate(x, size=reference.shape[2:], mode=mode, align_corners=False)
