"""Sliding-window inference of large volumes that keeps only the class map.

MONAI's ``SlidingWindowInferer`` returns the blended scores of every class for the whole volume (``K`` float32
copies of the image), which the postprocessing then softmaxes and resamples: about 20 times the input's size
for a 512x512x200 CT with 7 classes. :class:`SlabArgmaxInferer` runs the same windows (MONAI's own window grid,
padding and importance map), but slab by slab along the last axis: the blended scores live only for the slab
that windows still cover (``K x H x W x roi depth``), and each slice is reduced to its class index as soon as no
later window reaches it. The class of a voxel is the argmax of MONAI's blended scores (the division by the
window count, per voxel, does not change it; softmax does not either).
"""

from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers import Inferer, SlidingWindowInferer
from monai.inferers.utils import _get_scan_interval
from monai.utils import ensure_tuple_rep, fall_back_tuple

__all__ = ["SlabArgmaxInferer"]


class SlabArgmaxInferer(Inferer):
    """Sliding-window inference to a class map ``(1, 1, *spatial)`` (``uint8``), slab by slab along the last axis.

    Args:
        roi_size: window size (``(H, W, D)``; a value <= 0 takes the image's size on that axis, as in MONAI).
        sw_batch_size: windows per network call.
        overlap: window overlap per axis, as MONAI's.
        mode: ``"constant"`` or ``"gaussian"`` blending (MONAI's importance map).
        sigma_scale: the gaussian's sigma as a share of the window.
        padding_mode, cval: padding of an image smaller than the window (MONAI's defaults).
        progress: a progress bar over the windows.

    Memory beyond the input: the class map (1 byte a voxel) and one slab of ``K`` float32 scores.
    """

    def __init__(
        self,
        roi_size: Union[Sequence[int], int],
        sw_batch_size: int = 1,
        overlap: Union[Sequence[float], float] = 0.25,
        mode: str = "constant",
        sigma_scale: Union[Sequence[float], float] = 0.125,
        padding_mode: str = "constant",
        cval: float = 0.0,
        progress: bool = False,
    ) -> None:
        super().__init__()
        self.roi_size, self.sw_batch_size, self.overlap = roi_size, int(sw_batch_size), overlap
        self.mode, self.sigma_scale, self.padding_mode, self.cval, self.progress = (
            mode,
            sigma_scale,
            padding_mode,
            cval,
            progress,
        )

    @classmethod
    def like(cls, inferer: SlidingWindowInferer, progress: bool = False) -> "SlabArgmaxInferer":
        """The slab version of a configured ``SlidingWindowInferer`` (same windows, blending and padding)."""
        return cls(
            inferer.roi_size,
            inferer.sw_batch_size,
            inferer.overlap,
            str(inferer.mode),
            inferer.sigma_scale,
            str(inferer.padding_mode),
            inferer.cval,
            progress,
        )

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """``inputs`` ``(1, C, *spatial)`` -> class indices ``(1, 1, *spatial)`` (uint8)."""
        from tqdm import tqdm

        if inputs.shape[0] != 1:
            raise ValueError(f"SlabArgmaxInferer takes one image at a time, got a batch of {inputs.shape[0]}")
        inputs = (
            inputs.as_tensor() if hasattr(inputs, "as_tensor") else torch.as_tensor(inputs)
        )  # windows without metadata
        spatial = tuple(inputs.shape[2:])
        dims = len(spatial)
        roi = fall_back_tuple(self.roi_size, spatial)
        pad = []
        for k in range(dims - 1, -1, -1):  # MONAI's padding of an image smaller than the window, last axis first
            diff = max(roi[k] - spatial[k], 0)
            pad.extend([diff // 2, diff - diff // 2])
        if any(pad):
            inputs = F.pad(inputs, pad=pad, mode=self.padding_mode, value=self.cval)
        size = tuple(inputs.shape[2:])
        windows = dense_patch_slices(
            size, roi, _get_scan_interval(size, roi, dims, ensure_tuple_rep(self.overlap, dims))
        )
        importance = compute_importance_map(
            roi, mode=self.mode, sigma_scale=self.sigma_scale, device="cpu", dtype=inputs.dtype
        )
        starts = sorted({w[-1].start for w in windows})
        classes = torch.empty(size, dtype=torch.uint8)
        depth = roi[-1]
        scores: Optional[torch.Tensor] = (
            None  # (K, *size[:-1], depth): the slab [first, first + depth) of the last axis
        )
        bar = tqdm(total=len(windows), desc="windows", unit="window", disable=not self.progress, leave=False)
        for index, first in enumerate(starts):
            group = [w for w in windows if w[-1].start == first]
            for batch_start in range(0, len(group), self.sw_batch_size):
                batch = group[batch_start : batch_start + self.sw_batch_size]
                with torch.no_grad():
                    out = network(torch.cat([inputs[(slice(None), slice(None), *w)] for w in batch]), *args, **kwargs)
                out = torch.as_tensor(out).float() * importance
                if scores is None:
                    if out.shape[1] > 256:
                        raise ValueError(f"{out.shape[1]} classes do not fit a uint8 class map")
                    scores = torch.zeros((out.shape[1], *size[:-1], depth), dtype=torch.float32)
                for window, window_scores in zip(batch, out):
                    scores[(slice(None), *window[:-1], slice(0, depth))] += window_scores
                bar.update(len(batch))
            done = (
                starts[index + 1] if index + 1 < len(starts) else size[-1]
            ) - first  # slices no later window reaches
            classes[..., first : first + done] = scores[..., :done].argmax(0).to(torch.uint8)
            if index + 1 < len(starts):
                kept = depth - done
                scores[..., :kept] = scores[..., done:depth].clone()
                scores[..., kept:] = 0
        bar.close()
        if any(pad):
            crop = tuple(slice(pad[2 * (dims - 1 - k)], pad[2 * (dims - 1 - k)] + spatial[k]) for k in range(dims))
            classes = classes[crop]
        return classes[None, None]
