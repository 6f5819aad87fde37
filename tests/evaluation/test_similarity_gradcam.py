import pytest
import torch

from medseg_dropclass import build_network
from medseg_dropclass.evaluation import (
    class_gradcam,
    class_weight_similarity,
    save_gradcam_overlays,
    similarity_summary,
)


def test_class_weight_similarity_values():
    weight = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]).view(3, 2, 1, 1)
    similarity = class_weight_similarity(weight)
    expected = torch.tensor([[1, 0, 0.5**0.5], [0, 1, 0.5**0.5], [0.5**0.5, 0.5**0.5, 1]], dtype=torch.float64)
    torch.testing.assert_close(similarity, expected)
    summary = similarity_summary(similarity, [0.7, 0.29, 0.01])
    assert summary["most_frequent_class"] == 0 and summary["least_frequent_class"] == 2
    assert summary["least_frequent_mean_similarity"] == pytest.approx(0.5**0.5)
    assert summary["most_frequent_mean_similarity"] == pytest.approx(0.5**0.5 / 2)


@pytest.mark.parametrize("spatial_dims, shape", [(2, (1, 40, 36)), (3, (1, 16, 20, 12))])
def test_gradcam_shapes_and_range(spatial_dims, shape, tmp_path):
    net = build_network("unet", spatial_dims, 1, 3, feature_channels=8, channels=(8, 16), strides=(2,))
    image = torch.randn(*shape)
    for k in range(3):
        cam = class_gradcam(net, image, k)
        assert cam.shape == shape[1:] and torch.isfinite(cam).all()
        assert float(cam.min()) >= 0 and float(cam.max()) <= 1
    assert net.training  # mode restored
    path = save_gradcam_overlays(net, image, ["bg", "a", "b"], str(tmp_path / "cam.png"))
    assert path.stat().st_size > 2000


class _LinearNet(torch.nn.Module):
    """features = a 1x1 conv (identity weights), head = a 1x1 classifier: Grad-CAM has a closed form."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        channels = weight.shape[1]
        self.features = torch.nn.Conv2d(channels, channels, 1, bias=False)
        self.head = torch.nn.Conv2d(channels, weight.shape[0], 1)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
            self.head.weight.copy_(weight.view(*weight.shape, 1, 1))
            self.head.bias.copy_(bias)

    def forward(self, x):
        return self.head(self.features(x))


def test_gradcam_values_match_the_closed_form():
    """score_k = sum over predicted-k pixels of (w_k . A + b_k), so dScore/dA_c = w_kc * mask and the
    channel weight is w_kc * (share of pixels predicted k); cam = ReLU(sum_c weight_c A_c) / max."""
    torch.manual_seed(0)
    weight, bias = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 2.0, 0.5], [0.2, 0.1, -2.0]]), torch.tensor([0.1, 0.0, -0.3])
    net = _LinearNet(weight, bias)
    image = torch.randn(3, 12, 10)
    logits = torch.einsum("kc,chw->khw", weight, image) + bias.view(3, 1, 1)
    for k in range(3):
        mask = logits.argmax(0) == k
        share = mask.float().mean() if mask.any() else torch.tensor(1.0)
        cam = torch.relu(torch.einsum("c,chw->hw", weight[k] * share, image))
        expected = cam / cam.max() if cam.max() > 0 else cam
        torch.testing.assert_close(class_gradcam(net, image, k), expected, atol=1e-5, rtol=1e-5)
