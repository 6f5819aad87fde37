"""The statistics of a study (../STUDY.md): seeds are the replicates, cases are nested in seeds.

- :func:`hierarchical_bootstrap`: scipy's percentile bootstrap over seeds, with the cases of each drawn
  seed resampled inside the statistic (scipy resamples one level only; this adds the second).
- :func:`holm`: Holm's step-down adjustment (scipy offers only Benjamini-Hochberg/Yekutieli).
- :func:`clopper_pearson`: k of n events with scipy's exact binomial interval.
"""

import contextlib
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, Tuple

import numpy as np
from scipy import stats

__all__ = ["BootstrapResult", "hierarchical_bootstrap", "holm", "clopper_pearson", "seed_mean"]

@contextlib.contextmanager
def _quiet():
    """Silence numpy's 'mean of empty slice' (a class absent from every case) and scipy's degenerate-sample warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


Statistic = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass
class BootstrapResult:
    """Point estimate, percentile interval and two-sided bootstrap p-value (of ``estimate == 0``), per output."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p_value: np.ndarray
    seeds: int


def seed_mean(values: np.ndarray) -> np.ndarray:
    """``(S, N, ...)`` case values -> mean over seeds of each seed's mean over its cases (NaN left out)."""
    with _quiet():
        return np.nanmean(np.nanmean(values, axis=1), axis=0)


def hierarchical_bootstrap(
    case_values: Mapping[str, np.ndarray],
    statistic: Statistic,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Bootstrap a statistic of per-case values nested in seeds: resample seeds, then cases within each seed.

    Args:
        case_values: ``{split: (S, N_split, ...)}``, the same ``S`` seeds in every split (e.g. per-case
            Dice differences between two arms, paired by seed and case; NaN where undefined).
        statistic: maps such a mapping (resampled) to a scalar or a vector.
        n_resamples: bootstrap resamples.
        confidence: level of the percentile interval.
        seed: seed of the resampling.

    Returns:
        :class:`BootstrapResult`; with one seed the interval and p-value are NaN (no replicate).
    """
    splits = list(case_values)
    num_seeds = {np.asarray(case_values[s]).shape[0] for s in splits}
    if len(num_seeds) != 1:
        raise ValueError(f"every split needs the same number of seeds, got {sorted(num_seeds)}")
    seeds = num_seeds.pop()
    arrays = {s: np.asarray(case_values[s], dtype=np.float64) for s in splits}
    estimate = np.atleast_1d(np.asarray(statistic(arrays), dtype=np.float64))
    if seeds < 2:
        nan = np.full_like(estimate, np.nan)
        return BootstrapResult(estimate, nan, nan.copy(), nan.copy(), seeds)
    rng = np.random.default_rng(seed)

    def resampled(seed_indices: np.ndarray) -> np.ndarray:
        sample = {}
        for split, values in arrays.items():
            chosen = values[seed_indices.astype(int)]
            cases = rng.integers(0, chosen.shape[1], size=chosen.shape[:2])
            sample[split] = np.take_along_axis(chosen, cases.reshape(cases.shape + (1,) * (chosen.ndim - 2)), axis=1)
        return np.atleast_1d(np.asarray(statistic(sample), dtype=np.float64))

    with _quiet():
        result = stats.bootstrap(
            (np.arange(seeds),), resampled, vectorized=False, n_resamples=n_resamples, confidence_level=confidence,
            method="percentile", random_state=rng,
        )
    distribution = np.asarray(result.bootstrap_distribution).reshape(len(estimate), -1)
    below = np.mean(distribution <= 0, axis=1)
    above = np.mean(distribution >= 0, axis=1)
    p_value = np.minimum(1.0, 2 * np.minimum(below, above) + 1.0 / (n_resamples + 1))
    low = np.atleast_1d(result.confidence_interval.low)
    high = np.atleast_1d(result.confidence_interval.high)
    return BootstrapResult(estimate, low, high, np.where(np.isnan(estimate), np.nan, p_value), seeds)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested])]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (len(order) - rank) * p[index])
        adjusted[index] = min(1.0, running)
    return adjusted


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> Tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a rate seen ``k`` times in ``n`` independent runs."""
    if n == 0:
        return float("nan"), float("nan")
    interval = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)
