"""Crash-safe checkpoints: atomic writes, the best model kept across restarts, resume with a fallback.

MONAI's ``CheckpointSaver`` (ignite's ``Checkpoint``) deletes the previous file before it writes the next
one, so a kill at that moment leaves no checkpoint, and it keeps the best metric in memory only, so the
first validation after a restart replaces ``model.pt`` with whatever it scores. These handlers keep
ignite's file names and formats (``checkpoint_epoch=N.pt`` holding every object's ``state_dict``,
``model.pt`` holding the network's) with three guarantees:

- a file is written to a temporary name in the same folder, flushed to disk and renamed over its final
  name (:func:`atomic_save`), and the older epoch checkpoints are removed only after that;
- :class:`BestModelSaver` is itself part of the training checkpoint (its best metric and epoch), and never
  takes a NaN metric as best;
- :class:`ResumeFromCheckpoint` reports a newest checkpoint that cannot be read by name and resumes from
  the previous intact one.
"""

import glob
import logging
import math
import os
import pathlib
import tempfile
import zipfile
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint

__all__ = [
    "checkpoint_has_dropclass",
    "CHECKPOINT_PATTERN",
    "CheckpointError",
    "read_checkpoint",
    "report_model_file",
    "atomic_save",
    "epoch_checkpoints",
    "latest_checkpoint",
    "EpochCheckpointSaver",
    "BestModelSaver",
    "ResumeFromCheckpoint",
    "TEMPORARY_PREFIX",
    "require_checkpoint",
]

CHECKPOINT_PATTERN = "checkpoint_epoch=*.pt"
TEMPORARY_PREFIX = ".partial-"
logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """No checkpoint could be read; the message names every file tried and why it failed."""


def read_checkpoint(path: str, map_location: Any = "cpu", index_only: bool = False) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain values only, never code from the file.

    ``index_only``: memory-map the tensors (``mmap=True``) instead of reading them, for checks that look at the keys
    only (a file in PyTorch's legacy, non-zip format is read whole).

    Raises:
        CheckpointError: the file cannot be read, or is not a checkpoint of tensors and plain values (named).
    """
    try:
        if index_only and zipfile.is_zipfile(path):  # torch.load's mmap needs the zip format (the default since 1.6)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"{path}: no such checkpoint") from error
    except Exception as error:  # noqa: BLE001  (pickle, zip and weights-only errors alike: name the file)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint of tensors and plain values ({type(error).__name__}{': ' + reason[:200] if reason else ''})"
        ) from error


def report_model_file(save_dir: str, max_epochs: int, val_interval: int, filename: str = "model.pt") -> Optional[str]:
    """At the end of training: the path of ``filename`` in ``save_dir``, or (when none was written) a warning that
    says so and why, logged and printed; returns ``None`` then."""
    path = os.path.join(str(save_dir), filename)
    if os.path.isfile(path) or not _is_main_process():
        return path
    if val_interval > max_epochs:
        why = (
            f"validation runs every val_interval={val_interval} epochs and training ran max_epochs={max_epochs}, so it "
            f"never ran; pass --val_interval {max_epochs} (or fewer) to get one"
        )
    else:
        why = "no validation gave a finite mean Dice (NaN: e.g. no foreground in the validation cases)"
    message = (
        f"no {filename} written in {save_dir}: {why}. The last epoch's weights are in "
        f"{os.path.join(str(save_dir), 'checkpoint_epoch=' + str(max_epochs) + '.pt')} (--ckpt_path for evaluate)"
    )
    logger.warning(message)
    print(f"warning: {message}", flush=True)
    return None


def _state(value: Any) -> Any:
    value = getattr(value, "module", value)  # DistributedDataParallel / DataParallel: the wrapped network
    return value.state_dict() if hasattr(value, "state_dict") else value


def _fsync_directory(directory: str) -> None:
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform without directory handles: the rename is still atomic
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file under ``path``.

    The data go to a temporary file in the same folder (named ``.partial-*``), are flushed and fsynced,
    then renamed over ``path`` (``os.replace``, atomic on POSIX and Windows); the folder entry is fsynced
    too. A kill at any moment leaves either the old ``path`` or the new one, at worst a ``.partial-*`` file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_directory(directory)


def _epoch_of(path: str) -> int:
    try:
        return int(pathlib.Path(path).stem.rsplit("=", 1)[1])
    except (IndexError, ValueError):
        return -1


def epoch_checkpoints(directory: str, pattern: str = CHECKPOINT_PATTERN) -> List[str]:
    """Epoch checkpoints in ``directory``, oldest first (by epoch number)."""
    return sorted(glob.glob(os.path.join(directory, pattern)), key=_epoch_of)


def latest_checkpoint(directory: str, pattern: str = CHECKPOINT_PATTERN) -> Optional[str]:
    """The newest epoch checkpoint in ``directory`` (by epoch number), or ``None``."""
    found = epoch_checkpoints(directory, pattern)
    return found[-1] if found else None


def _is_main_process() -> bool:
    return (
        not (torch.distributed.is_available() and torch.distributed.is_initialized())
        or torch.distributed.get_rank() == 0
    )


class EpochCheckpointSaver:
    """Save ``save_dict`` (every object's ``state_dict``) as ``checkpoint_epoch=N.pt`` at the end of every
    ``save_interval``-th epoch and of the last one; keep the ``n_saved`` newest.

    The new file is complete on disk (:func:`atomic_save`) before any older one is removed; leftover
    ``.partial-*`` files of a killed run are removed at the next save. Only rank 0 writes under
    ``torch.distributed``.

    Args:
        save_dir: the checkpoint folder.
        save_dict: ``{name: object with state_dict()}``.
        save_interval: epochs between checkpoints.
        n_saved: epoch checkpoints kept.
    """

    def __init__(self, save_dir: str, save_dict: Mapping[str, Any], save_interval: int = 1, n_saved: int = 1) -> None:
        if n_saved < 1:
            raise ValueError(f"n_saved={n_saved}: keep at least the newest checkpoint")
        self.save_dir, self.save_dict = str(save_dir), dict(save_dict)
        self.save_interval, self.n_saved = max(int(save_interval), 1), int(n_saved)

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def __call__(self, engine: Any) -> None:
        epoch = engine.state.epoch
        if not _is_main_process() or (epoch % self.save_interval and epoch != engine.state.max_epochs):
            return
        path = os.path.join(self.save_dir, f"checkpoint_epoch={epoch}.pt")
        atomic_save({name: _state(obj) for name, obj in self.save_dict.items()}, path)
        self.remove_older(path)
        logger.info(f"Saved checkpoint at epoch: {epoch}")

    def completed(self, engine: Any) -> None:
        """A run killed between a save and the removal of the older file, restarted at its last epoch, trains
        nothing: the older file goes now (only when the newest is this run's final epoch)."""
        path = os.path.join(self.save_dir, f"checkpoint_epoch={engine.state.epoch}.pt")
        if _is_main_process() and latest_checkpoint(self.save_dir) == path:
            self.remove_older(path)

    def remove_older(self, newest: str) -> None:
        for old in epoch_checkpoints(self.save_dir)[: -self.n_saved]:
            if os.path.abspath(old) != os.path.abspath(newest):
                os.remove(old)
        for partial in glob.glob(os.path.join(self.save_dir, TEMPORARY_PREFIX + "checkpoint_epoch=*")):
            os.remove(partial)


class BestModelSaver:
    """Save the network as ``filename`` whenever the evaluator's ``metric_name`` beats the best so far.

    The best metric and its epoch are this handler's ``state_dict``: put the handler in the training
    checkpoint, and a resumed run keeps selecting against the best of the whole run (MONAI's saver
    forgets it, and the first validation after a restart replaced ``model.pt``). A NaN or infinite metric
    is never best. Ties keep the earlier model.

    Args:
        save_dir: folder of ``filename``.
        network: the network (its ``state_dict`` alone is saved, as MONAI's key-metric saver does).
        metric_name: key of the evaluator's ``state.metrics``.
        epoch: ``() -> int``, the epoch to record (the trainer's).
        filename: ``model.pt``.
    """

    def __init__(
        self,
        save_dir: str,
        network: torch.nn.Module,
        metric_name: str,
        epoch: Callable[[], int],
        filename: str = "model.pt",
    ) -> None:
        self.save_dir, self.network, self.metric_name = str(save_dir), network, metric_name
        self.epoch, self.filename = epoch, filename
        self.best_metric, self.best_epoch = -math.inf, -1
        self.engine: Optional[Any] = None

    def attach(self, engine: Any) -> None:
        self.engine = engine
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        value = float(engine.state.metrics[self.metric_name])
        if not math.isfinite(value) or value <= self.best_metric:
            return
        self.best_metric, self.best_epoch = value, int(self.epoch())
        if _is_main_process():
            atomic_save(_state(self.network), os.path.join(self.save_dir, self.filename))
            logger.info(f"Saved {self.filename}: {self.metric_name} {value:.4f} at epoch {self.best_epoch}")

    def state_dict(self) -> Dict[str, float]:
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.best_metric, self.best_epoch = float(state["best_metric"]), int(state["best_epoch"])
        if self.engine is not None and math.isfinite(self.best_metric):  # MONAI's "best metric" log line agrees
            self.engine.state.best_metric, self.engine.state.best_metric_epoch = self.best_metric, self.best_epoch


class ResumeFromCheckpoint:
    """At the start of training, restore ``load_dict`` from the newest readable epoch checkpoint in ``directory``.

    A newest checkpoint that cannot be read (truncated, empty) is reported by name with its error and
    the previous one is tried; when checkpoints exist and none is readable, :class:`CheckpointError`
    names them all (training from scratch silently would discard the run). An object the checkpoint
    lacks (a checkpoint of an older version) is left as it is, with a warning. The configured
    ``max_epochs`` is kept.

    Args:
        directory: the checkpoint folder (nothing to do while it holds no epoch checkpoint).
        load_dict: ``{name: object with load_state_dict()}``, as saved by :class:`EpochCheckpointSaver`.
        map_location: passed to ``torch.load``.
    """

    def __init__(self, directory: str, load_dict: Mapping[str, Any], map_location: Any = None) -> None:
        self.directory, self.load_dict, self.map_location = str(directory), dict(load_dict), map_location
        self.loaded_path: Optional[str] = None

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def read_newest(self) -> Optional[Dict[str, Any]]:
        """The newest readable checkpoint (``None`` when there is none at all)."""
        candidates = epoch_checkpoints(self.directory)[::-1]
        failures = []
        for path in candidates:
            try:
                checkpoint = read_checkpoint(path, self.map_location)
            except Exception as error:  # noqa: BLE001  (any unreadable file: say which and why, try the previous)
                failures.append(f"{path}: {type(error).__name__}: {error}")
                logger.warning(
                    f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); trying the previous one"
                )
                continue
            self.loaded_path = path
            return checkpoint
        if failures:
            raise CheckpointError("no readable checkpoint to resume from:\n  " + "\n  ".join(failures))
        return None

    def __call__(self, engine: Any) -> None:
        if _is_main_process():  # what a killed save left behind (never a file the run reads)
            for partial in glob.glob(os.path.join(self.directory, TEMPORARY_PREFIX + "*")):
                logger.warning(f"removing {partial}, the partial file of an interrupted save")
                os.remove(partial)
        checkpoint = self.read_newest()
        if checkpoint is None:
            return
        present = {name: obj for name, obj in self.load_dict.items() if name in checkpoint}
        for name in sorted(set(self.load_dict) - set(present)):
            logger.warning(
                f"{self.loaded_path} holds no {name!r} (an older checkpoint): it is not restored, the resume is not exact"
            )
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load={n: getattr(o, "module", o) for n, o in present.items()}, checkpoint=checkpoint)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(f"{self.loaded_path} is at epoch {engine.state.epoch}, beyond max_epochs={max_epochs}")
        engine.state.max_epochs = max_epochs
        logger.info(f"Resumed from {self.loaded_path} (epoch {engine.state.epoch})")


def require_checkpoint(path: str, what: str = "checkpoint") -> str:
    """``path`` if it is a PyTorch checkpoint that loads with ``weights_only=True``.

    Raises:
        CheckpointError: no such file (with a hint when it is a training run's ``model.pt``), or a file that is not
            a checkpoint holding tensors and plain values.
    """
    if not os.path.isfile(path):
        hint = ""
        if os.path.basename(path) == "model.pt" and os.path.isdir(os.path.dirname(path) or "."):
            hint = (
                " (training writes model.pt at a validation with a finite metric, every val_interval epochs; pass "
                "--ckpt_path <run>/checkpoints/checkpoint_epoch=N.pt to use the last epoch instead)"
            )
        raise CheckpointError(f"{path}: no such {what}{hint}")
    read_checkpoint(path, index_only=True)
    return path


def checkpoint_has_dropclass(path: str, default: bool = True) -> bool:
    """Whether the checkpoint at ``path`` (a ``model.pt`` or an epoch checkpoint) holds a DropClass head's projection;
    ``default`` (the bundle's training setting) where there is no file yet (a config parsed before training, or
    MONAI's ``verify_net_in_out``).

    Evaluation and inference build the network the checkpoint holds (the bundles' ``evaluate`` and ``inference``
    configs): a shipped ``model.pt`` may be the recipe baseline (the ACDC bundle's is), whatever the bundle's
    training default; nothing is dropped at inference either way.

    Raises:
        CheckpointError: a file that is not a checkpoint of tensors and plain values.
    """
    if not os.path.isfile(str(path)):
        return bool(default)
    state = read_checkpoint(str(path), index_only=True)
    weights = state.get("network", state) if isinstance(state, dict) else {}
    return any(".projection." in str(key) for key in (weights if isinstance(weights, dict) else {}))
