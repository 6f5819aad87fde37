"""The study statistics against closed forms and single-level references."""

import numpy as np
import pytest
from scipy import stats

from medseg_dropclass.analysis.statistics import clopper_pearson, hierarchical_bootstrap, holm, seed_mean


def test_holm_matches_the_step_down_rule():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, float("nan"), 0.001]), [0.5, float("nan"), 0.002])
    assert holm([0.9, 0.8]).tolist() == [1.0, 1.0]  # 2 x 0.8 capped at 1, and monotone


def test_clopper_pearson_closed_forms():
    low, high = clopper_pearson(0, 5)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 5))
    low, high = clopper_pearson(5, 5)
    assert low == pytest.approx(0.025 ** (1 / 5)) and high == 1.0
    assert all(np.isnan(clopper_pearson(0, 0)))


def test_seed_mean_leaves_nan_cases_out():
    values = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan], [0.0, 0.0, 0.0]])[:, :, None]
    np.testing.assert_allclose(seed_mean(values), [1.0])  # seed 0: 2.0, seed 1: no value, seed 2: 0.0


def width(result):
    return float(result.high[0] - result.low[0])


def test_interval_reflects_seed_variance_when_cases_agree():
    """Cases identical within a seed: the hierarchical interval is the seed-level bootstrap's."""
    seed_effects = np.array([0.3, -0.1, 0.2, 0.5, 0.0, 0.1])
    values = np.repeat(seed_effects[:, None], 40, axis=1)
    result = hierarchical_bootstrap({"test": values}, lambda v: seed_mean(v["test"]), n_resamples=4000)
    assert result.estimate[0] == pytest.approx(seed_effects.mean())
    reference = stats.bootstrap((seed_effects,), np.mean, n_resamples=4000, method="percentile", random_state=0)
    assert width(result) == pytest.approx(reference.confidence_interval.high - reference.confidence_interval.low, rel=0.15)


def test_interval_reflects_case_variance_when_seeds_agree():
    """Seeds identical: only the case level varies, and the interval matches the case-level bootstrap of one seed."""
    cases = np.random.default_rng(0).normal(0.2, 1.0, size=60)
    values = np.repeat(cases[None, :], 5, axis=0)
    result = hierarchical_bootstrap({"test": values}, lambda v: seed_mean(v["test"]), n_resamples=3000)
    # 5 seeds each resampling their cases: the mean of 5 independent case means, sd / sqrt(5 * 60)
    expected = 2 * 1.96 * cases.std(ddof=1) / np.sqrt(5 * 60)
    assert width(result) == pytest.approx(expected, rel=0.2)


def test_two_splits_vector_statistic_and_p_value():
    rng = np.random.default_rng(1)
    shifted = rng.normal(0.0, 0.05, size=(5, 30, 2))
    test = shifted + np.array([0.4, 0.0])  # class 0 clearly changes, class 1 does not
    result = hierarchical_bootstrap({"test": test, "shifted": shifted}, lambda v: seed_mean(v["test"]) - seed_mean(v["shifted"]))
    assert result.estimate.shape == (2,) and result.seeds == 5
    assert result.low[0] > 0.3 and result.p_value[0] < 0.01
    assert result.low[1] < 0 < result.high[1] and result.p_value[1] > 0.05
    one_seed = hierarchical_bootstrap({"test": test[:1]}, lambda v: seed_mean(v["test"]))
    assert np.isnan(one_seed.low).all() and np.isnan(one_seed.p_value).all() and not np.isnan(one_seed.estimate).any()
    with pytest.raises(ValueError, match=r"the same number of seeds, got \[4, 5\]"):
        hierarchical_bootstrap({"a": test, "b": test[:4]}, lambda v: seed_mean(v["a"]))
