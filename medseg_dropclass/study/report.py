"""The study report: primary endpoint, per-class tables with crossed seed x case intervals, Holm-adjusted
p-values, collapse events with exact intervals, costs, and the per-class difference figure.

Reads what :func:`medseg_dropclass.study.compare.run_study` collects (``results.json``). The design
and the statistics follow docs/STUDY_DESIGN.md: seeds are the replicates, seeds and test cases are crossed.
"""

import math
import pathlib
import warnings
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from medseg_dropclass.data.stats import RARE
from medseg_dropclass.evaluation.figures import save_figure
from medseg_dropclass.evaluation.metrics import FREQUENCY_BINS
from medseg_dropclass.study.formatting import FLOOR_NOTE, design_text, interval_text, p_text, signed_text
from medseg_dropclass.study.statistics import (
    Estimate,
    clopper_pearson,
    cluster_ids,
    crossed_estimate,
    holm,
    per_seed_mean,
    seed_mean,
    sign_flip_floor,
)

__all__ = [
    "COLLAPSE_DICE",
    "case_matrix",
    "seed_cases",
    "finished_arms",
    "finished_seeds",
    "rare_classes",
    "SHIFT",
    "shift_text",
    "shifted_split",
    "reference_arm",
    "primary_endpoint",
    "endpoint_difference",
    "primary_endpoints",
    "rare_class_mean",
    "rare_difference",
    "fastest_run_seconds",
    "common_setting",
    "run_setting",
    "class_differences",
    "collapse_events",
    "plain_summary",
    "validation_curves",
    "write_validation_figure",
    "write_report",
    "write_difference_figure",
    "study_seeds",
    "held_out_lines",
    "case_clusters",
    "class_estimates",
]

COLLAPSE_DICE = 0.1  # a run whose mean Dice of a class (in distribution) is below this has lost the class


def finished_arms(results: dict) -> List[str]:
    """The study's arms (in ``results["arms"]`` order) with at least one finished run: those a report can show."""
    return [arm for arm, entry in results["arms"].items() if entry["seeds"]]


def finished_seeds(results: dict, *arms: str) -> List[int]:
    """The seeds (in ``results["seeds"]`` order) every one of ``arms`` has finished (a study may be in progress)."""
    return [
        s
        for s in results["seeds"]
        if all(str(s) in results["arms"][a]["seeds"] or s in results["arms"][a]["seeds"] for a in arms)
    ]


def _run(results: dict, arm: str, seed) -> dict:
    """One finished run's entry (seeds are keys as text in a results.json, as numbers in memory)."""
    runs = results["arms"][arm]["seeds"]
    return runs[str(seed)] if str(seed) in runs else runs[seed]


def case_groups(results: dict, split: str) -> Dict[str, str]:
    """``{group: text}`` of the evaluation's case groups on ``split`` (e.g. ACDC's ED/ES), from a finished run."""
    for entry in results["arms"].values():
        for run in entry["seeds"].values():
            groups = run["summaries"][split].get("groups", {})
            return {name: part.get("match", f"_{name}.") for name, part in groups.items()}
    return {}


def case_matrix(
    results: dict,
    arm: str,
    split: str,
    metric: str = "Dice",
    seeds: Optional[Sequence[int]] = None,
    group: Optional[str] = None,
) -> np.ndarray:
    """``(S, N, K)`` per-case values of one arm on one split for ``seeds`` (default: the arm's finished seeds; NaN: no
    value); ``group``: only the cases whose reference file name contains that text (see :func:`case_groups`)."""
    names = results["class_names"]
    rows = []
    for cases in seed_cases(results, arm, split, seeds):
        if group is not None:
            cases = [case for case in cases if group in pathlib.Path(case["reference"]).name]
        rows.append([[_value(case["metrics"][n][metric]) for n in names] for case in cases])
    return np.asarray(rows, dtype=np.float64)


def seed_cases(results: dict, arm: str, split: str, seeds: Optional[Sequence[int]] = None) -> List[List[dict]]:
    """Per seed (default: the arm's finished seeds), the ``metric_per_case`` entries of one arm on one split."""
    out = []
    for seed in finished_seeds(results, arm) if seeds is None else seeds:
        entry = results["arms"][arm]["seeds"].get(str(seed), results["arms"][arm]["seeds"].get(seed))
        if entry is None:
            raise KeyError(f"arm {arm!r} has no finished run for seed {seed}")
        out.append(entry["summaries"][split]["metric_per_case"])
    return out


def _value(value) -> float:
    return float("nan") if value is None else float(value)


def rare_classes(results: dict) -> List[int]:
    """The endpoint's classes: ``results["endpoint_classes"]`` (names, chosen before the runs) where the study
    names them, else the foreground classes with a training share below 1% (the frequency bins' "rare")."""
    if results.get("endpoint_classes"):
        return [results["class_names"].index(name) for name in results["endpoint_classes"]]
    return [k for k, share in enumerate(results["class_share"]) if k > 0 and 0 < share < RARE]


def rare_classes_text(results: dict) -> str:
    """How the endpoint's classes were chosen, in words."""
    names = results["class_names"]
    chosen = ", ".join(names[k] for k in rare_classes(results)) or "none"
    if results.get("endpoint_classes"):
        shares = ", ".join(f"{names[k]} {100 * results['class_share'][k]:.2f}%" for k in rare_classes(results))
        return f"Endpoint classes (named by the study before the runs; training shares {shares})"
    return f"Rare classes (training share < {100 * RARE:.0f}%): {chosen}"


SHIFT = "the context shift"  # what a shifted split changes, unless the study file names it (its ``shift`` key)


def shift_text(results: dict) -> str:
    """What the shifted split changes, as the study file names it (``results["shift"]``), else :data:`SHIFT`."""
    return results.get("shift") or SHIFT


def shifted_split(results: dict) -> Optional[str]:
    """The context-shifted evaluation split (its name contains "shift"), if the dataset has one."""
    return next((s for s in results["splits"] if "shift" in s), None)


def reference_arm(results: dict, arm: str) -> str:
    """The arm ``arm`` is compared with: its declared reference when that ran, else ``baseline``."""
    declared = results["arms"][arm].get("reference", "baseline")
    for candidate in (declared, "baseline"):
        if candidate in finished_arms(results):
            return candidate
    return arm  # nothing to compare with in this study


def study_seeds(results: dict, arms: Optional[Sequence[str]] = None) -> List[int]:
    """The seeds every one of ``arms`` (default: every arm with a finished run) has finished: a report's every number
    is computed on these, so each difference equals the difference of the columns beside it."""
    arms = finished_arms(results) if arms is None else list(arms)
    return finished_seeds(results, *arms) if arms else []


def held_out_lines(results: dict) -> List[str]:
    """The report's lines naming the arms not in its tables yet: those held out until they finish
    (``results["held_out"]``, set by :func:`medseg_dropclass.study.study_file.hold_out_unfinished_arms`) and those
    without a finished run; none when every arm of the study is in the tables."""
    held = results.get("held_out") or {}
    finished = finished_arms(results)
    not_run = [arm for arm in results["arms"] if arm not in finished]
    if not held and not not_run:
        return []
    asked = len(results["seeds"])
    lines = []
    if held:
        lines.append(
            "Held out of every table until they have finished every seed the study asks for (or until the arm they are "
            "compared with has): "
            + "; ".join(f"`{arm}` ({len(seeds)} of {asked} seeds finished)" for arm, seeds in held.items())
            + "."
        )
    if not_run:
        lines.append("Not run yet: " + ", ".join(f"`{arm}`" for arm in not_run) + ".")
    lines.append(
        "Until they enter, the p-values are Holm-adjusted over the compared arms shown, fewer than the study names."
    )
    return [" ".join(lines), ""]


def case_clusters(results: dict, arm: str, split: str, seeds: Sequence[int], group: Optional[str] = None) -> np.ndarray:
    """Cluster id per case of ``split`` (cases that share a subject, resampled together): ``results["cluster_pattern"]``
    (a regular expression whose first group names the subject in a reference file name, e.g. ACDC's patient) or each
    case alone."""
    cases = seed_cases(results, arm, split, list(seeds)[:1])[0] if len(seeds) else []
    if group is not None:
        cases = [case for case in cases if group in pathlib.Path(case["reference"]).name]
    return cluster_ids(
        [pathlib.Path(case.get("reference", f"case{i}")).name for i, case in enumerate(cases)],
        results.get("cluster_pattern"),
    )


def rare_class_mean(classes: Sequence[int]):
    """``(S, K)`` per-seed class means -> ``(S,)`` their mean over ``classes`` (a class without a value left out)."""

    def rare(means: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.nanmean(means[:, list(classes)], axis=1) if len(classes) else np.full(means.shape[0], np.nan)

    return rare


def _endpoint_inputs(results: dict, arm: str, seeds: Sequence[int]):
    """``(rare-class mean, {key: split}, {key: case matrix of arm}, bootstrap options)`` of the primary endpoint."""
    rare = rare_class_mean(rare_classes(results))
    test, shifted = results["splits"][0], shifted_split(results)
    splits = {"test": test} if shifted is None else {"test": test, "shifted": shifted}
    own = {key: case_matrix(results, arm, split, seeds=seeds) for key, split in splits.items()}
    clusters = {key: case_clusters(results, arm, split, seeds) for key, split in splits.items()}
    return rare, splits, own, {"clusters": clusters}


def _endpoint_statistic(rare, splits: Dict[str, str]):
    """Per-seed statistic of the endpoint: the rare-class drop, or in-distribution rare Dice without a shifted split."""
    if "shifted" not in splits:
        return lambda v: rare(per_seed_mean(v["test"]))
    return lambda v: rare(per_seed_mean(v["test"])) - rare(per_seed_mean(v["shifted"]))


def endpoint_difference(
    results: dict, arm: str, reference: str, n_resamples: int = 2000, seeds: Optional[Sequence[int]] = None
) -> Estimate:
    """The primary endpoint's contrast alone, as :func:`primary_endpoint` computes it: ``arm``'s drop minus
    ``reference``'s, or without a shifted split the in-distribution rare Dice difference."""
    seeds = list(seeds) if seeds is not None else finished_seeds(results, arm, reference)
    rare, splits, own, options = _endpoint_inputs(results, arm, seeds)
    other = {key: case_matrix(results, reference, split, seeds=seeds) for key, split in splits.items()}
    return crossed_estimate(own, _endpoint_statistic(rare, splits), reference=other, n_resamples=n_resamples, **options)


def primary_endpoint(
    results: dict,
    arm: str,
    reference: Optional[str] = None,
    n_resamples: int = 2000,
    seeds: Optional[Sequence[int]] = None,
) -> Dict[str, Estimate]:
    """Rare-class Dice in distribution, under the shift, and their difference (the drop) for ``arm``; with a
    ``reference``, the arm's drop minus the reference's drop. Crossed seed x case intervals (:func:`crossed_estimate`).

    Each arm averages its own defined values (a class without a value in a case is left out of that arm's mean,
    never out of the other arm's), and every number is on the same ``seeds`` (default: those both arms finished), so
    ``drop == in_distribution - shifted`` and ``drop_minus_reference == drop(arm) - drop(reference)`` exactly.

    Returns ``{"in_distribution", "shifted", "drop"}`` and, with a reference, ``"drop_minus_reference"``; without a
    shifted split ``{"in_distribution"}`` and, with a reference, ``"in_distribution_minus_reference"`` (the endpoint then).
    """
    seeds = list(seeds) if seeds is not None else finished_seeds(results, arm, *([reference] if reference else []))
    rare, splits, own, options = _endpoint_inputs(results, arm, seeds)
    options["n_resamples"] = n_resamples
    out = {
        "in_distribution": crossed_estimate({"test": own["test"]}, lambda v: rare(per_seed_mean(v["test"])), **options)
    }
    if "shifted" in splits:
        out["shifted"] = crossed_estimate(
            {"shifted": own["shifted"]}, lambda v: rare(per_seed_mean(v["shifted"])), **options
        )
        out["drop"] = crossed_estimate(own, _endpoint_statistic(rare, splits), **options)
    if reference is not None and reference != arm:
        key = "drop_minus_reference" if "shifted" in splits else "in_distribution_minus_reference"
        out[key] = endpoint_difference(results, arm, reference, n_resamples, seeds)
    return out


def rare_difference(
    results: dict, arm: str, reference: str, split: str, n_resamples: int, seeds: Sequence[int]
) -> Estimate:
    """Mean Dice of the endpoint's classes on ``split``, ``arm - reference`` (each arm averaging its own values) on
    the same seeds and cases: equal to the difference of the two arms' columns in the study's report."""
    rare = rare_class_mean(rare_classes(results))
    return crossed_estimate(
        {"s": case_matrix(results, arm, split, seeds=seeds)},
        lambda v: rare(per_seed_mean(v["s"])),
        reference={"s": case_matrix(results, reference, split, seeds=seeds)},
        clusters={"s": case_clusters(results, arm, split, seeds)},
        n_resamples=n_resamples,
    )


def primary_endpoints(
    results: dict, arms: Sequence[str], n_resamples: int = 2000, seeds: Optional[Sequence[int]] = None
) -> Tuple[Dict[str, Dict[str, Estimate]], Dict[str, float], float]:
    """:func:`primary_endpoint` of every arm against its compared arm, on ``seeds`` (default: those every arm finished),
    with the endpoint's p-values (never below the seed count's floor) Holm-adjusted over the compared arms.

    Returns ``(estimates per arm, Holm-adjusted p per compared arm, the seed count's p floor)``."""
    seeds = study_seeds(results, arms) if seeds is None else list(seeds)
    primaries = {}
    for arm in arms:
        reference = reference_arm(results, arm) if reference_arm(results, arm) != arm else None
        primaries[arm] = primary_endpoint(results, arm, reference, n_resamples, seeds)
    key = "in_distribution_minus_reference" if shifted_split(results) is None else "drop_minus_reference"
    compared = [a for a in arms if key in primaries[a]]
    adjusted = dict(zip(compared, (float(p) for p in holm([primaries[a][key].p_reported[0] for a in compared]))))
    floor = next((primaries[a][key].p_floor for a in compared), float("nan"))
    return primaries, adjusted, floor


def run_setting(cost: dict) -> str:
    """How a run was trained, as far as its cost entry records it (a run's wall time compares only with runs trained
    alike): ``"2 threads, alone"``, ``"1 thread, 2 side by side"``, ``"1 thread"`` (side by side unrecorded), or
    ``"unrecorded"`` (runs from before either was recorded)."""
    threads, side_by_side = cost.get("threads"), cost.get("side_by_side")
    if threads is None:
        return "unrecorded"
    text = f"{threads} thread{'s' if threads != 1 else ''}"
    if side_by_side is None:
        return text
    return text + (", alone" if side_by_side == 1 else f", {side_by_side} side by side")


def _fresh_costs(results: dict, arm: str, seeds: Sequence[int], setting: Optional[str] = None) -> List[dict]:
    """Cost entries of ``arm``'s runs of ``seeds`` that were not resumed (a resumed run's time covers only its last
    part), trained under ``setting`` where given (:func:`run_setting`)."""
    costs = [entry["cost"] for entry in (_run(results, arm, seed) for seed in seeds) if not entry.get("resumed")]
    return [c for c in costs if setting is None or run_setting(c) == setting]


def common_setting(results: dict, arms: Sequence[str], seeds: Sequence[int]) -> Optional[str]:
    """The :func:`run_setting` under which every arm has a run of ``seeds`` that was not resumed (the one with most
    such runs where several are), or ``None``: then the arms' wall times do not compare."""
    per_arm = [Counter(run_setting(c) for c in _fresh_costs(results, arm, seeds)) for arm in arms]
    shared = set.intersection(*(set(c) for c in per_arm)) if per_arm else set()
    return max(shared, key=lambda k: (sum(c[k] for c in per_arm), k)) if shared else None


def fastest_run_seconds(results: dict, arm: str, seeds: Sequence[int], setting: Optional[str] = None) -> float:
    """The fastest training wall time of ``arm`` over ``seeds`` (other work on a machine only slows a run down, as
    ``timeit`` takes the minimum), among runs trained under ``setting`` where given (:func:`run_setting`); a resumed
    run's time covers only its last part and is left out (NaN: none left)."""
    costs = _fresh_costs(results, arm, seeds, setting)
    return float(np.min([c["seconds"] for c in costs])) if costs else float("nan")


def class_estimates(
    results: dict,
    arm: str,
    split: str,
    metric: str = "Dice",
    n_resamples: int = 2000,
    seeds: Optional[Sequence[int]] = None,
    group: Optional[str] = None,
    reference: Optional[str] = None,
) -> Estimate:
    """Per-class mean ``(K,)`` of ``arm`` on ``split`` (or ``arm - reference``, paired by seed and case, each arm
    averaging its own defined values), crossed seed x case intervals, on ``seeds`` (default: those both finished)."""
    seeds = list(seeds) if seeds is not None else finished_seeds(results, arm, *([reference] if reference else []))
    values = {"s": case_matrix(results, arm, split, metric, seeds, group)}
    other = {"s": case_matrix(results, reference, split, metric, seeds, group)} if reference else None
    return crossed_estimate(
        values,
        lambda v: per_seed_mean(v["s"]),
        reference=other,
        n_resamples=n_resamples,
        clusters={"s": case_clusters(results, arm, split, seeds, group)},
    )


def class_differences(
    results: dict,
    arm: str,
    reference: str,
    split: str,
    metric: str = "Dice",
    n_resamples: int = 2000,
    seeds: Optional[Sequence[int]] = None,
) -> Estimate:
    """Per-class ``arm - reference`` ``(K,)``: :func:`class_estimates` of the pair (equal to the difference of the arms'
    own per-class means on the same seeds)."""
    return class_estimates(results, arm, split, metric, n_resamples, seeds, reference=reference)


def collapse_events(results: dict, arm: str) -> Tuple[int, int, List[str]]:
    """Runs of ``arm`` in which some foreground class has mean Dice below :data:`COLLAPSE_DICE` in
    distribution while the reference arm's run of the same seed has it at 0.5 or more: ``(k, n, which)``."""
    split = results["splits"][0]
    names = results["class_names"]
    reference = reference_arm(results, arm)
    common = finished_seeds(results, arm, reference)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = np.nanmean(case_matrix(results, arm, split, seeds=common), axis=1)
        base = np.nanmean(case_matrix(results, reference, split, seeds=common), axis=1)
    which = []
    k = 0
    for s, seed in enumerate(common):
        lost = [names[c] for c in range(1, len(names)) if values[s, c] < COLLAPSE_DICE and base[s, c] >= 0.5]
        if lost:
            k += 1
            which.append(f"seed {seed}: {', '.join(lost)}")
    return k, len(common), which


def plain_summary(results: dict, seeds: Optional[Sequence[int]] = None) -> List[str]:
    """The first lines of a report in plain words: what each arm did on the rare classes, in distribution and under
    the shift (the same numbers as the tables below: on ``seeds``, default :func:`study_seeds`), and what the number
    of seeds allows to conclude."""
    names = results["class_names"]
    rare = rare_classes(results)
    rare_of = rare_class_mean(rare)
    test, shifted = results["splits"][0], shifted_split(results)
    seeds = study_seeds(results) if seeds is None else list(seeds)
    if results.get("endpoint_classes"):
        lines = [f"**{rare_classes_text(results)}**, mean Dice:"]
    else:
        lines = [
            f"**Rare classes** ({', '.join(names[k] for k in rare) or 'none'}; each under {100 * RARE:.0f}% of the training pixels), mean Dice:"
        ]
    for arm in finished_arms(results):
        by_seed = per_seed_mean(case_matrix(results, arm, test, seeds=seeds))
        own = float(np.nanmean(rare_of(by_seed)))
        text = f"- `{arm}`: {own:.3f} in distribution"
        if shifted is not None:
            moved = float(np.nanmean(rare_of(per_seed_mean(case_matrix(results, arm, shifted, seeds=seeds)))))
            text += f", {moved:.3f} under {shift_text(results)} (drop {own - moved:+.3f})"
        per_class = seed_mean(case_matrix(results, arm, test, seeds=seeds))
        lines.append(text + "; per class " + ", ".join(f"{names[k]} {per_class[k]:.3f}" for k in rare) + ".")
    if len(seeds) < 2:
        lines.append(
            "One seed: no interval can be given, and differences of a few hundredths between arms are within what "
            "another seed gives. The multi-seed studies with intervals are in docs/RESULTS.md (`python -m medseg_dropclass compare`)."
        )
    else:
        lines.append(f"{len(seeds)} seeds, each arm on the same seeds and test cases; intervals and tests below.")
    return lines


def write_report(
    results: dict,
    output_dir: str,
    title: Optional[str] = None,
    n_resamples: int = 2000,
    contrasts: Sequence[Tuple[str, str]] = (),
) -> pathlib.Path:
    """``report.md`` (headed ``title``, default: baseline vs DropClass) and ``delta_dice_vs_share.png`` in
    ``output_dir``; returns the report's path.

    ``contrasts``: further ``(arm, other arm)`` differences of the endpoint (secondary, not in the Holm family), e.g.
    copy-paste against DropClass.

    Every number is on the seeds every reported arm finished (:func:`study_seeds`), so a difference always equals
    the difference of the arm columns it compares (to the printed digit, up to rounding of the last)."""
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    names, share, splits = results["class_names"], results["class_share"], results["splits"]
    arms = finished_arms(results)
    seeds = study_seeds(results, arms)
    left_out = {a: sorted(set(finished_seeds(results, a)) - set(seeds)) for a in arms}
    shifted = shifted_split(results)
    one_seed = len(seeds) < 2
    lines = [f"# {title or 'Baseline vs DropClass, per class'}", ""]
    if results.get("study"):
        study = results["study"]
        lines += [
            f"Study file `{study['path']}` (git blob `{study['blob'][:12]}`"
            + (f", registered {study['registered']}" if study.get("registered") else "")
            + ")"
            + (f": {study['question']}" if study.get("question") else "."),
            "",
        ]
    lines += plain_summary(results, seeds) + [""]
    clustering = (
        f"cases sharing a subject (pattern `{results['cluster_pattern']}` in the reference file name) are resampled "
        "together"
        if results.get("cluster_pattern")
        else "each test case resampled alone"
    )
    lines += [
        f"Bundle `{results['bundle']}`, {len(seeds)} seed(s) finished by every arm ({', '.join(map(str, seeds))}), "
        f"budget 1x = {results['max_epochs']} epochs (an arm's budget, in the table below, multiplies it); networks of "
        "the last epoch (no checkpoint selection). Per class: mean over seeds of each seed's per-case mean (a class "
        "absent from reference and prediction of a case has no value, as in nnU-Net; each arm averages its own values). "
        "Differences are differences of the arms' own statistics on the same seeds and cases. Intervals: 95%, seeds "
        "and cases crossed (every seed is scored on the same cases): seed variance (t over seeds) plus case-set variance "
        f"(bootstrap; {clustering}), Welch-Satterthwaite degrees of freedom (docs/STUDY_DESIGN.md). "
        + ("**One seed: no interval can be given** (training variance is unknown)." if one_seed else ""),
        "",
    ]
    unfinished = [s for s in results["seeds"] if s not in seeds]
    if unfinished:
        lines += [
            f"Seeds the study asks for but not every arm has finished yet: {', '.join(map(str, unfinished))}.",
            "",
        ]
    lines += held_out_lines(results)
    extra = {a: s for a, s in left_out.items() if s}
    if extra:
        lines += [
            "Runs of seeds not finished by every arm are left out: "
            + "; ".join(f"`{a}` seed(s) {', '.join(map(str, s))}" for a, s in extra.items())
            + ".",
            "",
        ]
    lines += ["| arm | what | budget | seeds | compared with | drop sequence |", "|---|---|---:|---:|---|---|"]
    for arm in arms:
        entry = results["arms"][arm]
        lines.append(
            f"| {arm} | {entry['description']} | {entry.get('budget', 1)}x | {len(seeds)} "
            f"| {reference_arm(results, arm) if reference_arm(results, arm) != arm else '-'} | {entry.get('drop_sequence', 'own stream')} |"
        )
    lines += ["", "## Primary endpoint", ""]
    lines.append(
        f"{rare_classes_text(results)}. Endpoint, stated before the runs: the mean rare-class "
        f"Dice in distribution (`{splits[0]}`) minus under {shift_text(results)} (`{shifted}`), per arm, and its difference "
        "from the compared arm's drop (negative: the arm loses less under the shift)."
        if shifted
        else f"{rare_classes_text(results)}. No shifted split in this study: the endpoint is their mean Dice on `{splits[0]}`, "
        "each arm minus its compared arm."
    )
    lines[-1] += (
        f" p: t with the interval's degrees of freedom, never below what {len(seeds)} seed(s) can support "
        f"({sign_flip_floor(len(seeds)):.3g}, an exact sign-flip test's smallest p), Holm-adjusted over the compared arms."
    )
    if shifted is None:
        lines += ["", "| arm | rare Dice | compared arm's | difference | p (Holm) |", "|---|---:|---:|---:|---:|"]
    else:
        lines += [
            "",
            "| arm | rare Dice in distribution | rare Dice shifted | drop | compared arm's drop | drop minus compared arm's | p (Holm) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
    primaries, adjusted, floor = primary_endpoints(results, arms, n_resamples, seeds)
    compared = list(adjusted)
    for arm in arms:
        result = primaries[arm]
        reference = reference_arm(results, arm)
        if shifted is None:
            difference = result.get("in_distribution_minus_reference")
            lines.append(
                f"| {arm} | {interval_text(result['in_distribution'])} | "
                + (
                    f"{interval_text(primaries[reference]['in_distribution'])} (`{reference}`) | {signed_text(difference)} | "
                    f"{p_text(adjusted[arm], floor)} |"
                    if difference is not None
                    else "- | - | - |"
                )
            )
            continue
        difference = result.get("drop_minus_reference")
        lines.append(
            f"| {arm} | {interval_text(result['in_distribution'])} | {interval_text(result['shifted'])} | {signed_text(result['drop'])} | "
            + (
                f"{signed_text(primaries[reference]['drop'])} (`{reference}`) | {signed_text(difference)} | {p_text(adjusted[arm], floor)} |"
                if difference is not None
                else "- | - | - |"
            )
        )
    if compared and any(adjusted[a] <= floor * (1 + 1e-9) for a in compared):
        lines += ["", FLOOR_NOTE]
    lines += _contrast_lines(results, [(a, b) for a, b in contrasts if a in arms and b in arms], n_resamples, seeds)

    for split in splits:
        per_arm = {arm: class_estimates(results, arm, split, n_resamples=n_resamples, seeds=seeds) for arm in arms}
        design = design_text(next(iter(per_arm.values())))
        lines += ["", f"## Dice per class, split `{split}` (mean over seeds [95% interval, {design}])", ""]
        lines.append("| class | share | " + " | ".join(arms) + " |")
        lines.append("|---|---:|" + "---:|" * len(arms))
        for k, name in enumerate(names):
            lines.append(
                f"| {name} | {100 * share[k]:.3f}% | " + " | ".join(interval_text(per_arm[a], k) for a in arms) + " |"
            )
        for bin_name, _, _ in FREQUENCY_BINS:
            cells = []
            for arm in arms:
                values = [
                    results["arms"][arm]["seeds"][str(s)]["summaries"][split]["frequency_bins"][bin_name]["Dice"]
                    for s in seeds
                ]
                values = [v for v in values if v is not None and not math.isnan(v)]
                cells.append(f"{np.mean(values):.3f}" if values else "n/a")
            lines.append(f"| *bin {bin_name}* | | " + " | ".join(cells) + " |")

        groups = case_groups(results, split)
        if groups:
            lines += ["", f"### `{split}` by case group (mean over seeds [95% interval])", ""]
            lines.append("| class | group | " + " | ".join(arms) + " |")
            lines.append("|---|---|" + "---:|" * len(arms))
            for group, text in groups.items():
                per_group = {
                    arm: class_estimates(results, arm, split, n_resamples=n_resamples, seeds=seeds, group=text)
                    for arm in arms
                }
                for k, name in enumerate(names[1:], 1):
                    lines.append(
                        f"| {name} | {group} | " + " | ".join(interval_text(per_group[a], k) for a in arms) + " |"
                    )

    differences: Dict[Tuple[str, str], Estimate] = {}
    compared_arms = [a for a in arms if reference_arm(results, a) != a]
    for arm in compared_arms:
        for split in splits:
            differences[arm, split] = class_differences(
                results, arm, reference_arm(results, arm), split, n_resamples=n_resamples, seeds=seeds
            )
    if differences:
        lines += [
            "",
            "## Per-class Dice difference from the compared arm (paired by seed and case)",
            "",
            "Secondary endpoints: each equals the difference of the two arms' columns above; 95% intervals; p-values "
            "Holm-adjusted over the foreground classes and splits of each arm.",
            "",
            "| arm | split | " + " | ".join(names[1:]) + " |",
            "|---|---|" + "---:|" * (len(names) - 1),
        ]
        floored = False
        for arm in compared_arms:
            raw = np.concatenate([differences[arm, s].p_reported[1:] for s in splits])
            adjusted_p = holm(raw).reshape(len(splits), -1)
            for i, split in enumerate(splits):
                result = differences[arm, split]
                floored |= bool(np.any(adjusted_p[i] <= result.p_floor * (1 + 1e-9)))
                cells = [
                    f"{signed_text(result, k)} (p {p_text(adjusted_p[i, k - 1], result.p_floor)})"
                    for k in range(1, len(names))
                ]
                lines.append(f"| {arm} vs {reference_arm(results, arm)} | {split} | " + " | ".join(cells) + " |")
        if floored:
            lines += ["", FLOOR_NOTE]
        figure = write_difference_figure(results, differences, out / "delta_dice_vs_share.png")
        lines += ["", f"![per-class Dice difference with 95% intervals against class share]({figure.name})"]

    curves = write_validation_figure(results, out)
    if curves is not None:
        lines += [
            "",
            "## Budget: validation Dice of the baseline during training",
            "",
            f"![validation Dice per class against epoch]({curves.name})",
        ]

    lines += [
        "",
        f"## Collapse events (a class below Dice {COLLAPSE_DICE} in distribution where the compared arm's run of the same seed has >= 0.5)",
        "",
        "Each run of an arm has its own seed (initialisation, data order) and its own drop sequence, so its runs are "
        "independent events; k of n runs with an exact (Clopper-Pearson) 95% interval.",
        "",
        "| arm | k / n | 95% interval | which |",
        "|---|---:|---:|---|",
    ]
    for arm in compared_arms:
        k, n, which = collapse_events(results, arm)
        low, high = clopper_pearson(k, n)
        lines.append(f"| {arm} | {k} / {n} | [{low:.2f}, {high:.2f}] | {'; '.join(which) or '-'} |")

    setting = common_setting(results, arms, seeds)
    lines += [
        "",
        "## Cost (same machine)",
        "",
        "Fastest run over the seeds (other work on the machine can only slow a run down, as `timeit` takes the minimum); "
        "training only, evaluation excluded; peak memory: the largest over the seeds. "
        + (
            f"Times of runs trained alike only (threads and runs side by side change them): setting `{setting}`."
            if setting
            else "**The arms have no runs trained alike** (threads, runs side by side): their wall times do not "
            "compare; each arm's fastest run is shown with its setting."
        ),
        "",
        "| arm | wall time per run (s) | images / s | peak memory (MiB) | trained |",
        "|---|---:|---:|---:|---|",
    ]
    for arm in arms:
        costs = _fresh_costs(results, arm, seeds)  # the seeds of every other table
        if not costs:
            lines.append(f"| {arm} | n/a (resumed runs only) | | | |")
            continue
        memory = np.nanmax([c["peak_memory_mib"] for c in costs])
        alike = _fresh_costs(results, arm, seeds, setting)
        fastest = min(alike, key=lambda c: c["seconds"])
        images = np.nanmax([c.get("images_per_second", float("nan")) for c in alike])
        load = f", machine load {fastest['machine_load']:.1f}" if "machine_load" in fastest else ""
        lines.append(
            f"| {arm} | {fastest['seconds']:.0f} | {images:.1f} | {memory:.0f} | {run_setting(fastest)}{load} |"
        )

    lines += [
        "",
        "## Classifier weight similarity (mean over seeds)",
        "",
        "| arm | most frequent class vs others | least frequent class vs others | mean off-diagonal |",
        "|---|---:|---:|---:|",
    ]
    for arm in arms:
        sims = [_run(results, arm, seed)["similarity"] for seed in seeds]
        cells = [
            f"{np.mean([s[key] for s in sims]):.3f}"
            for key in ("most_frequent_mean_similarity", "least_frequent_mean_similarity", "mean_off_diagonal")
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _contrast_lines(
    results: dict, contrasts: Sequence[Tuple[str, str]], n_resamples: int, seeds: Sequence[int]
) -> List[str]:
    """The secondary contrasts' table: the endpoint's rare-class Dice difference on each split and, with a shifted
    split, the difference of the drops (unadjusted p: not in the primary family)."""
    if not contrasts:
        return []
    splits, shifted = results["splits"], shifted_split(results)
    header = " | ".join(f"rare Dice `{split}`" for split in splits) + (" | drop minus other's" if shifted else "")
    lines = [
        "",
        "Secondary contrasts (named by the study before the runs; each equals the difference of the two arms' rows "
        "above on the same seeds and cases; p unadjusted, not in the Holm family):",
        "",
        f"| contrast | {header} | p |",
        "|---|" + "---:|" * (len(splits) + (1 if shifted else 0) + 1),
    ]
    for arm, other in contrasts:
        cells = [signed_text(rare_difference(results, arm, other, split, n_resamples, seeds)) for split in splits]
        endpoint = endpoint_difference(results, arm, other, n_resamples, seeds)
        if shifted:
            cells.append(signed_text(endpoint))
        floor = endpoint.p_floor
        lines.append(f"| {arm} - {other} | " + " | ".join(cells) + f" | {p_text(endpoint.p_reported[0], floor)} |")
    return lines


def validation_curves(run_dirs: Sequence[pathlib.Path], class_names: Sequence[str]) -> Dict[str, np.ndarray]:
    """Per-class validation Dice against epoch from the TensorBoard logs of runs: ``{"epochs": (E,),
    name: (R, E)}`` (NaN where a run did not log that epoch)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = []
    for run in run_dirs:
        accumulator = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
        accumulator.Reload()
        tags = set(accumulator.Tags().get("scalars", []))
        logs.append(
            {n: {e.step: e.value for e in accumulator.Scalars(f"dice/{n}")} for n in class_names if f"dice/{n}" in tags}
        )
    epochs = sorted({step for log in logs for curve in log.values() for step in curve})
    curves: Dict[str, np.ndarray] = {"epochs": np.asarray(epochs)}
    for name in class_names:
        curves[name] = np.asarray(
            [[log.get(name, {}).get(e, np.nan) for e in epochs] for log in logs], dtype=np.float64
        )
    return curves


def write_validation_figure(results: dict, output_dir: pathlib.Path, arm: str = "baseline") -> Optional[pathlib.Path]:
    """Validation Dice per class against epoch, mean and range over the seeds of ``arm``: does the budget plateau?"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if arm not in results["arms"]:
        return None
    runs = [output_dir / arm / f"seed{seed}" / "run" for seed in finished_seeds(results, arm)]
    runs = [r for r in runs if (r / "tensorboard").is_dir()]
    if not runs:
        return None
    names = results["class_names"][1:]
    curves = validation_curves(runs, names)
    if not len(curves["epochs"]):
        return None
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name in names:
        values = curves[name]
        with np.errstate(all="ignore"):
            mean = np.nanmean(values, axis=0)
        (line,) = axis.plot(curves["epochs"], mean, marker="o", markersize=3, label=name)
        axis.fill_between(
            curves["epochs"], np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=line.get_color(), alpha=0.15
        )
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation Dice (mean, range over seeds)")
    axis.set_title(f"{arm}: validation Dice per class ({len(runs)} seeds)")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7, loc="lower right")
    return save_figure(figure, output_dir / f"validation_{arm}.png", dpi=100)


def write_difference_figure(
    results: dict,
    differences: Dict[Tuple[str, str], Estimate],
    path: pathlib.Path,
    classes: Optional[Sequence[int]] = None,
    scale: float = 1.0,
    ylabel: str = "Dice difference (95% interval)",
) -> pathlib.Path:
    """Per-class difference (point and 95% interval, times ``scale``) against class share on a log axis, a panel per
    split of ``differences`` (``{(arm, split): result}``); ``classes``: default the foreground classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, share = results["class_names"], results["class_share"]
    classes = list(range(1, len(names))) if classes is None else list(classes)
    splits = [s for s in results["splits"] if any(split == s for _, split in differences)]
    arms = sorted({arm for arm, _ in differences}, key=list(results["arms"]).index)
    x_share = np.array([max(share[k], 1e-6) for k in classes])
    figure, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 4.5), sharey=True, squeeze=False)
    for axis, split in zip(axes[0], splits):
        for i, arm in enumerate(arms):
            result = differences.get((arm, split))
            if result is None:
                continue
            x = x_share * (1 + 0.06 * (i - (len(arms) - 1) / 2))  # dodge
            y = scale * result.estimate[classes]
            error = np.vstack([y - scale * result.low[classes], scale * result.high[classes] - y])
            error = None if np.isnan(error).all() else np.nan_to_num(error)
            axis.errorbar(
                x, y, yerr=error, fmt="o", capsize=2, label=f"{arm} - {reference_arm(results, arm)}", alpha=0.85
            )
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel("class share of training pixels (log)")
        axis.set_title(f"split {split}")
        for k, x in zip(classes, x_share):
            axis.annotate(names[k], (x, axis.get_ylim()[0]), fontsize=7, rotation=60, alpha=0.7, va="bottom")
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7)
    return save_figure(figure, path, dpi=100)
