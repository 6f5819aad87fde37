"""Every registered network, both arms, 2D and 3D, odd sizes."""

import pytest
import torch

from medseg_dropclass import DropClassOutput, build_network
from medseg_dropclass.networks import NETWORKS, SegmentationNet

TINY = {
    "unet": {"feature_channels": 8, "channels": (8, 16, 32), "strides": (2, 2), "num_res_units": 1},
    "segresnet": {"feature_channels": 8, "blocks_down": (1, 1, 1), "blocks_up": (1, 1)},
    "deeplabv3": {"encoder": "resnet18", "width": 0.125, "aspp_channels": 8, "decoder_channels": 8, "output_stride": 8},
    "hrnetv2": {"preset": "tiny"},
}
SIZES = {2: (35, 42), 3: (33, 34, 37)}  # odd sizes, at least 32 (HRNet's fourth branch is at stride 32)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("dropclass", [True, False])
def test_output_shapes_odd_sizes(name, spatial_dims, dropclass):
    net = build_network(name, spatial_dims, in_channels=2, num_classes=5, dropclass=dropclass, **TINY[name])
    x = torch.randn(2, 2, *SIZES[spatial_dims])
    expected = (2, 5) + SIZES[spatial_dims]
    net.train()
    out = net(x, drop_class=1) if dropclass else net(x)
    if dropclass:
        assert isinstance(out, DropClassOutput)
        assert out.logits.shape == expected and out.dropped_logits.shape == expected and out.drop_class == 1
    else:
        assert isinstance(out, torch.Tensor) and out.shape == expected
    net.eval()
    with torch.no_grad():
        assert net(x).shape == expected


def test_all_registered_networks_are_covered():
    assert set(TINY) == set(NETWORKS)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_eval_path_is_torchscriptable(name, spatial_dims):
    net = build_network(name, spatial_dims, 1, 3, **TINY[name]).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(1, 1, *SIZES[spatial_dims])
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-5)
        traced = torch.jit.trace(net, x)
        torch.testing.assert_close(traced(x), net(x), atol=1e-5, rtol=1e-5)


def test_baseline_arm_shares_the_feature_network_and_has_a_classifier():
    torch.manual_seed(0)
    dropclass = build_network("unet", 2, 1, 4, dropclass=True, **TINY["unet"])
    torch.manual_seed(0)
    baseline = build_network("unet", 2, 1, 4, dropclass=False, **TINY["unet"])
    assert dropclass.features.state_dict().keys() == baseline.features.state_dict().keys()
    for (k, a), (_, b) in zip(dropclass.features.state_dict().items(), baseline.features.state_dict().items()):
        assert torch.equal(a, b), k
    assert baseline.head.classifier.weight.shape == dropclass.head.classifier.weight.shape == (4, 8, 1, 1)


@pytest.mark.parametrize("name", sorted(TINY))
def test_few_training_steps_reduce_the_loss(name):
    from medseg_dropclass import DropClassLoss

    torch.manual_seed(0)
    net = build_network(name, 2, 1, 3, **TINY[name]).train()
    generator = torch.Generator().manual_seed(0)
    # smooth blobs (a stride-4 head cannot resolve per-pixel noise)
    image = torch.nn.functional.interpolate(
        torch.randn(4, 1, 4, 4, generator=generator), size=(32, 32), mode="bilinear"
    )
    label = (image[:, 0] > 0.3).long() + (image[:, 0] > 1.0).long()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = DropClassLoss(alpha=1.0)

    def main_loss() -> float:  # the same quantity before and after: main-branch CE, nothing dropped
        with torch.no_grad():
            return loss_fn(net(image, drop_class=None), label, progress=0.0).item()

    before = main_loss()
    for step in range(30):
        optimizer.zero_grad()
        loss_fn(net(image, drop_class=step % 3 if step % 2 else None), label, progress=0.3).backward()
        optimizer.step()
    assert main_loss() < 0.6 * before


def test_padding_does_not_change_divisible_inputs():
    net = build_network("unet", 2, 1, 3, **TINY["unet"]).eval()
    x = torch.randn(1, 1, 16, 20)
    with torch.no_grad():
        direct = net.head(net.features(x))
        torch.testing.assert_close(net(x), direct)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown network 'vnet'; registered: deeplabv3, hrnetv2, segresnet, unet"):
        build_network("vnet", 2, 1, 3)
    with pytest.raises(ValueError, match=r"spatial_dims=4 is not supported"):
        build_network("unet", 4, 1, 3)
    with pytest.raises(ValueError, match=r"num_classes=1 is too small"):
        build_network("unet", 2, 1, 1, dropclass=False)
    net = build_network("unet", 2, 1, 3, **TINY["unet"])
    with pytest.raises(ValueError, match=r"input of shape \[1, 3, 16, 16\] does not fit the network: expected \(B, 1,"):
        net(torch.randn(1, 3, 16, 16))
    baseline = build_network("unet", 2, 1, 3, dropclass=False, **TINY["unet"])
    with pytest.raises(ValueError, match=r"drop_class=1 given to a network built with dropclass=False"):
        baseline(torch.randn(1, 1, 16, 16), drop_class=1)


@pytest.mark.parametrize("spatial_dims, shape", [(2, (1, 1, 18, 22)), (3, (1, 1, 10, 12, 14))])
def test_segmentation_net_is_head_of_features_padded_and_cropped(spatial_dims, shape):
    """The wiring class computes head(features(pad(x))) and crops back to the input size."""
    net = build_network("segresnet", spatial_dims, 1, 3, **TINY["segresnet"]).eval()
    assert isinstance(net, SegmentationNet) and net.size_divisor > 1
    x = torch.randn(*shape)
    pads = []
    for size in shape[:1:-1]:
        pads += [0, (-size) % net.size_divisor]
    with torch.no_grad():
        expected = net.head(net.features(torch.nn.functional.pad(x, pads)))
        expected = expected[(slice(None), slice(None)) + tuple(slice(0, s) for s in shape[2:])]
        out = net(x)
    assert out.shape == (1, 3) + shape[2:]
    torch.testing.assert_close(out, expected)
