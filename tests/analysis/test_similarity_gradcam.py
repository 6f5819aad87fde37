import pytest
import torch

from medseg_dropclass import build_network
from medseg_dropclass.analysis import class_gradcam, class_weight_similarity, save_gradcam_overlays, similarity_summary


def test_class_weight_similarity_values():
    weight = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]).view(3, 2, 1, 1)
    similarity = class_weight_similarity(weight)
    expected = torch.tensor([[1, 0, 0.5 ** 0.5], [0, 1, 0.5 ** 0.5], [0.5 ** 0.5, 0.5 ** 0.5, 1]], dtype=torch.float64)
    torch.testing.assert_close(similarity, expected)
    summary = similarity_summary(similarity, [0.7, 0.29, 0.01])
    assert summary["most_frequent_class"] == 0 and summary["least_frequent_class"] == 2
    assert summary["least_frequent_mean_similarity"] == pytest.approx(0.5 ** 0.5)
    assert summary["most_frequent_mean_similarity"] == pytest.approx(0.5 ** 0.5 / 2)


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
