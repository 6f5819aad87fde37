"""The statistics of a study (docs/STUDY_DESIGN.md): seeds and test cases are crossed, seeds are few.

Every seed's network is scored on the same test cases, so a study's per-case values form a seeds x cases table,
and an estimate (a mean Dice, or a difference between two arms on the same seeds and cases) varies with both the
seeds drawn and the case set drawn. :func:`crossed_estimate` gives it an interval from the two parts:

- **seeds**: the variance of the per-seed values over the seeds (each seed's statistic on all cases), divided by
  the number of seeds; valid for few seeds with Student's t, as a t-interval over per-seed paired differences is;
- **cases**: the bootstrap variance of the seed-averaged estimate when the case set is resampled (case *clusters*,
  e.g. a patient's ED and ES frames together, drawn with replacement: one draw per replicate, shared by every seed
  and by both arms of a difference).

The interval is ``estimate +- t(df) * sqrt(var_seeds + var_cases)``, ``df`` by Welch-Satterthwaite (seeds - 1
for the seed part, clusters - 1 for the case part). Coverage is checked by simulation
(``tests/study/test_statistics.py``: 93-97% at a true effect of 0, for seed-dominated, case-dominated and mixed
variance). p-values come from the same t; no p-value is reported below what the seed count can support: an exact
sign-flip test over ``S`` seeds cannot go below ``2 / 2**S`` (0.0625 for 5 seeds), so that is the floor
(:attr:`Estimate.p_reported`).

Also: :func:`holm` (Holm's step-down; scipy offers only Benjamini-Hochberg/Yekutieli) and :func:`clopper_pearson`
(k of n events with scipy's exact binomial interval).
"""

import contextlib
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

__all__ = [
    "Estimate",
    "crossed_estimate",
    "per_seed_mean",
    "seed_mean",
    "sign_flip_floor",
    "holm",
    "clopper_pearson",
    "cluster_ids",
]


@contextlib.contextmanager
def _quiet():
    """Silence numpy's 'mean of empty slice' (a class absent from every case) and degenerate-sample warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            yield


PerSeed = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass
class Estimate:
    """Point estimate, interval and p-value (of ``estimate == 0``) per output, with the design that gave them.

    ``seeds``: the seeds behind the estimate; ``clusters``: the case clusters resampled (the smallest over splits);
    ``p_floor``: the smallest p-value the seed count supports (exact sign-flip test).
    """

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p_value: np.ndarray
    seeds: int
    clusters: int
    p_floor: float

    @property
    def p_reported(self) -> np.ndarray:
        """``p_value``, but never below :attr:`p_floor`."""
        return np.where(np.isnan(self.p_value), np.nan, np.maximum(self.p_value, self.p_floor))


def sign_flip_floor(seeds: int) -> float:
    """The smallest two-sided p-value an exact sign-flip test over ``seeds`` paired values can give: ``2 / 2**seeds``."""
    return min(1.0, 2.0 / 2.0**seeds) if seeds > 0 else float("nan")


def per_seed_mean(values: np.ndarray) -> np.ndarray:
    """``(S, N, ...)`` case values -> ``(S, ...)``: each seed's mean over its cases with a value (NaN left out)."""
    with _quiet():
        return np.nanmean(values, axis=1)


def seed_mean(values: np.ndarray) -> np.ndarray:
    """``(S, N, ...)`` case values -> mean over seeds of each seed's mean over its cases (NaN left out)."""
    with _quiet():
        return np.nanmean(per_seed_mean(values), axis=0)


def cluster_ids(names: Sequence[str], pattern: Optional[str]) -> np.ndarray:
    """Cluster index per case: the first group of the regular expression ``pattern`` in each name (e.g.
    ``r"(patient\\d+)"``: a patient's ED and ES together); every case its own cluster without a pattern or a match."""
    import re

    order: dict = {}
    ids = []
    for index, name in enumerate(names):
        match = re.search(pattern, str(name)) if pattern else None
        key = (match.group(1) if match.groups() else match.group(0)) if match else ("#", index)
        ids.append(order.setdefault(key, len(order)))  # numbered in order of first appearance
    return np.asarray(ids, dtype=np.int64)


def crossed_estimate(
    values: Mapping[str, np.ndarray],
    per_seed: PerSeed,
    reference: Optional[Mapping[str, np.ndarray]] = None,
    clusters: Optional[Mapping[str, np.ndarray]] = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    seed_level: bool = True,
) -> Estimate:
    """An estimate over crossed seeds x cases, or the difference of two arms on the same seeds and cases.

    Args:
        values: ``{split: (S, N_split, ...)}`` per-case values of one arm (NaN: no value), the same seeds in order
            in every split.
        per_seed: ``{split: (S, N, ...)} -> (S, ...)``, the statistic of each seed (e.g. :func:`per_seed_mean`, or a
            rare-class drop between two splits); seeds must be treated independently (row by row).
        reference: the compared arm's values (same seeds, same cases in the same order): the estimate is then
            ``mean_s per_seed(values) - mean_s per_seed(reference)``, which equals the difference of the two arms'
            own estimates exactly; every resample draws the same seeds and cases for both.
        clusters: ``{split: (N,) ints}``, cases that share a subject (resampled together); default: each case alone.
        n_resamples: case-set resamples.
        confidence: level of the interval.
        seed: seed of the resampling.
        seed_level: ``False`` for one trained network whose interval is over cases only (a model card: the percentile
            interval of the case resamples, which stays inside the metric's range); with ``True`` and one seed the
            interval and p-value are NaN (training variance unknown).

    Returns:
        :class:`Estimate`.

    Raises:
        ValueError: splits with different seed counts, a reference of another shape, or cluster ids of another length.
    """
    splits = list(values)
    stacks = [values] if reference is None else [values, reference]
    data = {}
    for s in splits:
        parts = [np.asarray(v[s], dtype=np.float64) for v in stacks]
        if len({p.shape for p in parts}) != 1:
            raise ValueError(
                f"split {s!r}: the reference's values {parts[1].shape} are not paired with {parts[0].shape}"
            )
        data[s] = np.stack(parts)  # (A, S, N, ...): A = 1, or 2 with the reference
    counts = {d.shape[1] for d in data.values()}
    if len(counts) != 1:
        raise ValueError(f"every split needs the same number of seeds, got {sorted(counts)}")

    def by_seed(chosen: Mapping[str, np.ndarray]) -> np.ndarray:
        with _quiet():
            result = np.asarray(per_seed({s: chosen[s][0] for s in splits}), dtype=np.float64)
            if reference is not None:
                result = result - np.asarray(per_seed({s: chosen[s][1] for s in splits}), dtype=np.float64)
        return result

    with _quiet():
        seeds_values = by_seed(data)  # (S, ...)
        estimate = np.atleast_1d(np.nanmean(seeds_values, axis=0))
        flat = seeds_values.reshape(seeds_values.shape[0], -1)
        finite = np.sum(np.isfinite(flat), axis=0).reshape(estimate.shape)
        var_seeds = (
            np.nanvar(flat, axis=0, ddof=1).reshape(estimate.shape) / finite
            if flat.shape[0] > 1
            else np.full(estimate.shape, np.nan)
        )
    seeds = int(finite.max()) if finite.size else 0
    groups = {}
    for s in splits:
        cases = data[s].shape[2]
        ids = np.arange(cases) if clusters is None or s not in clusters else np.asarray(clusters[s])
        if len(ids) != cases:
            raise ValueError(f"split {s!r}: {len(ids)} cluster ids for {cases} cases")
        groups[s] = [np.flatnonzero(ids == g) for g in np.unique(ids)]
    num_clusters = min(len(g) for g in groups.values())
    floor = sign_flip_floor(seeds) if seed_level else 0.0
    nan = np.full(estimate.shape, np.nan)
    if (seed_level and seeds < 2) or num_clusters < 2:
        return Estimate(estimate, nan, nan.copy(), nan.copy(), seeds, num_clusters, floor)

    replicates = _case_replicates(by_seed, data, groups, n_resamples, np.random.default_rng(seed)).reshape(
        (n_resamples,) + estimate.shape
    )
    if not seed_level:
        with _quiet():
            low = np.nanpercentile(replicates, 50 * (1 - confidence), axis=0)
            high = np.nanpercentile(replicates, 50 * (1 + confidence), axis=0)
            below, above = np.mean(replicates <= 0, axis=0), np.mean(replicates >= 0, axis=0)
        p_value = np.minimum(1.0, 2 * np.minimum(below, above) + 1.0 / (n_resamples + 1))
        return Estimate(estimate, low, high, np.where(np.isnan(estimate), np.nan, p_value), seeds, num_clusters, 0.0)
    with _quiet():
        var_cases = np.nanvar(replicates, axis=0, ddof=1)
        total = var_seeds + var_cases
        df = total**2 / (
            var_seeds**2 / np.maximum(finite - 1, 1) + var_cases**2 / (num_clusters - 1)
        )  # Welch-Satterthwaite
        se = np.sqrt(total)
        quantile = stats.t.ppf(0.5 + confidence / 2, df)
        margin = np.where(se > 0, quantile * se, 0.0)  # no variance at all (identical arms): the point itself
        low, high = estimate - margin, estimate + margin
        p_value = np.where(
            se > 0, 2 * stats.t.sf(np.abs(estimate) / np.where(se > 0, se, 1), df), np.where(estimate == 0, 1.0, 0.0)
        )
    p_value = np.where(np.isnan(estimate), np.nan, p_value)
    return Estimate(estimate, low, high, p_value, seeds, num_clusters, floor)


def _case_replicates(by_seed, data, groups, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(R, outputs)``: the seed-averaged statistic on ``R`` resampled case sets (clusters drawn with replacement,
    one draw per replicate shared by every seed and both arms). Where every cluster of a split has the same size, a
    chunk of replicates is computed at once, stacked on the seed axis (``per_seed`` treats seeds row by row)."""
    splits = list(groups)
    seeds = data[splits[0]].shape[1]
    equal = all(len({len(g) for g in groups[s]}) == 1 for s in splits)
    per_replicate = max(
        d.shape[0] * seeds * int(np.prod(d.shape[2:])) for d in data.values()
    )  # values a replicate copies
    chunk = (
        max(1, min(n_resamples, int(2e7 // max(1, per_replicate)))) if equal else 1
    )  # about 160 MB of float64 at once
    out = []
    done = 0
    while done < n_resamples:
        count = min(chunk, n_resamples - done)
        if equal:
            chosen = {}
            for s in splits:
                table = np.stack(groups[s])  # (clusters, cluster size)
                index = table[rng.integers(0, len(table), (count, len(table)))].reshape(count, -1)  # (count, cases)
                picked = data[s][:, :, index]  # (A, S, count, cases, ...)
                chosen[s] = picked.reshape((picked.shape[0], seeds * count) + picked.shape[3:])
            values = by_seed(chosen)
            with _quiet():
                out.append(np.nanmean(values.reshape((seeds, count) + values.shape[1:]), axis=0).reshape(count, -1))
        else:
            index = {
                s: np.concatenate([groups[s][g] for g in rng.integers(0, len(groups[s]), len(groups[s]))])
                for s in splits
            }
            with _quiet():
                out.append(np.nanmean(by_seed({s: data[s][:, :, index[s]] for s in splits}), axis=0).reshape(1, -1))
        done += count
    return np.concatenate(out)


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
