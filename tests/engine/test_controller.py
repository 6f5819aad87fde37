import types

import pytest
import torch

from medseg_dropclass import DropClassLoss, LinearSchedule
from medseg_dropclass.engine import DropClassController


def fake_engine(iteration, max_epochs=2, epoch_length=5, label=None):
    state = types.SimpleNamespace(
        iteration=iteration, max_epochs=max_epochs, epoch_length=epoch_length, batch={"label": label}
    )
    return types.SimpleNamespace(state=state)


def test_progress_follows_the_iteration_count_and_is_handed_to_the_loss():
    loss = DropClassLoss()
    controller = DropClassController(4, loss=loss, schedule=LinearSchedule(), seed=0)
    seen = []
    for iteration in range(1, 11):  # ignite counts from 1
        controller.iteration_started(fake_engine(iteration))
        seen.append(controller.progress)
        assert loss.progress == controller.progress
    assert seen == pytest.approx([i / 10 for i in range(10)])
    assert int(controller.drop_counts.sum()) == 10


def test_prepare_batch_passes_the_drop_class_and_baseline_passes_nothing():
    controller = DropClassController(3, schedule=LinearSchedule(1.0, 1.0), seed=1)
    controller.iteration_started(fake_engine(1))
    batch = {"image": torch.zeros(2, 1, 4, 4), "label": torch.zeros(2, 1, 4, 4)}
    image, label, args, kwargs = controller(batch, torch.device("cpu"))
    assert args == () and kwargs == {"drop_class": controller.drop_class} and controller.drop_class in (0, 1, 2)
    baseline = DropClassController(3, enabled=False)
    baseline.iteration_started(fake_engine(3))
    assert baseline.progress == 0.0 and baseline.drop_class is None
    assert len(baseline(batch, torch.device("cpu"))) == 2


def test_present_sampling_reads_the_batch_labels():
    controller = DropClassController(5, schedule=LinearSchedule(1.0, 1.0), sampling="present", seed=0)
    label = torch.tensor([[[0, 3], [3, 255]]])
    drawn = set()
    for iteration in range(1, 30):
        controller.iteration_started(fake_engine(iteration, label=label))
        drawn.add(controller.drop_class)
    assert drawn == {0, 3}


def test_state_restores_the_sampler_stream():
    a = DropClassController(6, schedule=LinearSchedule(0.5, 0.5), seed=4)
    for iteration in range(1, 4):
        a.iteration_started(fake_engine(iteration))
    state = a.state_dict()
    b = DropClassController(6, schedule=LinearSchedule(0.5, 0.5), seed=99)
    b.load_state_dict(state)
    for iteration in range(4, 10):
        a.iteration_started(fake_engine(iteration))
        b.iteration_started(fake_engine(iteration))
        assert a.drop_class == b.drop_class
