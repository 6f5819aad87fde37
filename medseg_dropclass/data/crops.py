"""nnU-Net-style class-balanced patch sampling: a share of the crops centred on a foreground class.

MONAI's ``OneOf`` cannot fall back to a random crop when a case holds no foreground, so this small
transform chooses per crop and delegates the cropping itself to MONAI.
"""

from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandCropByLabelClassesd, Randomizable, RandSpatialCropd

__all__ = ["RandBalancedCropd"]


class RandBalancedCropd(Randomizable, MapTransform):
    """Return ``num_samples`` crops of ``spatial_size``: each, with probability ``foreground_share``,
    centred on a voxel of a foreground class drawn uniformly among the classes present in the case,
    otherwise at a uniformly random position.

    Args:
        keys: the keys cropped together (image and label).
        label_key: the label (used only through ``indices_key``).
        spatial_size: crop size.
        num_classes: classes ``K``; class 0 is background and never a crop centre class.
        indices_key: the per-class voxel indices that ``ClassesToIndicesd`` stored (cached once per case).
        foreground_share: the share of crops centred on foreground (nnU-Net: 1/3).
        num_samples: crops per case.

    Returns:
        A list of ``num_samples`` dictionaries, as MONAI's multi-sample crops do.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str,
        spatial_size: Sequence[int],
        num_classes: int,
        indices_key: str,
        foreground_share: float = 1.0 / 3.0,
        num_samples: int = 1,
    ) -> None:
        MapTransform.__init__(self, keys)
        if not 0.0 <= foreground_share <= 1.0:
            raise ValueError(f"foreground_share={foreground_share} is outside 0..1")
        self.indices_key, self.num_classes, self.foreground_share = indices_key, num_classes, float(foreground_share)
        self.num_samples = int(num_samples)
        self.random_crop = RandSpatialCropd(keys, roi_size=spatial_size, random_size=False)
        self.class_crop = RandCropByLabelClassesd(
            keys, label_key=label_key, spatial_size=spatial_size, num_classes=num_classes,
            ratios=[0.0] + [1.0] * (num_classes - 1), num_samples=1, indices_key=indices_key, warn=False,
        )

    def set_random_state(self, seed: Optional[int] = None, state: Optional[np.random.RandomState] = None) -> "RandBalancedCropd":
        super().set_random_state(seed, state)
        self.random_crop.set_random_state(state=self.R)
        self.class_crop.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        pass

    def has_foreground(self, data: Mapping[Hashable, Any]) -> bool:
        indices = data[self.indices_key]
        return any(len(indices[k]) > 0 for k in range(1, self.num_classes))

    def __call__(self, data: Mapping[Hashable, Any]) -> List[Dict[Hashable, Any]]:
        foreground = self.has_foreground(data)
        crops = []
        for _ in range(self.num_samples):
            centred = foreground and self.R.rand() < self.foreground_share
            crops.append(self.class_crop(dict(data))[0] if centred else self.random_crop(dict(data)))
        return crops
