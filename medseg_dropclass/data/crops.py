"""nnU-Net-style class-balanced patch sampling: a share of the crops centred on a foreground class.

MONAI's ``OneOf`` cannot fall back to a random crop when a case holds no foreground, so this small
transform chooses per crop and delegates the cropping itself to MONAI.

Case first (nnU-Net, the default): the loader draws a case, the crop a class present in it; a class present in
few cases, or always beside larger ones, is then centred in few patches. Class first
(:class:`ClassFirstSampler`): the loader draws the class (uniformly over the foreground classes, or by
``share ** -gamma``), then a case holding it, and the crop centres on that class there (the per-case class
lists come from the cached class indices, computed once).
"""

from typing import Any, Dict, Hashable, Iterator, List, Mapping, Optional, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandCropByLabelClassesd, Randomizable, RandSpatialCropd

__all__ = ["RandBalancedCropd", "ClassFirstSampler", "class_first_sampler", "encode_class_request", "case_first_only"]


def encode_class_request(case: int, class_index: int, num_cases: int) -> int:
    """The dataset index that asks for ``case`` with its crops centred on ``class_index`` (0: random crops)."""
    return int(case) + int(num_cases) * (int(class_index) + 1)


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
        # one class only, for a class-first request (set by the dataset for one sample: requested_class)
        self.single_class_crops = [
            RandCropByLabelClassesd(
                keys, label_key=label_key, spatial_size=spatial_size, num_classes=num_classes,
                ratios=[float(c == k) for c in range(num_classes)], num_samples=1, indices_key=indices_key, warn=False,
            )
            for k in range(num_classes)
        ]
        self.requested_class: Optional[int] = None

    def set_random_state(self, seed: Optional[int] = None, state: Optional[np.random.RandomState] = None) -> "RandBalancedCropd":
        super().set_random_state(seed, state)
        for crop in (self.random_crop, self.class_crop, *self.single_class_crops):
            crop.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        pass

    def has_foreground(self, data: Mapping[Hashable, Any]) -> bool:
        indices = data[self.indices_key]
        return any(len(indices[k]) > 0 for k in range(1, self.num_classes))

    def __call__(self, data: Mapping[Hashable, Any]) -> List[Dict[Hashable, Any]]:
        if self.requested_class is not None:  # class first: every crop of this sample centred on that class
            k = int(self.requested_class)
            if k == 0 or len(data[self.indices_key][k]) == 0:
                return [self.random_crop(dict(data)) for _ in range(self.num_samples)]
            return [self.single_class_crops[k](dict(data))[0] for _ in range(self.num_samples)]
        foreground = self.has_foreground(data)
        crops = []
        for _ in range(self.num_samples):
            centred = foreground and self.R.rand() < self.foreground_share
            crops.append(self.class_crop(dict(data))[0] if centred else self.random_crop(dict(data)))
        return crops


class ClassFirstSampler(torch.utils.data.Sampler):
    """Dataset indices that ask for the class first: per sample, with probability ``foreground_share``, a class
    ``k`` by ``class_weights`` among those present in some case, then a case holding ``k`` uniformly, its crops
    centred on ``k``; otherwise a case uniformly with random crops (:func:`encode_class_request`; the bundles'
    :class:`~medseg_dropclass.data.CacheDataset` decodes them for :class:`RandBalancedCropd`).

    The draws use a generator seeded from torch's global generator when an epoch starts (as torch's
    ``RandomSampler``), so a resumed run, whose torch state comes back from the checkpoint, draws the same.

    Args:
        case_classes: per case, the foreground classes it holds.
        class_weights: ``(K,)`` weights of the classes (class 0 and absent classes get none).
        num_samples: indices per epoch (default: one per case).
    """

    def __init__(
        self,
        case_classes: Sequence[Sequence[int]],
        class_weights: Sequence[float],
        foreground_share: float = 1.0 / 3.0,
        num_samples: Optional[int] = None,
    ) -> None:
        self.num_cases = len(case_classes)
        if self.num_cases == 0:
            raise ValueError("class-first sampling needs at least one case")
        self.cases_of: Dict[int, List[int]] = {}
        for case, classes in enumerate(case_classes):
            for k in classes:
                if k > 0:
                    self.cases_of.setdefault(int(k), []).append(case)
        weights = np.zeros(len(class_weights), dtype=np.float64)
        for k in self.cases_of:
            weights[k] = float(class_weights[k])
        self.classes = [k for k in sorted(self.cases_of) if weights[k] > 0]
        self.probabilities = torch.as_tensor(weights[self.classes] / weights[self.classes].sum() if self.classes else [])
        self.foreground_share, self.num_samples = float(foreground_share), int(num_samples or self.num_cases)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        for _ in range(self.num_samples):
            if self.classes and float(torch.rand((), generator=generator)) < self.foreground_share:
                k = self.classes[int(torch.multinomial(self.probabilities, 1, generator=generator))]
                cases = self.cases_of[k]
                case = cases[int(torch.randint(len(cases), (), generator=generator))]
            else:
                k, case = 0, int(torch.randint(self.num_cases, (), generator=generator))
            yield encode_class_request(case, k, self.num_cases)


def class_first_sampler(
    dataset,
    num_classes: int,
    rule: str = "uniform",
    class_share: Optional[Sequence[float]] = None,
    gamma: float = 0.5,
    foreground_share: float = 1.0 / 3.0,
    indices_key: str = "label_class_indices",
) -> ClassFirstSampler:
    """A :class:`ClassFirstSampler` over a cached training dataset (its class indices say which case holds which
    class). ``rule``: ``"uniform"`` over the foreground classes, or ``"share"``: weight ``share ** -gamma``.

    Raises:
        ValueError: an unknown rule, a dataset without cached class indices (class-first needs the class-balanced
            crops and ``cache_rate`` 1), or ``share`` without ``class_share``.
    """
    cache = getattr(dataset, "_cache", None)
    if not cache or len(cache) != len(dataset) or not all(isinstance(c, dict) and indices_key in c for c in cache):
        raise ValueError(f"class-first sampling needs every training case cached with its class indices ({indices_key}): "
                         "a crop_size (class-balanced crops) and cache_rate 1")  # fmt: skip
    if rule == "uniform":
        weights = [0.0] + [1.0] * (num_classes - 1)
    elif rule == "share":
        if class_share is None:
            raise ValueError("class_first: share needs the class shares")
        weights = [0.0] + [float(s) ** -float(gamma) if s > 0 else 0.0 for s in list(class_share)[1:]]
    else:
        raise ValueError(f"class_first={rule!r}: use uniform or share (or null for case first)")
    case_classes = [[k for k in range(1, num_classes) if len(c[indices_key][k]) > 0] for c in cache]
    return ClassFirstSampler(case_classes, weights, foreground_share)


def case_first_only(class_first: Optional[str], sampler):
    """``sampler`` (the distributed one), after checking that class-first sampling was not asked for: it has no
    distributed form here, and silently sampling case first would not be what was asked."""
    if class_first is not None:
        raise ValueError(f"class_first={class_first!r} is not supported by multi_gpu_train (case-first sampling only)")
    return sampler
