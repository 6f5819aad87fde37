"""Which class to drop in a training step.

With probability ``p`` (the DropClass progress) one class ``z`` is dropped, chosen uniformly over
all classes (the paper), over the classes present in the batch's labels (``mode="present"``), in
proportion to fixed per-class ``weights`` (``mode="weighted"``: e.g. class share ** gamma from
:func:`share_weights`, or how often a class surrounds the rare classes from
``data.stats.neighbour_cooccurrence``), or never (``mode="none"``: the projection-head-only control,
whose head is trained with every class kept). ``never_drop`` removes classes (e.g. background).
The sampler owns its random stream, so equal seeds give equal sequences: on every DDP rank in
``"uniform"`` mode, and after a resume once :meth:`load_state_dict` restored the stream.
"""

import random
from typing import Any, Dict, List, Optional, Sequence

import torch

from medseg_dropclass.validation import check_num_classes

__all__ = ["DropClassSampler", "SAMPLING_MODES", "share_weights"]

SAMPLING_MODES = ("uniform", "present", "weighted", "none")


def share_weights(share: Sequence[float], gamma: float) -> List[float]:
    """Drop weights ``share_k ** gamma`` (gamma < 0 favours rare classes, > 0 frequent ones); a class
    with zero share gets weight 0."""
    return [float(s) ** gamma if s > 0 else 0.0 for s in share]


class DropClassSampler:
    """Draw the dropped class ``z`` (or ``None``) for one step.

    Args:
        num_classes: number of classes ``K`` (>= 2).
        mode: one of :data:`SAMPLING_MODES` (see the module docstring).
        seed: seed of the sampler's own random stream (``None``: nondeterministic).
        ignore_index: label value that is never a class (``mode="present"``).
        weights: ``(K,)`` non-negative drop weights, for ``mode="weighted"`` only.
        never_drop: classes that are never dropped (e.g. ``[0]``: background).
    """

    def __init__(
        self,
        num_classes: int,
        mode: str = "uniform",
        seed: Optional[int] = None,
        ignore_index: int = 255,
        weights: Optional[Sequence[float]] = None,
        never_drop: Sequence[int] = (),
    ):
        check_num_classes(num_classes, "DropClass")
        if mode not in SAMPLING_MODES:
            raise ValueError(f"mode={mode!r} is not one of {SAMPLING_MODES}")
        if (weights is not None) != (mode == "weighted"):
            raise ValueError(f"weights are given with mode='weighted' and only then (mode={mode!r}, weights={weights})")
        if any(not 0 <= int(k) < num_classes for k in never_drop):
            raise ValueError(f"never_drop={list(never_drop)} holds a class outside 0..{num_classes - 1}")
        self.num_classes = int(num_classes)
        self.mode = mode
        self.ignore_index = ignore_index
        self.never_drop = sorted({int(k) for k in never_drop})
        self.weights: Optional[List[float]] = None
        if weights is not None:
            weights = [float(w) for w in weights]
            if len(weights) != num_classes or any(not w >= 0 for w in weights):
                raise ValueError(f"weights {weights} must be {num_classes} non-negative numbers")
            self.weights = [0.0 if k in self.never_drop else w for k, w in enumerate(weights)]
            if sum(self.weights) <= 0:
                raise ValueError(f"weights {weights} leave no class to drop (never_drop={self.never_drop})")
        self.rng = random.Random(seed)

    def __call__(self, progress: float, target: Optional[torch.Tensor] = None) -> Optional[int]:
        """Return ``z`` with probability ``progress``, else ``None``.

        Args:
            progress: ``p`` in ``[0, 1]``.
            target: label tensor of the batch, needed for ``mode="present"``.
        """
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress={progress} is outside the allowed range 0..1")
        # Always consume the same number of draws, so the stream does not depend on the outcome.
        drop = self.rng.random() < progress
        choice = self.rng.random()
        if not drop or self.mode == "none":
            return None
        if self.weights is not None:
            total, cumulative = sum(self.weights), 0.0
            for k, weight in enumerate(self.weights):
                cumulative += weight / total
                if choice < cumulative and weight > 0:
                    return k
            return max(k for k, w in enumerate(self.weights) if w > 0)
        candidates = self.candidates(target)
        if not candidates:
            return None
        return candidates[min(int(choice * len(candidates)), len(candidates) - 1)]

    def candidates(self, target: Optional[torch.Tensor]) -> List[int]:
        """The classes ``z`` may be drawn from (``"uniform"`` and ``"present"``)."""
        if self.mode == "present":
            if target is None:
                raise ValueError("DropClassSampler(mode='present') needs the batch's target labels")
            present = torch.unique(target).tolist()
            classes = [int(c) for c in present if c != self.ignore_index and 0 <= c < self.num_classes]
        else:
            classes = list(range(self.num_classes))
        return [k for k in classes if k not in self.never_drop]

    def state_dict(self) -> Dict[str, Any]:
        return {"rng_state": self.rng.getstate(), "mode": self.mode, "num_classes": self.num_classes}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        rng_state = state["rng_state"]
        # getstate() is (version, tuple, gauss); checkpoints may turn the tuple into a list.
        self.rng.setstate((rng_state[0], tuple(rng_state[1]), rng_state[2]))
