import pytest
import torch

from medseg_dropclass import build_network

# Published parameter counts of the Cityscapes segmentation models (3 input channels, 19 classes),
# from the official HRNet-Semantic-Segmentation repository's results table.
PUBLISHED = {"w18_small_v1": 1.5e6, "w18_small_v2": 3.9e6, "w48": 65.9e6}


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_preset_parameter_counts_within_five_percent(preset):
    net = build_network("hrnetv2", 2, 3, 19, dropclass=False, preset=preset)
    count = sum(p.numel() for p in net.parameters())
    assert abs(count - PUBLISHED[preset]) / PUBLISHED[preset] < 0.05, count


@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 1, 67, 45)), (3, (1, 2, 33, 35, 37))])
def test_shapes_and_stride_four_features(spatial_dims, shape):
    net = build_network("hrnetv2", spatial_dims, shape[1], 4, preset="tiny")
    out = net(torch.randn(*shape), drop_class=3)
    assert out.logits.shape == out.dropped_logits.shape == (shape[0], 4) + shape[2:]
    net.eval()
    padded = tuple(-(-s // 32) * 32 for s in shape[2:])
    with torch.no_grad():
        features = net.features(torch.randn(shape[0], shape[1], *padded))
    assert features.shape == (shape[0], 8 + 16 + 32 + 64) + tuple(s // 4 for s in padded)
    assert net.head.in_channels == 120


def test_official_module_names():
    keys = build_network("hrnetv2", 2, 3, 19, preset="w18_small_v2").features.state_dict().keys()
    for key in (
        "conv1.weight",
        "bn2.running_var",
        "layer1.1.conv3.weight",
        "transition1.1.0.0.weight",
        "stage2.0.branches.1.0.conv1.weight",
        "stage4.1.fuse_layers.3.0.0.0.weight",
        "last_layer.0.weight",
    ):
        assert key in keys, key


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown HRNet preset 'w32'; allowed: w18_small_v1, w18_small_v2, w48, tiny"):
        build_network("hrnetv2", 2, 1, 3, preset="w32")
    net = build_network("hrnetv2", 2, 1, 3, preset="tiny")
    with pytest.raises(
        ValueError, match=r"input spatial size \[16, 64\] is too small for this network: every size must be >= 32"
    ):
        net(torch.randn(1, 1, 16, 64))
