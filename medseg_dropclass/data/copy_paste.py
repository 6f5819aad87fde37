"""Rare-object copy-paste (TumorCP, ClassMix/ObjectAug): objects of chosen classes, cut from the training cases,
pasted into a training sample at random positions, by default outside the class that usually surrounds them.

The direct remedy for context bias: a lesion that only ever appears inside one organ is shown elsewhere too. The
objects come from a bank built once, deterministically, from the training cases (every connected component of the
chosen classes, with its image values, its mask and its host: the class most frequent around it), so a resumed run
rebuilds the same bank, and the transform's only random state is its ``RandomState`` (checkpointed with every
MONAI random transform, :mod:`medseg_dropclass.engine.random_state`). Dimension-generic (2D and 3D, any channels).
Kept as our own transform because MONAI has no copy-paste.
"""

from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

__all__ = ["PastedObject", "objects_of", "rare_classes", "object_bank", "RandCopyPasted"]


class PastedObject(dict):
    """One object of the bank: ``image`` ``(C, *box)``, ``mask`` ``(*box)`` bool, ``label`` (its class), ``host``
    (the class most frequent in the one-voxel ring around it; 0 where only background surrounds it)."""


def _as_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def objects_of(
    image: np.ndarray, label: np.ndarray, classes: Sequence[int], min_voxels: int = 1, margin: int = 2
) -> List[PastedObject]:
    """Every connected component of ``classes`` in one case (``image`` ``(C, *spatial)``, ``label`` ``(*spatial)``),
    its box grown by ``margin`` voxels (within the image) so that a blended paste has a border to soften."""
    from scipy import ndimage

    found = []
    structure = ndimage.generate_binary_structure(label.ndim, 1)
    for k in classes:
        components, count = ndimage.label(label == k, structure=structure)
        for index, box in enumerate(ndimage.find_objects(components), start=1):
            if np.count_nonzero(components[box] == index) < min_voxels:
                continue
            grown = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, label.shape))
            ring = ndimage.binary_dilation(components[grown] == index, structure=structure) & (components[grown] != index)
            around = label[grown][ring]
            around = around[around != k]
            host = int(np.bincount(around.astype(np.int64)).argmax()) if around.size else 0
            box = tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, label.shape))
            mask = components[box] == index
            found.append(PastedObject(image=image[(slice(None), *box)].copy(), mask=mask, label=int(k), host=host))
    return found


def rare_classes(
    cases: Sequence[Mapping[str, Any]], load: Callable, num_classes: int, below: float = 0.01, ignore_index: int = 255
) -> List[int]:
    """The foreground classes under ``below`` of the labelled voxels of ``cases`` (each loaded by ``load``)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for case in cases:
        label = _as_numpy(load(dict(case))["label"]).astype(np.int64).ravel()
        label = label[(label != ignore_index) & (label >= 0) & (label < num_classes)]
        counts += np.bincount(label, minlength=num_classes)
    share = counts / max(int(counts.sum()), 1)
    return [k for k in range(1, num_classes) if 0 < share[k] < below]


def object_bank(
    cases: Sequence[Mapping[str, Any]],
    load: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    classes: Optional[Sequence[int]] = None,
    min_voxels: int = 1,
    num_classes: Optional[int] = None,
    ignore_index: int = 255,
) -> List[PastedObject]:
    """The objects of ``classes`` (``None``: :func:`rare_classes`, which needs ``num_classes``) in every case of
    ``cases`` (datalist entries), each loaded by ``load`` (the deterministic part of the training transforms: image
    and label on the training grid, intensities normalised)."""
    if classes is None:
        if num_classes is None:
            raise ValueError("object_bank: classes=None (the rare ones) needs num_classes")
        classes = rare_classes(cases, load, num_classes, ignore_index=ignore_index)
    bank: List[PastedObject] = []
    for case in cases:
        data = load(dict(case))
        image, label = _as_numpy(data["image"]), _as_numpy(data["label"])[0]
        bank += objects_of(image, label, classes, min_voxels)
    return bank


class RandCopyPasted(Randomizable, MapTransform):
    """With probability ``prob``, paste ``1..max_objects`` objects of the bank into the sample.

    Objects are drawn class first (a class uniformly among those in the bank, then one of its objects), so a class
    with few objects is pasted as often as one with many. Each is placed at a uniformly random position where it
    fits; with ``avoid_host`` only where its footprint holds none of its host class (up to ``attempts`` tries, else
    it is not pasted). The pasted voxels take the object's label and image values; with ``blend_sigma > 0`` the
    image is blended over a Gaussian-smoothed mask (the label stays the hard mask). Nothing else changes.

    Args:
        keys: ``(image_key, label_key)``.
        bank: the objects (:func:`object_bank`), or ``None`` and ``build_bank`` (called once, at the first sample).
        indices_key: where ``ClassesToIndicesd`` stored the per-class voxel indices of the sample: recomputed after
            a paste so that class-centred crops can centre on pasted objects. ``num_classes`` is needed with it.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        bank: Optional[List[PastedObject]] = None,
        build_bank: Optional[Callable[[], List[PastedObject]]] = None,
        prob: float = 0.5,
        max_objects: int = 1,
        avoid_host: bool = True,
        blend_sigma: float = 0.0,
        attempts: int = 20,
        indices_key: Optional[str] = None,
        num_classes: Optional[int] = None,
    ) -> None:
        MapTransform.__init__(self, keys)
        if len(self.keys) != 2:
            raise ValueError(f"keys: (image key, label key), got {self.keys}")
        if not 0.0 <= prob <= 1.0 or max_objects < 1:
            raise ValueError(f"prob={prob} must be in 0..1 and max_objects={max_objects} >= 1")
        if indices_key is not None and num_classes is None:
            raise ValueError("indices_key needs num_classes")
        if bank is None and build_bank is None:
            raise ValueError("give the objects (bank) or how to build them (build_bank)")
        self._bank, self.build_bank = bank, build_bank
        self.prob, self.max_objects, self.avoid_host = float(prob), int(max_objects), bool(avoid_host)
        self.blend_sigma, self.attempts = float(blend_sigma), int(attempts)
        self.indices_key, self.num_classes = indices_key, num_classes

    @property
    def bank(self) -> List[PastedObject]:
        if self._bank is None:
            self._bank = list(self.build_bank())  # deterministic: a resumed run builds the same bank
        return self._bank

    def randomize(self, data: Any = None) -> None:
        pass

    def _place(self, obj: PastedObject, label: np.ndarray) -> Optional[tuple]:
        shape, box = label.shape, obj["mask"].shape
        if any(b > s for b, s in zip(box, shape)):
            return None
        for _ in range(self.attempts):
            corner = [int(self.R.randint(0, s - b + 1)) for s, b in zip(shape, box)]
            region = tuple(slice(c, c + b) for c, b in zip(corner, box))
            if not self.avoid_host or obj["host"] == 0 or not np.any(label[region][obj["mask"]] == obj["host"]):
                return region
        return None

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        if self.R.rand() >= self.prob or not self.bank:
            return d
        image_key, label_key = self.keys
        image, label = d[image_key], d[label_key]
        image_np, label_np = _as_numpy(image).copy(), _as_numpy(label).copy()
        by_class: Dict[int, List[int]] = {}
        for index, obj in enumerate(self.bank):
            by_class.setdefault(obj["label"], []).append(index)
        classes = sorted(by_class)
        pasted = 0
        for _ in range(int(self.R.randint(1, self.max_objects + 1))):
            k = classes[int(self.R.randint(len(classes)))]
            obj = self.bank[by_class[k][int(self.R.randint(len(by_class[k])))]]
            region = self._place(obj, label_np[0])
            if region is None:
                continue
            mask = obj["mask"]
            alpha = mask.astype(np.float64)
            if self.blend_sigma > 0:
                from scipy.ndimage import gaussian_filter

                alpha = np.maximum(gaussian_filter(alpha, self.blend_sigma), alpha)  # soft border outside, hard inside
            target = image_np[(slice(None), *region)]
            image_np[(slice(None), *region)] = (alpha * obj["image"] + (1 - alpha) * target).astype(image_np.dtype)
            label_np[(0, *region)][mask] = k
            pasted += 1
        if pasted == 0:
            return d
        d[image_key] = _like(image, image_np)
        d[label_key] = _like(label, label_np)
        if self.indices_key is not None:
            from monai.transforms.utils import map_classes_to_indices

            d[self.indices_key] = map_classes_to_indices(d[label_key], self.num_classes)
        return d


def _like(original, array: np.ndarray):
    """``array`` as the type of ``original`` (a MetaTensor keeps its metadata)."""
    if isinstance(original, torch.Tensor):
        result = original.clone()
        result.copy_(torch.as_tensor(array, dtype=original.dtype))
        return result
    return array
