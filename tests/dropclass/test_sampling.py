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


def test_weighted_mode_follows_the_weights_and_never_drop():
    weights = [5.0, 1.0, 0.0, 2.0, 2.0]
    sampler = DropClassSampler(5, mode="weighted", weights=weights, never_drop=[0], seed=0)
    counts = collections.Counter(sampler(1.0) for _ in range(5000))
    assert set(counts) == {1, 3, 4}  # 0 is never dropped, 2 has weight 0
    for k, expected in ((1, 0.2), (3, 0.4), (4, 0.4)):
        assert abs(counts[k] / 5000 - expected) < 0.03, counts


def test_share_weights_favour_rare_classes_for_negative_gamma():
    from medseg_dropclass.dropclass.sampling import share_weights

    assert share_weights([0.5, 0.01, 0.0], -0.5) == pytest.approx([0.5**-0.5, 10.0, 0.0])
    assert share_weights([0.5, 0.01], 0.0) == [1.0, 1.0]


def test_never_drop_and_none_mode():
    uniform = DropClassSampler(4, never_drop=[0], seed=0)
    assert {uniform(1.0) for _ in range(300)} == {1, 2, 3}
    present = DropClassSampler(4, mode="present", never_drop=[0], seed=0)
    assert {present(1.0, torch.tensor([0, 0, 2])) for _ in range(50)} == {2}
    control = DropClassSampler(4, mode="none", seed=0)  # the projection-head-only control
    assert all(control(1.0) is None for _ in range(100))
    # the random stream advances the same way in every mode: equal seeds, equal later draws
    a, b = DropClassSampler(4, mode="none", seed=5), DropClassSampler(4, seed=5)
    [a(0.5) for _ in range(10)], [b(0.5) for _ in range(10)]
    assert a.rng.random() == b.rng.random()


def test_sampler_arguments_are_checked():
    with pytest.raises(ValueError, match=r"weights are given with mode='weighted' and only then"):
        DropClassSampler(3, weights=[1, 1, 1])
    with pytest.raises(ValueError, match=r"weights \[1.0, 1.0\] must be 3 non-negative numbers"):
        DropClassSampler(3, mode="weighted", weights=[1, 1])
    with pytest.raises(ValueError, match=r"leave no class to drop"):
        DropClassSampler(3, mode="weighted", weights=[1, 0, 0], never_drop=[0])
    with pytest.raises(ValueError, match=r"never_drop=\[3\] holds a class outside 0..2"):
        DropClassSampler(3, never_drop=[3])
