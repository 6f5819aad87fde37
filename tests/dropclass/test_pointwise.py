import pytest
import torch
import torch.nn.functional as F

from medseg_dropclass.dropclass._kernels.pointwise import pointwise_conv, projection_then_classifier


@pytest.mark.parametrize("spatial", [(7,), (5, 6), (3, 4, 5)])
def test_pointwise_conv_equals_convolution(spatial):
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(spatial)]
    x = torch.randn(2, 6, *spatial, dtype=torch.float64)
    weight = torch.randn(4, 6, *[1] * len(spatial), dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(pointwise_conv(x, weight, bias), conv(x, weight, bias))
    torch.testing.assert_close(pointwise_conv(x, weight), conv(x, weight))


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_projection_then_classifier_equals_unchunked(chunk):
    x = torch.randn(3, 5, 4, 6, dtype=torch.float64)
    w1, b1 = torch.randn(5, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    w2, b2 = torch.randn(3, 5, 1, 1, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    expected = F.conv2d(torch.relu(F.conv2d(x, w1.view(5, 5, 1, 1), b1)), w2, b2)
    with torch.no_grad():
        torch.testing.assert_close(projection_then_classifier(x, w1, b1, w2, b2, chunk=chunk), expected)
    x.requires_grad_()
    with_grad = projection_then_classifier(x, w1, b1, w2, b2, chunk=chunk)
    torch.testing.assert_close(with_grad, expected)
    with_grad.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    x = x.detach()
    torch.testing.assert_close(
        projection_then_classifier(x, w1, b1, w2, None, chunk=chunk), expected - b2.view(1, 3, 1, 1)
    )
