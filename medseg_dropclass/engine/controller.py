"""DropClass inside MONAI's ``SupervisedTrainer``: progress from the iteration count, a class per iteration.

The controller is attached to the trainer (``ITERATION_STARTED``) and is also its ``prepare_batch``:
it hands the sampled class to the network as ``drop_class`` and the progress to the loss.
"""

from typing import Any, Dict, Optional

import torch
import torch.distributed as dist
from monai.engines.utils import default_prepare_batch

from medseg_dropclass.dropclass.loss import DropClassLoss
from medseg_dropclass.dropclass.sampling import DropClassSampler
from medseg_dropclass.dropclass.schedules import LinearSchedule, ProgressSchedule

__all__ = ["DropClassController"]


class DropClassController:
    """Drive DropClass from an ignite/MONAI trainer.

    Args:
        num_classes: classes ``K``.
        loss: the :class:`DropClassLoss` whose ``progress`` this sets every iteration.
        schedule: ``p(iteration, max_iterations)``; max_iterations = max_epochs x epoch_length.
        sampling: a :data:`~medseg_dropclass.dropclass.sampling.SAMPLING_MODES` mode, used when no ``sampler`` is given.
        seed: seed of the sampler (equal on every rank, so ranks agree except in ``"present"`` mode,
            where rank 0's choice is broadcast).
        sampler: a configured :class:`DropClassSampler` (weights, ``never_drop``); overrides ``sampling`` and ``seed``.
        enabled: ``False`` is the baseline arm: nothing is dropped, ``p = 0``, the network gets no
            ``drop_class``.
        image_key, label_key: batch keys.

    Attributes read by handlers: ``progress``, ``drop_class``, ``drop_counts`` (per class, this epoch).
    """

    def __init__(
        self,
        num_classes: int,
        loss: Optional[DropClassLoss] = None,
        schedule: Optional[ProgressSchedule] = None,
        sampling: str = "uniform",
        seed: int = 0,
        enabled: bool = True,
        image_key: str = "image",
        label_key: str = "label",
        sampler: Optional[DropClassSampler] = None,
    ) -> None:
        self.num_classes = int(num_classes)
        self.loss = loss
        self.schedule = schedule if schedule is not None else LinearSchedule()
        self.sampler = sampler if sampler is not None else DropClassSampler(num_classes, mode=sampling, seed=seed)
        if self.sampler.num_classes != self.num_classes:
            raise ValueError(f"the sampler has {self.sampler.num_classes} classes, the controller {num_classes}")
        self.enabled = bool(enabled)
        self.image_key, self.label_key = image_key, label_key
        self.progress = 0.0
        self.drop_class: Optional[int] = None
        self.drop_counts = torch.zeros(num_classes + 1, dtype=torch.long)  # last bin: nothing dropped

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_STARTED, self.iteration_started)
        engine.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)

    def epoch_started(self, engine: Any) -> None:
        self.drop_counts.zero_()

    def iteration_started(self, engine: Any) -> None:
        total = engine.state.max_epochs * engine.state.epoch_length
        self.progress = self.schedule(engine.state.iteration - 1, total) if self.enabled else 0.0
        drop_class = None
        if self.enabled:
            label = engine.state.batch[self.label_key] if self.sampler.mode == "present" else None
            drop_class = self.sampler(self.progress, label)
            drop_class = self._agree_across_ranks(drop_class)
        self.drop_class = drop_class
        self.drop_counts[self.num_classes if drop_class is None else drop_class] += 1
        if self.loss is not None:
            self.loss.progress = self.progress

    def _agree_across_ranks(self, drop_class: Optional[int]) -> Optional[int]:
        if self.sampler.mode != "present" or not (dist.is_available() and dist.is_initialized()):
            return drop_class
        value = torch.tensor([-1 if drop_class is None else drop_class])
        dist.broadcast(value, src=0)
        return None if int(value) < 0 else int(value)

    def __call__(
        self, batchdata: Dict[str, torch.Tensor], device: Any = None, non_blocking: bool = False, **kwargs: Any
    ):
        """``prepare_batch`` for ``SupervisedTrainer``: ``(image, label, (), {"drop_class": z})``."""
        image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        if not self.enabled:
            return image, label
        return image, label, (), {"drop_class": self.drop_class}

    def state_dict(self) -> Dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
