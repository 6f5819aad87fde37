"""MONAI engine glue: the only place that knows ignite and bundles (trainer control, handlers, checkpoints and exact
resume, config values and keys, folder locks, inferers). May import every floor below it (``validation``,
``dropclass``, ``networks``, ``evaluation``, ``data``); never ``study`` or ``apps``."""

from medseg_dropclass.engine.bundles import available_bundles, bundles_dir, config_files, find_bundle, run_bundle
from medseg_dropclass.engine.checkpoints import (
    BestModelSaver,
    CheckpointError,
    EpochCheckpointSaver,
    ResumeFromCheckpoint,
    atomic_save,
    checkpoint_has_dropclass,
    latest_checkpoint,
    read_checkpoint,
    report_model_file,
)
from medseg_dropclass.engine.controller import DropClassController
from medseg_dropclass.engine.handlers import (
    DropClassTensorBoardHandler,
    LogitAdjustmentPrior,
    NonFiniteLossError,
    OverlayImageHandler,
    SegmentationEvaluation,
    StopOnNonFiniteLoss,
    unwrap,
)
from medseg_dropclass.engine.optim import OPTIMIZERS, build_optimizer, poly_schedule
from medseg_dropclass.engine.random_state import TrainingRandomState
from medseg_dropclass.engine.run_lock import FolderLockedError, lock_folder, release_folder

__all__ = [
    "checkpoint_has_dropclass",
    "LogitAdjustmentPrior",
    "BestModelSaver",
    "CheckpointError",
    "FolderLockedError",
    "lock_folder",
    "release_folder",
    "read_checkpoint",
    "report_model_file",
    "EpochCheckpointSaver",
    "ResumeFromCheckpoint",
    "TrainingRandomState",
    "atomic_save",
    "DropClassController",
    "OPTIMIZERS",
    "build_optimizer",
    "poly_schedule",
    "DropClassTensorBoardHandler",
    "NonFiniteLossError",
    "StopOnNonFiniteLoss",
    "OverlayImageHandler",
    "SegmentationEvaluation",
    "available_bundles",
    "bundles_dir",
    "config_files",
    "find_bundle",
    "latest_checkpoint",
    "run_bundle",
    "unwrap",
]
