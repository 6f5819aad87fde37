"""The method: DropClass (Chu, Kim, Han, NeurIPS 2021) and its baseline head, loss, class sampling and schedules.

Owns ``S_k = ReLU(w_k)``, the dropped branch, the scheduled loss ``(1-p)·CE + p·CE(dropped) + alpha·softmax(z)``,
the choice of the dropped class and the schedule of ``p``, and the pixel losses a user would use instead
(``pixel_losses``: focal, top-k and logit-adjusted cross-entropy); ``_kernels`` holds the fused CPU kernels (private: the
same numbers as the reference path, checked in float64 by the tests). May import torch, MONAI and
``medseg_dropclass.validation`` only: nothing here knows about data, bundles or studies.
"""

from medseg_dropclass.dropclass.head import (
    ClassifierHead,
    DropClassHead,
    DropClassOutput,
    class_importance,
    kept_class_scale,
)
from medseg_dropclass.dropclass.loss import ChannelTargetLoss, DropClassLoss, MaskedDiceCELoss
from medseg_dropclass.dropclass.pixel_losses import (
    LogitAdjustedCrossEntropyLoss,
    MaskedFocalLoss,
    TopKCrossEntropyLoss,
)
from medseg_dropclass.dropclass.sampling import DropClassSampler
from medseg_dropclass.dropclass.schedules import (
    CappedLinearSchedule,
    ConstantSchedule,
    CosineSchedule,
    LinearSchedule,
    build_schedule,
)

__all__ = [
    "DropClassHead",
    "ClassifierHead",
    "DropClassOutput",
    "class_importance",
    "kept_class_scale",
    "DropClassLoss",
    "MaskedDiceCELoss",
    "ChannelTargetLoss",
    "MaskedFocalLoss",
    "TopKCrossEntropyLoss",
    "LogitAdjustedCrossEntropyLoss",
    "DropClassSampler",
    "LinearSchedule",
    "CappedLinearSchedule",
    "CosineSchedule",
    "ConstantSchedule",
    "build_schedule",
]
