import collections

import pytest
import torch

from medseg_dropclass import DropClassSampler


def test_probability_zero_never_drops_and_one_always_drops():
    sampler = DropClassSampler(5, seed=0)
    assert all(sampler(0.0) is None for _ in range(200))
    assert all(sampler(1.0) in range(5) for _ in range(200))


def test_drop_rate_follows_progress_and_classes_are_uniform():
    sampler = DropClassSampler(4, seed=1)
    draws = [sampler(0.5) for _ in range(4000)]
    dropped = [d for d in draws if d is not None]
    assert 0.46 < len(dropped) / len(draws) < 0.54
    counts = collections.Counter(dropped)
    assert sorted(counts) == [0, 1, 2, 3]
    assert all(0.2 < c / len(dropped) < 0.3 for c in counts.values())


def test_present_mode_draws_only_classes_in_the_labels():
    sampler = DropClassSampler(6, mode="present", seed=0)
    target = torch.tensor([[0, 2, 2, 255], [5, 5, 0, 255]])
    drawn = {sampler(1.0, target) for _ in range(300)}
    assert drawn == {0, 2, 5}
    assert sampler(1.0, torch.full((2, 2), 255)) is None
    with pytest.raises(ValueError, match=r"needs the batch's target labels"):
        sampler(1.0)


def test_equal_seeds_give_equal_sequences_and_state_restores():
    a, b = DropClassSampler(7, seed=3), DropClassSampler(7, seed=3)
    assert [a(0.6) for _ in range(50)] == [b(0.6) for _ in range(50)]
    state = a.state_dict()
    expected = [a(0.6) for _ in range(20)]
    c = DropClassSampler(7, seed=99)
    c.load_state_dict({**state, "rng_state": [state["rng_state"][0], list(state["rng_state"][1]), None]})
    assert [c(0.6) for _ in range(20)] == expected


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"num_classes=1 is too small"):
        DropClassSampler(1)
    with pytest.raises(ValueError, match=r"mode='frequency' is not one of"):
        DropClassSampler(3, mode="frequency")
    with pytest.raises(ValueError, match=r"progress=-0.1 is outside the allowed range 0..1"):
        DropClassSampler(3)(-0.1)
