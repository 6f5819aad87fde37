"""Writing label maps of natural images (PNG) for the Cityscapes / VOC bundles."""

import os
from typing import Mapping, Optional

import numpy as np
import torch
from monai.transforms import MapTransform
from PIL import Image

from medseg_dropclass.data.files import output_stem
from medseg_dropclass.data.transforms import source_name

__all__ = ["SaveLabelPNGd"]


class SaveLabelPNGd(MapTransform):
    """Save a ``(1, H, W)`` (or ``(K, H, W)``, argmaxed) label map as an 8-bit PNG named after its source image.

    MONAI's PNG writer transposes images read with ``reverse_indexing=False``; this writes ``(H, W)`` as is.
    """

    def __init__(self, keys, output_dir: str, source_key: str = "image", postfix: str = "seg", output_names: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(keys)
        self.output_dir = output_dir
        self.source_key = source_key
        self.postfix = postfix
        self.output_names = dict(output_names or {})

    def __call__(self, data):
        d = dict(data)
        os.makedirs(self.output_dir, exist_ok=True)
        source = source_name(d, self.source_key)
        stem = self.output_names.get(source, output_stem(source))
        for key in self.key_iterator(d):
            label = torch.as_tensor(d[key]).detach().cpu()
            label = label.argmax(0) if label.shape[0] > 1 else label[0]
            Image.fromarray(label.numpy().astype(np.uint8)).save(os.path.join(self.output_dir, f"{stem}_{self.postfix}.png"))
        return d
