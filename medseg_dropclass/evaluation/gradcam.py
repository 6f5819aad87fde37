"""Per-class Grad-CAM for segmentation networks in 2D and 3D, with hooks (no grad-cam package, no torchvision).

The class score is the sum of the class's logits over the pixels where it is predicted (all pixels
if it is predicted nowhere); the map is ``ReLU(sum_c mean(dScore/dA_c) * A_c)`` over the feature map
``A`` the head receives, upsampled to the input and scaled to ``[0, 1]``.
"""

import pathlib
from typing import Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from medseg_dropclass.evaluation.figures import save_figure
from medseg_dropclass.validation import interpolation_mode

__all__ = ["class_gradcam", "save_gradcam_overlays"]


def class_gradcam(
    network: torch.nn.Module, image: torch.Tensor, class_index: int, layer: Optional[torch.nn.Module] = None
) -> torch.Tensor:
    """Grad-CAM of ``class_index`` for one image.

    Args:
        network: a :class:`~medseg_dropclass.networks.SegmentationNet` (or any net with ``layer``).
        image: ``(C, *spatial)``.
        layer: the module whose output is the feature map; default ``network.features``.

    Returns:
        ``(*spatial)`` map in ``[0, 1]`` (zeros when the class gets no positive evidence).
    """
    layer = layer if layer is not None else network.features
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["features"] = output

    handle = layer.register_forward_hook(keep)
    was_training = network.training
    network.eval()
    try:
        with torch.enable_grad():
            logits = network(image[None].float())
            predicted = logits.argmax(1, keepdim=True) == class_index
            mask = predicted if bool(predicted.any()) else torch.ones_like(predicted)
            score = (logits[:, class_index : class_index + 1] * mask).sum()
            network.zero_grad(set_to_none=True)
            score.backward()
    finally:
        handle.remove()
        network.train(was_training)
    features, gradients = captured["features"], captured["features"].grad
    weights = gradients.mean(dim=tuple(range(2, gradients.ndim)), keepdim=True)
    cam = torch.relu((weights * features).sum(1, keepdim=True)).detach()
    mode = interpolation_mode(image.ndim - 1)
    cam = F.interpolate(cam, size=image.shape[1:], mode=mode, align_corners=False)[0, 0]
    peak = cam.max()
    return cam / peak if peak > 0 else cam


def save_gradcam_overlays(
    network: torch.nn.Module,
    image: torch.Tensor,
    class_names: Sequence[str],
    path: str,
    classes: Optional[Sequence[int]] = None,
) -> pathlib.Path:
    """One PNG: the image (middle slice in 3D) and a Grad-CAM overlay per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(classes) if classes is not None else list(range(len(class_names)))
    maps = [class_gradcam(network, image, k) for k in classes]

    def middle(volume: torch.Tensor) -> np.ndarray:
        volume = volume.detach().cpu()
        return (volume[..., volume.shape[-1] // 2] if volume.ndim == 3 else volume).numpy()

    grey = middle(image[0].float())
    figure, axes = plt.subplots(1, len(classes) + 1, figsize=(2.2 * (len(classes) + 1), 2.4))
    axes[0].imshow(grey.T, cmap="gray")
    axes[0].set_title("image", fontsize=8)
    for axis, k, cam in zip(axes[1:], classes, maps):
        axis.imshow(grey.T, cmap="gray")
        axis.imshow(middle(cam).T, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        axis.set_title(class_names[k], fontsize=8)
    for axis in axes:
        axis.axis("off")
    return save_figure(figure, path)
