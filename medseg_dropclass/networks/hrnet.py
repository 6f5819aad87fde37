"""HRNetV2-style feature network, 1D/2D/3D: parallel multi-resolution branches with repeated fusion.

The four branches' outputs are upsampled to the highest-resolution branch (stride 4) and
concatenated, passed through ``last_layer`` (1x1 conv + norm + ReLU, as in the official
segmentation HRNet and the DropClass authors' code), and the head runs on that map; the logits
are interpolated to the input size. Module names follow the official HRNet code (``conv1``,
``layer1``, ``transition1``, ``stage2``, ...) so its ImageNet checkpoints load by name.

Presets (Wang et al., "Deep High-Resolution Representation Learning for Visual Recognition",
TPAMI 2020; configurations of the official HRNet-Semantic-Segmentation repository, also used by
the DropClass authors' experiments). Published parameter counts of the Cityscapes models
(3 input channels, 19 classes, classifier included), from that repository's results table:

=============  =========  =====================================
preset         published  this implementation (2D, 3 -> 19)
=============  =========  =====================================
w18_small_v1   1.5M       see ``tests/networks/test_hrnet.py``
w18_small_v2   3.9M       (within 5%, tested)
w48            65.9M
=============  =========  =====================================

``tiny`` is a CPU-sized configuration for tests.
"""

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from medseg_dropclass.networks.blocks import (
    BLOCKS,
    NormType,
    conv,
    interpolation_mode,
    make_layer,
    norm_layer,
    upsample_to,
)
from medseg_dropclass.networks.pretrained import load_pretrained
from medseg_dropclass.networks.registry import FeatureNetwork, register_network

__all__ = ["HRNetConfig", "HRNET_PRESETS", "HRNetFeatures", "hrnetv2_features"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageConfig:
    modules: int
    blocks: Tuple[int, ...]
    channels: Tuple[int, ...]
    block: str = "basic"


@dataclass(frozen=True)
class HRNetConfig:
    stem_channels: int
    stage1: StageConfig
    stage2: StageConfig
    stage3: StageConfig
    stage4: StageConfig


HRNET_PRESETS: Dict[str, HRNetConfig] = {
    "w18_small_v1": HRNetConfig(
        64,
        StageConfig(1, (1,), (32,), "bottleneck"),
        StageConfig(1, (2, 2), (16, 32)),
        StageConfig(1, (2, 2, 2), (16, 32, 64)),
        StageConfig(1, (2, 2, 2, 2), (16, 32, 64, 128)),
    ),
    "w18_small_v2": HRNetConfig(
        64,
        StageConfig(1, (2,), (64,), "bottleneck"),
        StageConfig(1, (2, 2), (18, 36)),
        StageConfig(3, (2, 2, 2), (18, 36, 72)),
        StageConfig(2, (2, 2, 2, 2), (18, 36, 72, 144)),
    ),
    "w48": HRNetConfig(
        64,
        StageConfig(1, (4,), (64,), "bottleneck"),
        StageConfig(1, (4, 4), (48, 96)),
        StageConfig(4, (4, 4, 4), (48, 96, 192)),
        StageConfig(3, (4, 4, 4, 4), (48, 96, 192, 384)),
    ),
    "tiny": HRNetConfig(
        16,
        StageConfig(1, (1,), (8,), "bottleneck"),
        StageConfig(1, (1, 1), (8, 16)),
        StageConfig(1, (1, 1, 1), (8, 16, 32)),
        StageConfig(1, (1, 1, 1, 1), (8, 16, 32, 64)),
    ),
}


def _conv_norm(
    spatial_dims: int, in_channels: int, out_channels: int, kernel: int, stride: int, norm: NormType, relu: bool
) -> nn.Sequential:
    layers: List[nn.Module] = [
        conv(spatial_dims, in_channels, out_channels, kernel, stride),
        norm_layer(spatial_dims, norm, out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of residual blocks, then every branch fused into every other.

    Fusion into a higher resolution: 1x1 conv + norm, then interpolation; into a lower one:
    strided 3x3 convs (one per halving). Sums are followed by ReLU.
    """

    def __init__(self, spatial_dims: int, in_channels: List[int], stage: StageConfig, norm: NormType) -> None:
        super().__init__()
        block = BLOCKS[stage.block]
        self.mode = interpolation_mode(spatial_dims)
        branches = []
        out_channels = []
        for i, (blocks, channels) in enumerate(zip(stage.blocks, stage.channels)):
            layer, out = make_layer(spatial_dims, block, in_channels[i], channels, blocks, norm=norm)
            branches.append(layer)
            out_channels.append(out)
        self.branches = nn.ModuleList(branches)
        self.out_channels = out_channels
        fuse_layers = []
        n = len(out_channels)
        for i in range(n if n > 1 else 0):
            row = []
            for j in range(n):
                if j > i:
                    row.append(_conv_norm(spatial_dims, out_channels[j], out_channels[i], 1, 1, norm, relu=False))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = [
                        _conv_norm(spatial_dims, out_channels[j], out_channels[j], 3, 2, norm, relu=True)
                        for _ in range(i - j - 1)
                    ]
                    steps.append(_conv_norm(spatial_dims, out_channels[j], out_channels[i], 3, 2, norm, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: List[torch.Tensor]) -> List[torch.Tensor]:
        x = list(x)
        for i, branch in enumerate(self.branches):
            x[i] = branch(x[i])
        if len(self.fuse_layers) == 0:
            return x
        fused: List[torch.Tensor] = []
        for i, row in enumerate(self.fuse_layers):
            total = x[i]
            for j, layer in enumerate(row):
                if j != i:
                    y = layer(x[j])
                    total = total + (upsample_to(y, x[i], self.mode) if j > i else y)
            fused.append(self.relu(total))
        return fused


class HRNetFeatures(nn.Module):
    """Stem (two strided 3x3 convs, stride 4), four stages, concatenation at stride 4, ``last_layer``."""

    def __init__(self, spatial_dims: int, in_channels: int, config: HRNetConfig, norm: NormType = "batch") -> None:
        super().__init__()
        stem = config.stem_channels
        self.mode = interpolation_mode(spatial_dims)
        self.conv1 = conv(spatial_dims, in_channels, stem, 3, 2)
        self.bn1 = norm_layer(spatial_dims, norm, stem)
        self.conv2 = conv(spatial_dims, stem, stem, 3, 2)
        self.bn2 = norm_layer(spatial_dims, norm, stem)
        self.relu = nn.ReLU(inplace=True)
        stage1 = config.stage1
        self.layer1, channels = make_layer(
            spatial_dims, BLOCKS[stage1.block], stem, stage1.channels[0], stage1.blocks[0], norm=norm
        )
        previous = [channels]
        for index, stage in ((1, config.stage2), (2, config.stage3), (3, config.stage4)):
            expansion = BLOCKS[stage.block].expansion
            wanted = [c * expansion for c in stage.channels]
            setattr(self, f"transition{index}", self._transition(spatial_dims, previous, wanted, norm))
            modules = []
            current = wanted
            for _ in range(stage.modules):
                module = HighResolutionModule(spatial_dims, current, stage, norm)
                modules.append(module)
                current = module.out_channels
            setattr(self, f"stage{index + 1}", nn.ModuleList(modules))  # keys stage2.0, ... as in HRNet
            previous = current
        total = sum(previous)
        self.last_layer = nn.Sequential(
            conv(spatial_dims, total, total, 1, bias=True), norm_layer(spatial_dims, norm, total), nn.ReLU(inplace=True)
        )
        self.out_channels = total

    @staticmethod
    def _transition(spatial_dims: int, previous: List[int], wanted: List[int], norm: NormType) -> nn.ModuleList:
        layers = []
        for i, channels in enumerate(wanted):
            if i < len(previous):
                same = previous[i] == channels
                layers.append(
                    nn.Identity() if same else _conv_norm(spatial_dims, previous[i], channels, 3, 1, norm, relu=True)
                )
            else:  # a new, lower-resolution branch from the lowest existing one
                steps = [
                    _conv_norm(
                        spatial_dims,
                        previous[-1],
                        previous[-1] if k < i - len(previous) else channels,
                        3,
                        2,
                        norm,
                        relu=True,
                    )
                    for k in range(i + 1 - len(previous))
                ]
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        branches = [self.layer1(x)]
        # each transition feeds existing branches through and grows a new one from the lowest;
        # written out per stage so that TorchScript can unroll the module lists
        inputs: List[torch.Tensor] = []
        for i, layer in enumerate(self.transition1):
            inputs.append(layer(branches[min(i, len(branches) - 1)]))
        for module in self.stage2:
            inputs = module(inputs)
        branches = inputs
        inputs = []
        for i, layer in enumerate(self.transition2):
            inputs.append(layer(branches[min(i, len(branches) - 1)]))
        for module in self.stage3:
            inputs = module(inputs)
        branches = inputs
        inputs = []
        for i, layer in enumerate(self.transition3):
            inputs.append(layer(branches[min(i, len(branches) - 1)]))
        for module in self.stage4:
            inputs = module(inputs)
        branches = inputs
        first = branches[0]
        merged = torch.cat([first] + [upsample_to(b, first, self.mode) for b in branches[1:]], dim=1)
        return self.last_layer(merged)


@register_network("hrnetv2")
def hrnetv2_features(
    spatial_dims: int,
    in_channels: int,
    preset: str = "w18_small_v2",
    norm: NormType = "batch",
    pretrained: Optional[str] = None,
) -> FeatureNetwork:
    """HRNetV2 features for :func:`~medseg_dropclass.build_network` (``"hrnetv2"``).

    Args:
        preset: ``"w18_small_v1"``, ``"w18_small_v2"``, ``"w48"`` or ``"tiny"``.
        pretrained: a local checkpoint (e.g. official ImageNet HRNet weights); loaded by name and
            shape, missing and unused keys reported in the log.
    """
    if preset not in HRNET_PRESETS:
        raise ValueError(f"unknown HRNet preset {preset!r}; allowed: {', '.join(HRNET_PRESETS)}")
    module = HRNetFeatures(spatial_dims, in_channels, HRNET_PRESETS[preset], norm)
    if pretrained is not None:
        logger.info("%s", load_pretrained(module, pretrained))
    # four branches down to stride 32; the head runs at stride 4
    return FeatureNetwork(module, module.out_channels, 32, 4)
