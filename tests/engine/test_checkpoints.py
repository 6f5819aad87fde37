"""Crash-safe checkpoints: atomic writes, removal after the new file is complete, resume with a fallback,
the best metric kept across restarts, the random state restored."""

import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from medseg_dropclass.engine import checkpoints
from medseg_dropclass.engine.checkpoints import (
    BestModelSaver,
    CheckpointError,
    EpochCheckpointSaver,
    ResumeFromCheckpoint,
    atomic_save,
    epoch_checkpoints,
)
from medseg_dropclass.engine.random_state import TrainingRandomState, _numpy_state, random_transforms


def test_atomic_save_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    atomic_save({"w": torch.ones(3)}, str(path))
    before = path.read_bytes()

    def failing_save(obj, stream, *args, **kwargs):
        stream.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"w": torch.zeros(3)}, str(path))
    assert path.read_bytes() == before  # the old checkpoint is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # and no partial file is left


def trainer_at(epoch: int, max_epochs: int = 10):
    return SimpleNamespace(state=SimpleNamespace(epoch=epoch, max_epochs=max_epochs))


def test_epoch_saver_removes_the_previous_checkpoint_only_after_the_new_one_is_written(tmp_path, monkeypatch):
    network = torch.nn.Linear(2, 2)
    saver = EpochCheckpointSaver(str(tmp_path), {"network": network})
    saver(trainer_at(1))
    (tmp_path / ".partial-checkpoint_epoch=2.pt.abc").write_bytes(b"left by a kill")
    assert [p.rsplit("/", 1)[1] for p in epoch_checkpoints(str(tmp_path))] == ["checkpoint_epoch=1.pt"]

    monkeypatch.setattr(checkpoints, "atomic_save", lambda obj, path: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        saver(trainer_at(2))
    assert (tmp_path / "checkpoint_epoch=1.pt").is_file()  # MONAI's saver had deleted it before writing
    monkeypatch.undo()

    saver(trainer_at(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_epoch=2.pt"
    ]  # older one and the partial file gone
    saved = torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)
    torch.testing.assert_close(saved["network"]["weight"], network.weight)


def engine_with(network, epoch_length=4):
    engine = Engine(lambda engine, batch: None)
    engine.state.max_epochs, engine.state.epoch_length = 10, epoch_length
    return engine


def test_resume_reports_an_unreadable_newest_checkpoint_by_name_and_uses_the_previous_one(tmp_path, caplog):
    network = torch.nn.Linear(2, 2)
    trainer = engine_with(network)
    trainer.state.iteration, trainer.state.epoch = 8, 2
    EpochCheckpointSaver(str(tmp_path), {"network": network, "trainer": trainer}, n_saved=3)(trainer_at(2))
    good_weight = network.weight.detach().clone()
    (tmp_path / "checkpoint_epoch=3.pt").write_bytes(b"")  # a kill of a non-atomic writer: empty ...
    full = (tmp_path / "checkpoint_epoch=2.pt").read_bytes()
    (tmp_path / "checkpoint_epoch=4.pt").write_bytes(full[: len(full) // 2])  # ... and truncated

    torch.nn.init.zeros_(network.weight)
    fresh = engine_with(network)
    fresh.state.max_epochs = 10
    loader = ResumeFromCheckpoint(str(tmp_path), {"network": network, "trainer": fresh})
    with caplog.at_level(logging.WARNING):
        loader(fresh)
    assert loader.loaded_path.endswith("checkpoint_epoch=2.pt")
    assert (
        "checkpoint_epoch=4.pt cannot be read" in caplog.text and "checkpoint_epoch=3.pt cannot be read" in caplog.text
    )
    torch.testing.assert_close(network.weight, good_weight)
    assert fresh.state.epoch == 2 and fresh.state.iteration == 8 and fresh.state.max_epochs == 10

    (tmp_path / "checkpoint_epoch=2.pt").write_bytes(full[:100])
    with pytest.raises(CheckpointError) as raised:
        ResumeFromCheckpoint(str(tmp_path), {"network": network})(fresh)
    assert all(f"checkpoint_epoch={n}.pt" in str(raised.value) for n in (2, 3, 4))


def test_resume_without_checkpoints_does_nothing_and_removes_partial_files(tmp_path):
    (tmp_path / ".partial-model.pt.x").write_bytes(b"x")
    network = torch.nn.Linear(2, 2)
    before = network.weight.detach().clone()
    ResumeFromCheckpoint(str(tmp_path), {"network": network})(engine_with(network))
    assert torch.equal(network.weight, before) and not list(tmp_path.iterdir())


def test_best_model_saver_never_takes_nan_and_keeps_its_best_across_a_restart(tmp_path):
    network = torch.nn.Linear(2, 2)
    epoch = {"value": 1}
    saver = BestModelSaver(str(tmp_path), network, "dice", epoch=lambda: epoch["value"])
    evaluator = SimpleNamespace(state=SimpleNamespace(metrics={"dice": float("nan")}))
    saver(evaluator)
    assert not (tmp_path / "model.pt").exists() and saver.best_metric == -math.inf
    epoch["value"], evaluator.state.metrics["dice"] = 2, 0.5
    saver(evaluator)
    saved = (tmp_path / "model.pt").read_bytes()
    assert saver.state_dict() == {"best_metric": 0.5, "best_epoch": 2}

    restarted = BestModelSaver(str(tmp_path), torch.nn.Linear(2, 2), "dice", epoch=lambda: 4)
    restarted.load_state_dict(saver.state_dict())
    evaluator.state.metrics["dice"] = 0.3  # worse than the best before the restart: model.pt stays
    restarted(evaluator)
    assert (tmp_path / "model.pt").read_bytes() == saved and restarted.best_epoch == 2
    evaluator.state.metrics["dice"] = 0.5  # a tie keeps the earlier model
    restarted(evaluator)
    assert (tmp_path / "model.pt").read_bytes() == saved
    evaluator.state.metrics["dice"] = 0.7
    restarted(evaluator)
    assert restarted.state_dict() == {"best_metric": 0.7, "best_epoch": 4}
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(loaded) == {"weight", "bias"}  # the network's state_dict itself, as MONAI's saver wrote it


def test_training_random_state_restores_every_stream(phantom2d):
    import random

    from monai.data import DataLoader

    from medseg_dropclass.data import CacheDataset, DecathlonPreprocessing, decathlon_datalist

    preprocessing = DecathlonPreprocessing(2, 7, crop_size=(32, 32), num_crops=2)
    dataset = CacheDataset(
        decathlon_datalist(phantom2d, "training")[:2], preprocessing.transforms("train"), progress=False
    )
    DataLoader(dataset, batch_size=1)  # seeds every random transform, as the bundles' loader does
    assert len(random_transforms(dataset.transform)) >= 3  # the balanced crop and the flips

    def draw():
        sample = dataset[0]
        return [
            sample[0]["image"].clone(),
            sample[1]["image"].clone(),
            torch.rand(3),
            np.random.rand(3),
            random.random(),
        ]

    state = TrainingRandomState(dataset)
    saved = state.state_dict()
    first = draw()
    state.load_state_dict(torch.load(_round_trip(saved), weights_only=True))  # also survives weights_only loading
    second = draw()
    for a, b in zip(first, second):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    third = draw()
    assert not torch.equal(third[0], first[0]) or not torch.equal(third[1], first[1])  # the streams do move on

    # one state per generator: the balanced crop's sub-crops share its generator and add nothing
    transforms = random_transforms(dataset.transform)
    assert len(saved["generators"]) == len({id(t.R) for t in transforms}) < len(transforms)

    # a checkpoint written before 2026-12-03 held one state per transform (shared ones repeated): it restores the same
    state.load_state_dict(saved)
    legacy = {key: value for key, value in saved.items() if key != "generators"}
    legacy["transforms"] = [_numpy_state(t.R.get_state()) for t in transforms]
    fourth = draw()
    state.load_state_dict(torch.load(_round_trip(legacy), weights_only=True))
    for a, b in zip(fourth, draw()):
        assert np.array_equal(np.asarray(a), np.asarray(b))

    other = TrainingRandomState(CacheDataset([], DecathlonPreprocessing(2, 7).transforms("train"), progress=False))
    with pytest.raises(ValueError, match="transform random generator"):
        other.load_state_dict(saved)


def _round_trip(obj):
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def test_a_checkpoint_says_which_head_it_holds_and_a_mismatch_is_named(tmp_path):
    from medseg_dropclass import build_network
    from medseg_dropclass.engine import CheckpointError, checkpoint_has_dropclass
    from medseg_dropclass.engine.bundles import load_weights

    def network(dropclass):
        return build_network("unet", spatial_dims=2, in_channels=1, num_classes=3, dropclass=dropclass,
                             feature_channels=8, channels=[8, 16], strides=[2])  # fmt: skip

    torch.save(network(False).state_dict(), tmp_path / "baseline.pt")
    torch.save({"network": network(True).state_dict()}, tmp_path / "epoch.pt")
    assert checkpoint_has_dropclass(str(tmp_path / "baseline.pt")) is False
    assert checkpoint_has_dropclass(str(tmp_path / "epoch.pt")) is True
    assert (
        checkpoint_has_dropclass(str(tmp_path / "none.pt"), default=True) is True
    )  # no file yet: the training default
    with pytest.raises(CheckpointError, match=r"baseline.pt: the weights do not fit .*\(they are a baseline's"):
        load_weights(network(True), tmp_path / "baseline.pt")
    with pytest.raises(CheckpointError, match=r"a DropClass network's"):
        load_weights(network(False), tmp_path / "epoch.pt")
    plain = load_weights(network(False), tmp_path / "baseline.pt")
    assert torch.equal(
        plain.state_dict()["head.classifier.weight"], torch.load(tmp_path / "baseline.pt")["head.classifier.weight"]
    )


def test_the_checks_map_the_checkpoint_and_only_loading_reads_its_tensors(tmp_path, monkeypatch):
    """require_checkpoint and checkpoint_has_dropclass look at keys only: a zip checkpoint is memory-mapped, not read
    (predict used to read the weights three times); a legacy-format file is still read whole and understood."""
    from medseg_dropclass.engine import checkpoint_has_dropclass
    from medseg_dropclass.engine.checkpoints import require_checkpoint

    state = {"network": {"head.projection.conv.weight": torch.ones(2, 2), "head.classifier.weight": torch.zeros(3, 2)}}
    torch.save(state, tmp_path / "zip.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    calls, load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("mmap", False)) or load(*a, **k))
    assert require_checkpoint(str(tmp_path / "zip.pt")) == str(tmp_path / "zip.pt")
    assert checkpoint_has_dropclass(str(tmp_path / "zip.pt"), default=False) is True
    assert calls == [True, True]
    assert checkpoint_has_dropclass(str(tmp_path / "legacy.pt"), default=False) is True
    assert calls[-1] is False
