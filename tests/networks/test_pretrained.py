import pytest
import torch

from medseg_dropclass import build_network
from medseg_dropclass.networks.encoders import ResNetEncoder
from medseg_dropclass.networks.pretrained import load_pretrained


def test_checkpoint_with_wrapper_and_prefix_loads_and_reports(tmp_path):
    source = ResNetEncoder(2, 3, "resnet18", width=0.25)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(10, 128)  # an ImageNet classifier the encoder does not have
    path = tmp_path / "imagenet.pth"
    torch.save({"state_dict": state}, path)
    target = ResNetEncoder(2, 3, "resnet18", width=0.25)
    report = load_pretrained(target, path)
    assert report.unexpected == ["fc.weight"] and report.missing == [] and not report.mismatched
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    assert "unused from the checkpoint (1): ['fc.weight']" in str(report)


def test_network_builder_loads_encoder_weights_and_reports_shape_mismatches(tmp_path, caplog):
    source = ResNetEncoder(2, 1, "resnet18", width=0.125)
    state = source.state_dict()
    state["conv1.weight"] = torch.zeros(8, 3, 7, 7)  # RGB stem against a 1-channel model
    torch.save(state, tmp_path / "enc.pt")
    with caplog.at_level("INFO"):
        net = build_network(
            "deeplabv3",
            2,
            1,
            3,
            encoder="resnet18",
            width=0.125,
            aspp_channels=8,
            decoder_channels=8,
            pretrained=str(tmp_path / "enc.pt"),
        )
    assert torch.equal(net.features.encoder.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert "shape mismatch conv1.weight: checkpoint (8, 3, 7, 7) vs model (8, 1, 7, 7)" in caplog.text


def test_no_matching_keys_and_missing_file(tmp_path):
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(
        ValueError,
        match=r"other.pt: no tensor matches the model by name and shape; checkpoint keys start \['something.else'\]",
    ):
        build_network("hrnetv2", 2, 1, 3, preset="tiny", pretrained=str(tmp_path / "other.pt"))
    with pytest.raises(FileNotFoundError, match=r"missing.pt does not exist \(weights are never downloaded here\)"):
        build_network("hrnetv2", 2, 1, 3, preset="tiny", pretrained=str(tmp_path / "missing.pt"))
