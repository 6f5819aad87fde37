"""The study report: primary endpoint, per-class tables with hierarchical-bootstrap intervals, Holm-adjusted
p-values, collapse events with exact intervals, costs, and the per-class difference figure.

Reads what :func:`medseg_dropclass.analysis.compare.run_study` collects (``results.json``). The design
and the statistics follow ``../shared/STUDY.md``: seeds are the replicates, cases are nested in seeds.
"""

import math
import pathlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from medseg_dropclass.analysis.statistics import BootstrapResult, clopper_pearson, hierarchical_bootstrap, holm, seed_mean
from medseg_dropclass.data.stats import RARE
from medseg_dropclass.figures import save_figure
from medseg_dropclass.metrics import FREQUENCY_BINS

__all__ = [
    "COLLAPSE_DICE", "case_matrix", "seed_cases", "finished_seeds", "rare_classes", "shifted_split", "reference_arm", "primary_endpoint", "class_differences",
    "collapse_events", "plain_summary", "validation_curves", "write_validation_figure", "write_report", "write_difference_figure",
]

COLLAPSE_DICE = 0.1  # a run whose mean Dice of a class (in distribution) is below this has lost the class


def finished_seeds(results: dict, *arms: str) -> List[int]:
    """The seeds (in ``results["seeds"]`` order) every one of ``arms`` has finished (a study may be in progress)."""
    return [s for s in results["seeds"] if all(str(s) in results["arms"][a]["seeds"] or s in results["arms"][a]["seeds"] for a in arms)]


def case_groups(results: dict, split: str) -> Dict[str, str]:
    """``{group: text}`` of the evaluation's case groups on ``split`` (e.g. ACDC's ED/ES), from a finished run."""
    for entry in results["arms"].values():
        for run in entry["seeds"].values():
            groups = run["summaries"][split].get("groups", {})
            return {name: part.get("match", f"_{name}.") for name, part in groups.items()}
    return {}


def case_matrix(
    results: dict, arm: str, split: str, metric: str = "Dice", seeds: Optional[Sequence[int]] = None, group: Optional[str] = None
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


def shifted_split(results: dict) -> Optional[str]:
    """The context-shifted evaluation split (its name contains "shift"), if the dataset has one."""
    return next((s for s in results["splits"] if "shift" in s), None)


def reference_arm(results: dict, arm: str) -> str:
    """The arm ``arm`` is compared with: its declared reference when that ran, else ``baseline``."""
    declared = results["arms"][arm].get("reference", "baseline")
    for candidate in (declared, "baseline"):
        if candidate in results["arms"] and results["arms"][candidate]["seeds"]:
            return candidate
    return arm  # nothing to compare with in this study


def _rare_mean(values: np.ndarray, classes: Sequence[int]) -> float:
    with np.errstate(all="ignore"):
        return float(np.nanmean(values[classes])) if len(classes) else float("nan")


def primary_endpoint(results: dict, arm: str, reference: Optional[str] = None, n_resamples: int = 2000) -> Dict[str, BootstrapResult]:
    """Rare-class Dice in distribution minus under the shift (the drop), for ``arm``, and its difference
    from ``reference``'s drop (paired by seed and case), each with a hierarchical-bootstrap interval.

    Returns ``{"drop": ..., "in_distribution": ..., "shifted": ...}`` and, with a reference,
    ``"drop_minus_reference"``. Without a shifted split the "drop" is NaN.
    """
    rare = rare_classes(results)
    test, shifted = results["splits"][0], shifted_split(results)
    own = {"test": case_matrix(results, arm, test)}
    if shifted is not None:
        own["shifted"] = case_matrix(results, arm, shifted)
    common = finished_seeds(results, arm, reference) if reference is not None else []
    out = {
        "in_distribution": hierarchical_bootstrap({"test": own["test"]}, lambda v: _rare_mean(seed_mean(v["test"]), rare), n_resamples),
    }
    if shifted is None:
        return out
    out["shifted"] = hierarchical_bootstrap({"s": own["shifted"]}, lambda v: _rare_mean(seed_mean(v["s"]), rare), n_resamples)
    out["drop"] = hierarchical_bootstrap(own, lambda v: _rare_mean(seed_mean(v["test"]) - seed_mean(v["shifted"]), rare), n_resamples)
    if reference is not None and reference != arm:
        paired = {
            "test": case_matrix(results, arm, test, seeds=common) - case_matrix(results, reference, test, seeds=common),
            "shifted": case_matrix(results, arm, shifted, seeds=common) - case_matrix(results, reference, shifted, seeds=common),
        }
        out["drop_minus_reference"] = hierarchical_bootstrap(
            paired, lambda v: _rare_mean(seed_mean(v["test"]) - seed_mean(v["shifted"]), rare), n_resamples
        )
    return out


def class_differences(results: dict, arm: str, reference: str, split: str, metric: str = "Dice", n_resamples: int = 2000) -> BootstrapResult:
    """Per-class ``arm - reference`` (paired by seed and case), hierarchical-bootstrap intervals, ``(K,)``."""
    common = finished_seeds(results, arm, reference)
    paired = case_matrix(results, arm, split, metric, common) - case_matrix(results, reference, split, metric, common)
    return hierarchical_bootstrap({"s": paired}, lambda v: seed_mean(v["s"]), n_resamples)


def collapse_events(results: dict, arm: str) -> Tuple[int, int, List[str]]:
    """Runs of ``arm`` in which some foreground class has mean Dice below :data:`COLLAPSE_DICE` in
    distribution while the reference arm's run of the same seed has it at 0.5 or more: ``(k, n, which)``."""
    split = results["splits"][0]
    names = results["class_names"]
    reference = reference_arm(results, arm)
    common = finished_seeds(results, arm, reference)
    with np.errstate(all="ignore"):
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


def _interval(result: BootstrapResult, index: int = 0, digits: int = 3) -> str:
    estimate = result.estimate[index]
    if math.isnan(estimate):
        return "n/a"
    if math.isnan(result.low[index]):
        return f"{estimate:+.{digits}f}" if estimate < 0 else f"{estimate:.{digits}f}"
    return f"{estimate:.{digits}f} [{result.low[index]:.{digits}f}, {result.high[index]:.{digits}f}]"


def _signed(result: BootstrapResult, index: int = 0) -> str:
    estimate = result.estimate[index]
    if math.isnan(estimate):
        return "n/a"
    if math.isnan(result.low[index]):
        return f"{estimate:+.3f}"
    return f"{estimate:+.3f} [{result.low[index]:+.3f}, {result.high[index]:+.3f}]"


def _p(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3g}"


def plain_summary(results: dict) -> List[str]:
    """The first lines of a report in plain words: what each arm did on the rare classes, in
    distribution and under the shift, and what the number of seeds allows to conclude."""
    names = results["class_names"]
    rare = rare_classes(results)
    test, shifted = results["splits"][0], shifted_split(results)
    seeds = min(len(finished_seeds(results, a)) for a in results["arms"] if results["arms"][a]["seeds"])
    if results.get("endpoint_classes"):
        lines = [f"**{rare_classes_text(results)}**, mean Dice:"]
    else:
        lines = [f"**Rare classes** ({', '.join(names[k] for k in rare) or 'none'}; each under {100 * RARE:.0f}% of the training pixels), mean Dice:"]
    for arm in [a for a in results["arms"] if results["arms"][a]["seeds"]]:
        own = _rare_mean(seed_mean(case_matrix(results, arm, test)), rare)
        text = f"- `{arm}`: {own:.2f} in distribution"
        if shifted is not None:
            moved = _rare_mean(seed_mean(case_matrix(results, arm, shifted)), rare)
            text += f", {moved:.2f} under the context shift (drop {own - moved:+.2f})"
        per_class = seed_mean(case_matrix(results, arm, test))
        lines.append(text + "; per class " + ", ".join(f"{names[k]} {per_class[k]:.2f}" for k in rare) + ".")
    if seeds < 2:
        lines.append(
            "One seed: no interval can be given, and differences of a few hundredths between arms are within what "
            "another seed gives. The multi-seed study with intervals is docs/RESULTS.md (`python -m medseg_dropclass compare`)."
        )
    else:
        lines.append(f"{seeds} or more seeds per arm; intervals and tests below.")
    return lines


def write_report(results: dict, output_dir: str, title: str = "Baseline vs DropClass, per class", n_resamples: int = 2000) -> pathlib.Path:
    """``report.md`` and ``delta_dice_vs_share.png`` in ``output_dir``; returns the report's path."""
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    names, share, splits = results["class_names"], results["class_share"], results["splits"]
    arms = [a for a in results["arms"] if results["arms"][a]["seeds"]]
    seeds = results["seeds"]
    shifted = shifted_split(results)
    one_seed = len(seeds) < 2
    lines = [f"# {title}", ""] + plain_summary(results) + [""]
    lines += [
        f"Bundle `{results['bundle']}`, {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), {results['max_epochs']} epochs "
        "at budget 1x; networks of the last epoch (no checkpoint selection). Per class: mean over seeds of the per-case "
        "mean (a class absent from reference and prediction of a case has no value, as in nnU-Net). Intervals: 95% "
        "hierarchical bootstrap (seeds, then cases within seed), percentile. "
        + ("**One seed: no interval can be given** (training variance is unknown)." if one_seed else ""),
        "",
        "| arm | what | budget | seeds | compared with | drop sequence |",
        "|---|---|---:|---:|---|---|",
    ]
    for arm in arms:
        entry = results["arms"][arm]
        lines.append(
            f"| {arm} | {entry['description']} | {entry.get('budget', 1)}x | {len(finished_seeds(results, arm))} "
            f"| {reference_arm(results, arm) if reference_arm(results, arm) != arm else '-'} | {entry.get('drop_sequence', 'own stream')} |"
        )
    lines += ["", "## Primary endpoint", ""]
    lines.append(
        f"{rare_classes_text(results)}. Endpoint, stated before the runs: the mean rare-class "
        f"Dice in distribution (`{splits[0]}`) minus under the context shift (`{shifted}`), per arm, and its difference "
        "from the compared arm's (negative: the arm loses less under the shift). p: bootstrap, Holm-adjusted over the arms."
        if shifted else f"{rare_classes_text(results)}. No shifted split in this study: the endpoint is their mean Dice on `{splits[0]}`."
    )
    lines += ["", "| arm | rare Dice in distribution | rare Dice shifted | drop | drop minus compared arm's | p (Holm) |", "|---|---:|---:|---:|---:|---:|"]
    primaries = {}
    for arm in arms:
        reference = reference_arm(results, arm) if reference_arm(results, arm) != arm else None
        primaries[arm] = primary_endpoint(results, arm, reference, n_resamples)
    compared = [a for a in arms if "drop_minus_reference" in primaries[a]]
    adjusted = dict(zip(compared, holm([primaries[a]["drop_minus_reference"].p_value[0] for a in compared])))
    for arm in arms:
        result = primaries[arm]
        if shifted is None:
            lines.append(f"| {arm} | {_interval(result['in_distribution'])} | | | | |")
            continue
        difference = result.get("drop_minus_reference")
        lines.append(
            f"| {arm} | {_interval(result['in_distribution'])} | {_interval(result['shifted'])} | {_signed(result['drop'])} | "
            f"{_signed(difference) if difference is not None else '-'} | {_p(adjusted.get(arm, float('nan')))} |"
        )

    for split in splits:
        lines += ["", f"## Dice per class, split `{split}` (mean over seeds [95% interval])", ""]
        lines.append("| class | share | " + " | ".join(arms) + " |")
        lines.append("|---|---:|" + "---:|" * len(arms))
        per_arm = {arm: hierarchical_bootstrap({"s": case_matrix(results, arm, split)}, lambda v: seed_mean(v["s"]), n_resamples) for arm in arms}
        for k, name in enumerate(names):
            lines.append(f"| {name} | {100 * share[k]:.3f}% | " + " | ".join(_interval(per_arm[a], k) for a in arms) + " |")
        for bin_name, _, _ in FREQUENCY_BINS:
            cells = []
            for arm in arms:
                values = [entry["summaries"][split]["frequency_bins"][bin_name]["Dice"] for entry in results["arms"][arm]["seeds"].values()]
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
                    arm: hierarchical_bootstrap({"s": case_matrix(results, arm, split, group=text)}, lambda v: seed_mean(v["s"]), n_resamples)
                    for arm in arms
                }
                for k, name in enumerate(names[1:], 1):
                    lines.append(f"| {name} | {group} | " + " | ".join(_interval(per_group[a], k) for a in arms) + " |")

    differences: Dict[Tuple[str, str], BootstrapResult] = {}
    compared_arms = [a for a in arms if reference_arm(results, a) != a]
    for arm in compared_arms:
        for split in splits:
            differences[arm, split] = class_differences(results, arm, reference_arm(results, arm), split, n_resamples=n_resamples)
    if differences:
        lines += [
            "", "## Per-class Dice difference from the compared arm (paired by seed and case)", "",
            "Secondary endpoints: 95% intervals; p-values Holm-adjusted over the foreground classes and splits of each arm.", "",
            "| arm | split | " + " | ".join(names[1:]) + " |", "|---|---|" + "---:|" * (len(names) - 1),
        ]
        for arm in compared_arms:
            raw = np.concatenate([differences[arm, s].p_value[1:] for s in splits])
            adjusted_p = holm(raw).reshape(len(splits), -1)
            for i, split in enumerate(splits):
                result = differences[arm, split]
                cells = [f"{_signed(result, k)} (p {_p(adjusted_p[i, k - 1])})" for k in range(1, len(names))]
                lines.append(f"| {arm} vs {reference_arm(results, arm)} | {split} | " + " | ".join(cells) + " |")
        figure = write_difference_figure(results, differences, out / "delta_dice_vs_share.png")
        lines += ["", f"![per-class Dice difference with 95% intervals against class share]({figure.name})"]

    curves = write_validation_figure(results, out)
    if curves is not None:
        lines += ["", "## Budget: validation Dice of the baseline during training", "", f"![validation Dice per class against epoch]({curves.name})"]

    lines += [
        "", f"## Collapse events (a class below Dice {COLLAPSE_DICE} in distribution where the compared arm's run of the same seed has >= 0.5)", "",
        "Each run of an arm has its own seed (initialisation, data order) and its own drop sequence, so its runs are "
        "independent events; k of n runs with an exact (Clopper-Pearson) 95% interval.", "",
        "| arm | k / n | 95% interval | which |", "|---|---:|---:|---|",
    ]
    for arm in compared_arms:
        k, n, which = collapse_events(results, arm)
        low, high = clopper_pearson(k, n)
        lines.append(f"| {arm} | {k} / {n} | [{low:.2f}, {high:.2f}] | {'; '.join(which) or '-'} |")

    lines += [
        "", "## Cost (same machine, one run at a time)", "",
        "Fastest run over the seeds (other work on the machine can only slow a run down, as `timeit` takes the minimum); "
        "training only, evaluation excluded; peak memory: the largest over the seeds.", "",
        "| arm | wall time per run (s) | images / s | peak memory (MiB) |", "|---|---:|---:|---:|",
    ]
    for arm in arms:
        # a resumed run's time covers only its last part
        costs = [entry["cost"] for entry in results["arms"][arm]["seeds"].values() if not entry.get("resumed")]
        if not costs:
            lines.append(f"| {arm} | n/a (resumed runs only) | | |")
            continue
        seconds = np.min([c["seconds"] for c in costs])
        images = np.nanmax([c.get("images_per_second", float("nan")) for c in costs]) if costs else float("nan")
        memory = np.nanmax([c["peak_memory_mib"] for c in costs])
        lines.append(f"| {arm} | {seconds:.0f} | {images:.1f} | {memory:.0f} |")

    lines += ["", "## Classifier weight similarity (mean over seeds)", "", "| arm | most frequent class vs others | least frequent class vs others | mean off-diagonal |", "|---|---:|---:|---:|"]
    for arm in arms:
        sims = [entry["similarity"] for entry in results["arms"][arm]["seeds"].values()]
        cells = [f"{np.mean([s[key] for s in sims]):.3f}" for key in ("most_frequent_mean_similarity", "least_frequent_mean_similarity", "mean_off_diagonal")]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def validation_curves(run_dirs: Sequence[pathlib.Path], class_names: Sequence[str]) -> Dict[str, np.ndarray]:
    """Per-class validation Dice against epoch from the TensorBoard logs of runs: ``{"epochs": (E,),
    name: (R, E)}`` (NaN where a run did not log that epoch)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = []
    for run in run_dirs:
        accumulator = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
        accumulator.Reload()
        tags = set(accumulator.Tags().get("scalars", []))
        logs.append({n: {e.step: e.value for e in accumulator.Scalars(f"dice/{n}")} for n in class_names if f"dice/{n}" in tags})
    epochs = sorted({step for log in logs for curve in log.values() for step in curve})
    curves: Dict[str, np.ndarray] = {"epochs": np.asarray(epochs)}
    for name in class_names:
        curves[name] = np.asarray([[log.get(name, {}).get(e, np.nan) for e in epochs] for log in logs], dtype=np.float64)
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
        line, = axis.plot(curves["epochs"], mean, marker="o", markersize=3, label=name)
        axis.fill_between(curves["epochs"], np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=line.get_color(), alpha=0.15)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation Dice (mean, range over seeds)")
    axis.set_title(f"{arm}: validation Dice per class ({len(runs)} seeds)")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7, loc="lower right")
    return save_figure(figure, output_dir / f"validation_{arm}.png", dpi=100)


def write_difference_figure(
    results: dict, differences: Dict[Tuple[str, str], BootstrapResult], path: pathlib.Path, classes: Optional[Sequence[int]] = None,
    scale: float = 1.0, ylabel: str = "Dice difference (95% interval)",
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
            axis.errorbar(x, y, yerr=error, fmt="o", capsize=2, label=f"{arm} - {reference_arm(results, arm)}", alpha=0.85)
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel("class share of training pixels (log)")
        axis.set_title(f"split {split}")
        for k, x in zip(classes, x_share):
            axis.annotate(names[k], (x, axis.get_ylim()[0]), fontsize=7, rotation=60, alpha=0.7, va="bottom")
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7)
    return save_figure(figure, path, dpi=100)
