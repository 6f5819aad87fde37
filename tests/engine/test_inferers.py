"""The slab-by-slab class map equals the argmax of MONAI's sliding-window scores."""

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from medseg_dropclass.engine.inferers import SlabArgmaxInferer


def _network(in_channels: int, classes: int, dims: int) -> torch.nn.Module:
    conv = [torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d][dims - 1]
    torch.manual_seed(0)
    return torch.nn.Sequential(
        conv(in_channels, 8, 3, padding=1), torch.nn.ReLU(), conv(8, classes, 3, padding=1)
    ).eval()


@pytest.mark.parametrize(
    "shape, roi, overlap, mode, batch",
    [
        ((40, 36, 30), (16, 16, 8), 0.25, "constant", 4),
        ((40, 36, 30), (16, 16, 8), 0.5, "gaussian", 3),
        ((20, 12, 5), (16, 16, 8), 0.25, "constant", 1),  # smaller than the window on two axes: padded as MONAI pads
        ((33, 29), (16, 12), (0.25, 0.6), "gaussian", 2),
    ],
)
def test_slab_class_map_equals_monai_sliding_window_argmax(shape, roi, overlap, mode, batch):
    network = _network(2, 5, len(shape))
    image = torch.randn(1, 2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = SlidingWindowInferer(roi, sw_batch_size=4, overlap=overlap, mode=mode)(image, network).argmax(
            1, keepdim=True
        )
    monai_inferer = SlidingWindowInferer(roi, sw_batch_size=batch, overlap=overlap, mode=mode)
    classes = SlabArgmaxInferer.like(monai_inferer)(image, network)
    assert classes.shape == (1, 1, *shape) and classes.dtype == torch.uint8
    assert torch.equal(classes.long(), expected)


def test_one_image_at_a_time():
    with pytest.raises(ValueError, match="one image at a time, got a batch of 2"):
        SlabArgmaxInferer((8, 8))(torch.zeros(2, 1, 8, 8), _network(1, 2, 2))
