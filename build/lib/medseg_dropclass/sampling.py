"""Which class to drop in a training step.

With probability ``p`` (the DropClass progress) one class ``z`` is dropped, chosen uniformly over
all classes (the paper) or over the classes present in the batch's labels (``mode="present"``).
The sampler owns its random stream, so equal seeds give equal sequences: on every DDP rank in
``"uniform"`` mode, and after a resume once :meth:`load_state_dict` restored the stream.
"""

import random
from typing import Any, Dict, List, Optional

import torch

from medseg_dropclass.validation import check_num_classes

__all__ = ["DropClassSampler", "SAMPLING_MODES"]

SAMPLING_MODES = ("uniform", "present")


class DropClassSampler:
    """Draw the dropped class ``z`` (or ``None``) for one step.

    Args:
        num_classes: number of classes ``K`` (>= 2).
        mode: ``"uniform"`` over ``0..K-1`` or ``"present"`` over the classes in the labels.
        seed: seed of the sampler's own random stream (``None``: nondeterministic).
        ignore_index: label value that is never a class (``mode="present"``).
    """

    def __init__(self, num_classes: int, mode: str = "uniform", seed: Optional[int] = None, ignore_index: int = 255):
        check_num_classes(num_classes, "DropClass")
        if mode not in SAMPLING_MODES:
            raise ValueError(f"mode={mode!r} is not one of {SAMPLING_MODES}")
        self.num_classes = int(num_classes)
        self.mode = mode
        self.ignore_index = ignore_index
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
        if not drop:
            return None
        candidates = self.candidates(target)
        if not candidates:
            return None
        return candidates[min(int(choice * len(candidates)), len(candidates) - 1)]

    def candidates(self, target: Optional[torch.Tensor]) -> List[int]:
        """The classes ``z`` may be drawn from."""
        if self.mode == "uniform":
            return list(range(self.num_classes))
        if target is None:
            raise ValueError("DropClassSampler(mode='present') needs the batch's target labels")
        present = torch.unique(target).tolist()
        return [int(c) for c in present if c != self.ignore_index and 0 <= c < self.num_classes]

    def state_dict(self) -> Dict[str, Any]:
        return {"rng_state": self.rng.getstate(), "mode": self.mode, "num_classes": self.num_classes}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        rng_state = state["rng_state"]
        # getstate() is (version, tuple, gauss); checkpoints may turn the tuple into a list.
        self.rng.setstate((rng_state[0], tuple(rng_state[1]), rng_state[2]))
