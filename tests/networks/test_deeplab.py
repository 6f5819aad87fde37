import pytest
import torch

from medseg_dropclass import build_network
from medseg_dropclass.networks.encoders import MobileNetV3Encoder, ResNetEncoder

SMALL = {"width": 0.125, "aspp_channels": 8, "decoder_channels": 8}


@pytest.mark.parametrize("encoder", ["resnet18", "resnet50", "mobilenetv3"])
@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 3, 67, 45)), (3, (1, 1, 33, 35, 37))])
def test_shapes_both_arms(encoder, spatial_dims, shape):
    for dropclass in (True, False):
        net = build_network("deeplabv3", spatial_dims, shape[1], 5, dropclass=dropclass, encoder=encoder, **SMALL)
        out = net(torch.randn(*shape), drop_class=1) if dropclass else net(torch.randn(*shape))
        logits = out.logits if dropclass else out
        assert logits.shape == (shape[0], 5) + shape[2:]
        if dropclass:
            assert out.dropped_logits.shape == logits.shape
        net.eval()
        with torch.no_grad():
            assert net(torch.randn(*shape)).shape == (shape[0], 5) + shape[2:]


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("encoder_type", [ResNetEncoder, MobileNetV3Encoder])
def test_encoder_output_stride(output_stride, encoder_type):
    encoder = encoder_type(2, 1, width=0.25, output_stride=output_stride)
    low, high = encoder(torch.randn(1, 1, 64, 96))
    assert low.shape[2:] == (16, 24) and low.shape[1] == encoder.low_channels
    assert high.shape[2:] == (64 // output_stride, 96 // output_stride) and high.shape[1] == encoder.high_channels


@pytest.mark.parametrize("skip, stride", [(True, 4), (False, 16)])
def test_decoder_resolution_and_logit_upsampling(skip, stride):
    net = build_network("deeplabv3", 2, 1, 3, encoder="resnet18", skip=skip, **SMALL).eval()
    assert net.output_stride == stride
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        assert net.features(x).shape == (1, 8, 64 // stride, 96 // stride)
        assert net(x).shape == (1, 3, 64, 96)


def test_resnet50_layout_matches_torchvision_names():
    encoder = ResNetEncoder(2, 3, "resnet50")
    keys = encoder.state_dict().keys()
    for key in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.downsample.0.weight",
        "layer4.2.conv3.weight",
        "layer3.5.bn2.weight",
    ):
        assert key in keys
    assert sum(p.numel() for p in encoder.parameters()) == 23_508_032  # torchvision resnet50 without fc


def test_bad_arguments():
    with pytest.raises(
        ValueError, match=r"unknown encoder 'vgg16'; allowed: resnet18, resnet34, resnet50, mobilenetv3"
    ):
        build_network("deeplabv3", 2, 1, 3, encoder="vgg16")
    with pytest.raises(ValueError, match=r"output_stride=32 is not supported; allowed: 8 or 16"):
        build_network("deeplabv3", 2, 1, 3, output_stride=32)
    net = build_network("deeplabv3", 2, 1, 3, encoder="resnet18", **SMALL)
    with pytest.raises(
        ValueError, match=r"input spatial size \[8, 40\] is too small for this network: every size must be >= 16"
    ):
        net(torch.randn(1, 1, 8, 40))
    with pytest.raises(ValueError, match=r"input of shape \[1, 3, 32, 32\] does not fit the network: expected \(B, 1,"):
        net(torch.randn(1, 3, 32, 32))
