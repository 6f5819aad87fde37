"""The study statistics: crossed seed x case intervals against closed forms, paired estimates that add up, the seed
count's p-value floor, cluster resampling, and the interval's coverage by simulation."""

import numpy as np
import pytest
from scipy import stats

from medseg_dropclass.study.statistics import (
    clopper_pearson,
    cluster_ids,
    crossed_estimate,
    holm,
    per_seed_mean,
    seed_mean,
    sign_flip_floor,
)


def mean_of(split="s"):
    return lambda v: per_seed_mean(v[split])


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


def test_cases_that_agree_give_the_t_interval_over_seeds():
    """No case variance: the interval is Student's t over the per-seed values (valid for few seeds)."""
    seed_effects = np.array([0.3, -0.1, 0.2, 0.5, 0.0])
    values = np.repeat(seed_effects[:, None, None], 40, axis=1)
    result = crossed_estimate({"s": values}, mean_of(), n_resamples=200)
    low, high = stats.t.interval(0.95, 4, loc=seed_effects.mean(), scale=stats.sem(seed_effects))
    assert result.estimate[0] == pytest.approx(seed_effects.mean())
    assert (result.low[0], result.high[0]) == pytest.approx((low, high), rel=1e-9)
    assert result.p_value[0] == pytest.approx(stats.ttest_1samp(seed_effects, 0.0).pvalue, rel=1e-9)
    assert result.seeds == 5 and result.clusters == 40


def test_seeds_that_agree_give_the_case_interval_and_the_case_set_is_shared():
    """No seed variance: every seed sees the same cases, so the case set's variance is not divided by the seeds (a
    nested bootstrap drew cases per seed and shrank the interval by sqrt(seeds))."""
    cases = np.random.default_rng(0).normal(0.2, 1.0, size=60)
    values = np.repeat(cases[None, :, None], 5, axis=0)
    result = crossed_estimate({"s": values}, mean_of(), n_resamples=4000)
    expected = 2 * stats.t.ppf(0.975, 59) * cases.std(ddof=1) / np.sqrt(60)
    assert float(result.high[0] - result.low[0]) == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("trial", range(20))
def test_a_paired_difference_equals_the_difference_of_the_arms_whatever_is_missing(trial):
    """Random NaN patterns in both arms (a class with no value in one arm's case and a 0 in the other's): the paired
    estimate is exactly the difference of the two arms' own estimates, for one split and for a drop over two."""
    rng = np.random.default_rng(trial)
    arms = []
    for _ in range(2):
        test, shifted = rng.uniform(size=(4, 30, 5)), rng.uniform(size=(4, 25, 5))
        for values in (test, shifted):
            values[rng.uniform(size=values.shape) < 0.3] = np.nan
            values[rng.uniform(size=values.shape) < 0.1] = 0.0
        arms.append({"test": test, "shifted": shifted})

    def drop(v):
        return np.nanmean(per_seed_mean(v["test"])[:, 2:], axis=1) - np.nanmean(
            per_seed_mean(v["shifted"])[:, 2:], axis=1
        )

    for statistic, splits in ((mean_of("test"), ("test",)), (drop, ("test", "shifted"))):
        own = [crossed_estimate({s: arm[s] for s in splits}, statistic, n_resamples=50) for arm in arms]
        paired = crossed_estimate(
            {s: arms[0][s] for s in splits}, statistic, reference={s: arms[1][s] for s in splits}, n_resamples=50
        )
        np.testing.assert_allclose(paired.estimate, own[0].estimate - own[1].estimate, rtol=0, atol=1e-12)


def test_no_p_value_below_what_the_seeds_support():
    values = np.random.default_rng(0).normal(1.0, 0.01, size=(5, 50, 1))  # a huge, consistent effect
    result = crossed_estimate({"s": values}, mean_of(), n_resamples=200)
    assert result.p_value[0] < 1e-6 and result.p_floor == 0.0625 and result.p_reported[0] == 0.0625
    assert sign_flip_floor(3) == 0.25 and sign_flip_floor(5) == 0.0625
    one = crossed_estimate({"s": values[:1]}, mean_of())
    assert np.isnan(one.low[0]) and np.isnan(one.p_value[0]) and one.estimate[0] == pytest.approx(values[0].mean())
    cases_only = crossed_estimate({"s": values[:1]}, mean_of(), seed_level=False, n_resamples=500)
    assert cases_only.low[0] < values[0].mean() < cases_only.high[0] and cases_only.p_floor == 0.0
    with pytest.raises(ValueError, match=r"the same number of seeds, got \[4, 5\]"):
        crossed_estimate({"a": values, "b": values[:4]}, mean_of("a"))
    with pytest.raises(ValueError, match="not paired"):
        crossed_estimate({"s": values}, mean_of(), reference={"s": values[:, :10]})


def test_cases_of_one_subject_are_resampled_together():
    """ED and ES of a patient move together: resampled as pairs the case part of the variance is that of 20 subjects,
    not 40 independent cases (about sqrt(2) wider)."""
    subjects = np.random.default_rng(1).normal(0, 1, size=20)
    values = np.repeat(np.repeat(subjects, 2)[None, :, None], 3, axis=0)
    names = [f"patient{p:03d}_frame{f}.nii.gz" for p in range(20) for f in ("ED", "ES")]
    ids = cluster_ids(names, r"(patient\d+)")
    assert ids.tolist() == np.repeat(np.arange(20), 2).tolist() and cluster_ids(names, None).tolist() == list(range(40))
    alone = crossed_estimate({"s": values}, mean_of(), n_resamples=3000)
    paired = crossed_estimate({"s": values}, mean_of(), clusters={"s": ids}, n_resamples=3000)
    assert paired.clusters == 20 and alone.clusters == 40
    ratio = (paired.high[0] - paired.low[0]) / (alone.high[0] - alone.low[0])
    assert 1.25 < ratio < 1.6


@pytest.mark.parametrize("seed_sd, case_sd, noise_sd", [(0.05, 0.005, 0.02), (0.005, 0.05, 0.02), (0.03, 0.03, 0.05)])
def test_coverage_of_a_zero_effect(seed_sd, case_sd, noise_sd):
    """Known effect 0, known seed / case / interaction variances, 5 seeds x 60 cases: the 95% interval covers the
    truth in 93-97% of 600 simulated studies (seed-dominated, case-dominated and mixed)."""
    rng = np.random.default_rng(7)
    covered = 0
    draws = 600
    for draw in range(draws):
        values = rng.normal(0, seed_sd, (5, 1)) + rng.normal(0, case_sd, (1, 60)) + rng.normal(0, noise_sd, (5, 60))
        result = crossed_estimate({"s": values[..., None]}, mean_of(), n_resamples=200, seed=draw)
        covered += bool(result.low[0] <= 0.0 <= result.high[0])
    assert 0.93 <= covered / draws <= 0.97, covered / draws
