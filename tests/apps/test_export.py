"""Exported models (ONNX through onnxruntime, torch.export programs, TorchScript) equal the network they came from,
for every network family, in 2D and 3D, at sizes other than the one traced (padded to the size divisor inside)."""

import pathlib

import numpy as np
import pytest
import torch

from medseg_dropclass import build_network
from medseg_dropclass.apps.export import PARITY_TOLERANCE, export_network, load_exported, parity
from tests.cli_runner import run_cli

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

FAMILIES = [
    ("unet", 2, {"feature_channels": 8, "channels": (8, 16), "strides": (2,)}),
    ("unet", 3, {"feature_channels": 8, "channels": (8, 16), "strides": (2,)}),
    ("segresnet", 2, {"feature_channels": 8, "blocks_down": (1, 1), "blocks_up": (1,)}),
    ("segresnet", 3, {"feature_channels": 8, "blocks_down": (1, 1), "blocks_up": (1,)}),
    ("deeplabv3", 2, {"encoder": "resnet18", "width": 0.125, "aspp_channels": 8, "decoder_channels": 8}),
    ("deeplabv3", 2, {"encoder": "mobilenetv3", "width": 0.25, "aspp_channels": 8, "decoder_channels": 8}),
    ("hrnetv2", 2, {"preset": "tiny"}),
]


def tiny(name, dims, kwargs, dropclass=True):
    torch.manual_seed(0)
    network = build_network(name, dims, 1, 4, dropclass=dropclass, **kwargs).eval()
    for module in network.modules():  # non-trivial batch-norm statistics, so folding them is tested
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return network


@pytest.mark.parametrize(
    "name, dims, kwargs", FAMILIES, ids=[f"{n}-{d}d-{k.get('encoder', '')}" for n, d, k in FAMILIES]
)
def test_onnx_export_equals_the_network_at_other_sizes(name, dims, kwargs, tmp_path):
    network = tiny(name, dims, kwargs)
    size = 64 if dims == 2 else 32
    path = export_network(network, torch.zeros((1, 1) + (size,) * dims), str(tmp_path / "m.onnx"), "onnx")
    odd = (2, 1) + tuple(size - 7 + axis for axis in range(dims))  # not a multiple of the divisor, batch 2
    check = parity(network, str(path), "onnx", [(1, 1) + (size,) * dims, odd])
    assert check["max_abs"] <= PARITY_TOLERANCE, check


@pytest.mark.parametrize("name, dims, kwargs", [FAMILIES[1], FAMILIES[4]], ids=["unet-3d", "deeplab-2d"])
def test_exported_program_and_torchscript_equal_the_network(name, dims, kwargs, tmp_path):
    network = tiny(name, dims, kwargs)
    size = 64 if dims == 2 else 32
    for format, suffix in (("exported-program", ".pt2"), ("torchscript", ".ts")):
        path = export_network(network, torch.zeros((1, 1) + (size,) * dims), str(tmp_path / f"m{suffix}"), format)
        check = parity(network, str(path), format, [(1, 1) + (size + 16,) * dims, (1, 1) + (size - 5,) * dims])
        assert check["max_abs"] <= PARITY_TOLERANCE, (format, check)


def test_the_baseline_head_exports_too_and_an_unknown_format_is_refused(tmp_path):
    network = tiny("unet", 2, FAMILIES[0][2], dropclass=False)
    path = export_network(network, torch.zeros(1, 1, 32, 32), str(tmp_path / "b.onnx"), "onnx")
    run = load_exported(str(path), "onnx")
    image = np.random.default_rng(0).normal(size=(1, 1, 40, 24)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(run(image), network(torch.from_numpy(image)).numpy(), atol=PARITY_TOLERANCE)
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_network(network, torch.zeros(1, 1, 32, 32), str(tmp_path / "x"), "tflite")


def test_the_export_command_checks_parity_and_names_a_missing_checkpoint(tmp_path):
    done = run_cli(
        "export",
        "--bundle",
        "phantom2d_dropclass",
        "--format",
        "onnx",
        "--output",
        str(tmp_path / "m.onnx"),
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "max |logit difference|" in done.stdout and "(within " in done.stdout and (tmp_path / "m.onnx").is_file()
    done = run_cli("export", "--bundle", "phantom2d_dropclass", "--ckpt", str(tmp_path / "none.pt"), cwd=REPO_ROOT)
    assert done.returncode == 1 and "none.pt: no such checkpoint" in done.stderr
