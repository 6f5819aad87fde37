"""Dilated encoders for DeepLab-style networks, 1D/2D/3D: ResNet-18/34/50 and MobileNetV3-Large.

Each returns ``(low_level, high_level)``: features at stride 4 (for a DeepLabV3+ skip) and at the
``output_stride`` (8 or 16: the last stages use dilation instead of striding).
"""

from typing import List, Tuple

import torch
from monai.networks.layers.factories import Pool
from torch import nn

from medseg_dropclass.networks.blocks import BLOCKS, NormType, conv, make_layer, norm_layer

__all__ = ["ResNetEncoder", "MobileNetV3Encoder", "RESNETS", "check_output_stride"]

RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def check_output_stride(output_stride: int) -> int:
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride={output_stride} is not supported; allowed: 8 or 16")
    return output_stride


class ResNetEncoder(nn.Module):
    """ResNet with torchvision's module names; ``width`` scales the channels (1.0: 64 after the stem).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        depth: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        width: channel multiplier (0.25 gives a CPU-sized network).
        output_stride: 8 or 16.
        norm: MONAI norm name.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        depth: str = "resnet50",
        width: float = 1.0,
        output_stride: int = 16,
        norm: NormType = "batch",
    ) -> None:
        super().__init__()
        if depth not in RESNETS:
            raise ValueError(f"unknown ResNet depth {depth!r}; allowed: {', '.join(RESNETS)}")
        check_output_stride(output_stride)
        block_name, layers = RESNETS[depth]
        block = BLOCKS[block_name]
        base = max(int(64 * width), 4)
        self.conv1 = conv(spatial_dims, in_channels, base, 7, stride=2)
        self.bn1 = norm_layer(spatial_dims, norm, base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=2, padding=1)
        # (stride, dilation) of layers 2-4: dilation replaces striding past the output stride
        plan = {16: [(2, 1), (2, 1), (1, 2)], 8: [(2, 1), (1, 2), (1, 4)]}[output_stride]
        self.layer1, channels = make_layer(spatial_dims, block, base, base, layers[0], norm=norm)
        self.low_channels = channels
        previous = 1
        for index, ((stride, dilation), blocks) in enumerate(zip(plan, layers[1:]), start=2):
            layer, channels = make_layer(
                spatial_dims, block, channels, base * 2 ** (index - 1), blocks, stride, dilation, previous, norm
            )
            setattr(self, f"layer{index}", layer)
            previous = dilation
        self.high_channels = channels

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return low, self.layer4(self.layer3(self.layer2(low)))


def _divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without going below 90% (MobileNet's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcitation(nn.Module):
    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        squeezed = _divisible(channels / 4)
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.fc1 = conv(spatial_dims, channels, squeezed, 1, bias=True)
        self.fc2 = conv(spatial_dims, squeezed, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))
        return x * scale


class InvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expand, depthwise kxk (stride or dilation), optional SE, 1x1 project."""

    def __init__(
        self,
        spatial_dims: int,
        inp: int,
        expanded: int,
        out: int,
        kernel: int,
        stride: int,
        dilation: int,
        use_se: bool,
        hard_swish: bool,
        norm: NormType,
    ) -> None:
        super().__init__()
        act = nn.Hardswish if hard_swish else nn.ReLU
        layers: List[nn.Module] = []
        if expanded != inp:
            layers += [
                conv(spatial_dims, inp, expanded, 1),
                norm_layer(spatial_dims, norm, expanded),
                act(inplace=True),
            ]
        layers += [
            conv(spatial_dims, expanded, expanded, kernel, stride, dilation, groups=expanded),
            norm_layer(spatial_dims, norm, expanded),
            act(inplace=True),
        ]
        if use_se:
            layers.append(SqueezeExcitation(spatial_dims, expanded))
        layers += [conv(spatial_dims, expanded, out, 1), norm_layer(spatial_dims, norm, out)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and inp == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


# MobileNetV3-Large (Howard et al. 2019, table 1): kernel, expanded, out, SE, hard-swish, stride
MOBILENETV3_LARGE = [
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
]


class MobileNetV3Encoder(nn.Module):
    """MobileNetV3-Large with inverted residuals, squeeze-excitation and hard-swish; ``width`` scales channels."""

    def __init__(
        self, spatial_dims: int, in_channels: int, width: float = 1.0, output_stride: int = 16, norm: NormType = "batch"
    ) -> None:
        super().__init__()
        check_output_stride(output_stride)
        stem = _divisible(16 * width)
        self.stem = nn.Sequential(
            conv(spatial_dims, in_channels, stem, 3, 2),
            norm_layer(spatial_dims, norm, stem),
            nn.Hardswish(inplace=True),
        )
        blocks: List[nn.Module] = []
        channels, stride_so_far, dilation = stem, 2, 1
        self.low_index = 0
        for index, (kernel, expanded, out, se, hs, stride) in enumerate(MOBILENETV3_LARGE):
            if stride_so_far * stride > output_stride:
                dilation *= stride
                stride = 1
            stride_so_far *= stride
            out_channels = _divisible(out * width)
            blocks.append(
                InvertedResidual(
                    spatial_dims,
                    channels,
                    _divisible(expanded * width),
                    out_channels,
                    kernel,
                    stride,
                    dilation,
                    se,
                    hs,
                    norm,
                )
            )
            channels = out_channels
            if stride_so_far == 4:
                self.low_index, self.low_channels = index, channels
        self.blocks = nn.ModuleList(blocks)
        last = _divisible(960 * width)
        self.last = nn.Sequential(
            conv(spatial_dims, channels, last, 1), norm_layer(spatial_dims, norm, last), nn.Hardswish(inplace=True)
        )
        self.high_channels = last

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        low = x
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == self.low_index:
                low = x
        return low, self.last(x)
