"""The decision table: per method, its difference from the arm it is compared with in each situation a set of studies
measures, generated from their committed per-run results (``study-report A.yaml B.yaml --decision-table FILE``).

One table per study, one row per (method, compared arm): each arm against its compared arm (the study's primary
comparison, with its Holm-adjusted p-value, exactly as in the study's report), and an arm whose compared arm is not
the baseline (e.g. DropClass on top of copy-paste) also against the baseline. Every difference is the difference of
the two arms' own statistics on the same seeds and cases, with crossed seed x case intervals (docs/STUDY_DESIGN.md);
the columns are the study's primary endpoint on each split (and, with a shifted split, its drop), and the training
time as a multiple of the compared arm's. The plain-words reading of the numbers is written by people, beside it.
"""

import dataclasses
import pathlib
from typing import List, Optional, Sequence, Tuple

import numpy as np

from medseg_dropclass.study.formatting import FLOOR_MARK, FLOOR_NOTE, design_text, p_text, signed_text
from medseg_dropclass.study.pooled import pooled_differences, pooled_endpoint
from medseg_dropclass.study.report import (
    common_setting,
    endpoint_difference,
    fastest_run_seconds,
    finished_arms,
    held_out_lines,
    primary_endpoints,
    rare_classes,
    rare_difference,
    reference_arm,
    shifted_split,
    study_seeds,
)
from medseg_dropclass.study.statistics import Estimate

__all__ = [
    "DecisionRow",
    "DecisionStudy",
    "comparisons",
    "decision_rows",
    "decision_section",
    "write_decision_figure",
    "write_decision_table",
]


def comparisons(results: dict) -> List[Tuple[str, str]]:
    """``(arm, compared arm)`` rows: each arm with finished runs against its compared arm, and against the baseline
    too where its compared arm is another."""
    arms = finished_arms(results)
    rows = []
    for arm in arms:
        reference = reference_arm(results, arm)
        if reference != arm:
            rows.append((arm, reference))
        if reference not in (arm, "baseline") and "baseline" in arms:
            rows.append((arm, "baseline"))
    return rows


def _time_ratio(results: dict, arm: str, reference: str, seeds: Sequence[int]) -> str:
    """The fastest run's wall time of ``arm`` over ``reference``'s, among runs trained alike (threads, runs side by
    side: :func:`common_setting`)."""
    setting = common_setting(results, [arm, reference], seeds)
    if setting is None:
        return "n/a (no runs trained alike)"
    ratio = fastest_run_seconds(results, arm, seeds, setting) / fastest_run_seconds(results, reference, seeds, setting)
    return f"{ratio:.2f}x"


@dataclasses.dataclass
class DecisionRow:
    """One method against one compared arm: per column, the difference (an estimate and the output of it to read)."""

    arm: str
    reference: str
    differences: List[Tuple[Estimate, int]]
    p: str  # the primary endpoint's Holm-adjusted p ('-': a secondary comparison)
    time: str  # the fastest run's training time as a multiple of the compared arm's


@dataclasses.dataclass
class DecisionStudy:
    """One study's rows, with how its columns read: ``scale`` x the estimates, printed with ``digits`` decimals."""

    name: str
    classes: str
    preamble: List[str]  # the arms held out or not run yet
    intro: str  # what the columns are
    columns: List[str]
    primary: int  # the column of the primary endpoint
    rows: List[DecisionRow]
    unit: str
    scale: float
    digits: int
    design: str
    seeds: List[int]


def decision_rows(name: str, results: dict, pooled: bool, n_resamples: int = 2000) -> DecisionStudy:
    """The rows of one study (``pooled``: the endpoint is the pooled IoU of its classes, in points)."""
    arms = finished_arms(results)
    seeds = study_seeds(results, arms)
    splits, shifted = results["splits"], shifted_split(results)
    classes = ", ".join(results["class_names"][k] for k in rare_classes(results))
    pairs = comparisons(results)
    rows: List[DecisionRow] = []
    design = ""
    head = {"name": name, "classes": classes, "preamble": held_out_lines(results), "rows": rows, "seeds": seeds}
    if pooled:
        split = splits[0]
        primary = pooled_endpoint(results, arms, split, n_resamples, seeds) if pairs else {}
        floors = [entry["difference"].p_floor for entry in primary.values() if entry["difference"] is not None]
        for arm, reference in pairs:
            own = reference == reference_arm(results, arm)
            difference = (
                primary[arm]["difference"]
                if own
                else pooled_differences(results, arm, reference, split, n_resamples, seeds)
            )
            design = design or design_text(difference)
            p = p_text(primary[arm]["p_holm"], floors[0]) if own else "-"
            rows.append(
                DecisionRow(
                    arm, reference, [(difference, -1), (difference, -2)], p, _time_ratio(results, arm, reference, seeds)
                )
            )
        intro = f"Pooled IoU (points) on `{split}`, method minus compared arm; primary endpoint: the mean over the classes above."
        return DecisionStudy(
            **head,
            intro=intro,
            columns=["endpoint (primary)", "mIoU"],
            primary=0,
            unit=f"pooled IoU on {split} (points)",
            scale=100.0,
            digits=1,
            design=design,
        )
    primaries, adjusted, floor = primary_endpoints(results, arms, n_resamples, seeds) if pairs else ({}, {}, None)
    for arm, reference in pairs:
        own = reference == reference_arm(results, arm)
        cells = []
        for split in splits:
            difference = rare_difference(results, arm, reference, split, n_resamples, seeds)
            design = design or design_text(difference)
            cells.append((difference, 0))
        if shifted:
            drop = (
                primaries[arm]["drop_minus_reference"]
                if own
                else endpoint_difference(results, arm, reference, n_resamples, seeds)
            )
            cells.append((drop, 0))
        p = p_text(adjusted[arm], floor) if own else "-"
        rows.append(DecisionRow(arm, reference, cells, p, _time_ratio(results, arm, reference, seeds)))
    columns = [f"`{split}`" for split in splits] + (["drop (primary)"] if shifted else [])
    intro = "Mean Dice of the classes above, method minus compared arm" + (
        f"; primary endpoint: the drop from `{splits[0]}` to `{shifted}` (negative: the method loses less)."
        if shifted
        else f"; primary endpoint: on `{splits[0]}`."
    )
    return DecisionStudy(
        **head,
        intro=intro,
        columns=columns,
        primary=len(columns) - 1 if shifted else 0,
        unit="mean Dice",
        scale=1.0,
        digits=3,
        design=design,
    )


def decision_section(study: DecisionStudy) -> List[str]:
    """The markdown lines of one study's table."""
    lines = [f"### `{study.name}`: {study.classes}", ""] + study.preamble
    if not study.rows:
        return lines + ["No comparison yet (no arm besides its compared arm has finished a run).", ""]
    lines += [
        study.intro,
        "",
        "| method | compared with | " + " | ".join(study.columns) + " | p (Holm) | training time |",
        "|---|---|" + "---:|" * (len(study.columns) + 2),
    ]
    for row in study.rows:
        cells = [signed_text(difference, index, study.digits, study.scale) for difference, index in row.differences]
        lines.append(f"| {row.arm} | {row.reference} | " + " | ".join(cells) + f" | {row.p} | {row.time} |")
    lines += [
        "",
        f"95% intervals, {study.design} (seeds every arm finished: {', '.join(map(str, study.seeds))}); p: the primary "
        "endpoint's, Holm-adjusted over the study's compared arms ('-': a secondary comparison). Training time: the "
        "fastest run of each arm, as a multiple of the compared arm's, among runs trained alike (threads, runs side by "
        "side); whole runs trained at different times, beside other work the runs do not record, so a ratio can carry "
        "that work: the training step's own cost, every arm interleaved in one process, is "
        "`benchmarks/loss_overhead.py`'s (copy-paste's, in the loader, `benchmarks/copy_paste_overhead.py`'s).",
        "",
    ]
    return lines


def write_decision_figure(studies: Sequence[DecisionStudy], path: pathlib.Path) -> pathlib.Path:
    """A forest plot, a panel per study: each method against its compared arm, every column's difference with its 95%
    interval (the primary endpoint filled, the others open), a line at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medseg_dropclass.evaluation.figures import save_figure

    studies = [study for study in studies if study.rows]
    if not studies:
        figure, axis = plt.subplots(figsize=(6, 1))
        axis.text(0.5, 0.5, "no comparison yet", ha="center", va="center")
        axis.axis("off")
        return save_figure(figure, path, dpi=100)
    heights = [max(len(study.rows), 1) * len(study.columns) * 0.22 + 0.9 for study in studies]
    figure, axes = plt.subplots(
        len(studies), 1, figsize=(8, sum(heights)), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    markers = "osD^v"
    for axis, study in zip(axes[:, 0], studies):
        for r, row in enumerate(study.rows):
            for c, (difference, index) in enumerate(row.differences):
                y = -(r + (c - (len(row.differences) - 1) / 2) * 0.22)
                x = study.scale * difference.estimate[index]
                low, high = study.scale * difference.low[index], study.scale * difference.high[index]
                axis.errorbar(
                    x,
                    y,
                    xerr=[[x - low], [high - x]] if not np.isnan(low) else None,
                    fmt=markers[c % len(markers)],
                    color=f"C{c}",
                    mfc=f"C{c}" if c == study.primary else "white",
                    capsize=2,
                    markersize=5,
                    label=study.columns[c].replace("`", "") if r == 0 else None,
                )
        axis.axvline(0.0, color="0.4", linewidth=0.8)
        axis.set_yticks([-r for r in range(len(study.rows))])
        axis.set_yticklabels([f"{row.arm}\nvs {row.reference}" for row in study.rows], fontsize=8)
        axis.set_ylim(-(len(study.rows) - 0.5), 0.5)
        axis.set_title(f"{study.name}: {study.classes}", fontsize=9)
        axis.set_xlabel(f"difference in {study.unit}, method minus compared arm (95% interval)", fontsize=8)
        axis.legend(fontsize=7, loc="best")
    return save_figure(figure, path, dpi=100)


def write_decision_table(
    sections: Sequence[Tuple[str, Optional[dict], bool]], path: pathlib.Path, command: str, n_resamples: int = 2000
) -> pathlib.Path:
    """Write the tables of ``sections`` (``(study name, results or None: not run yet, pooled)``) to ``path``, headed by
    the ``command`` that writes it (a test regenerates the file with it), and their forest plot beside it (``path``
    with ``.png``)."""
    figure = path.with_suffix(".png")
    lines: List[str] = [
        f"<!-- generated by: {command} -->",
        "# Decision table: the numbers",
        "",
        "Generated from the studies' committed per-run results; do not edit by hand (the reading in words: "
        "[ALTERNATIVES.md](ALTERNATIVES.md)).",
        "",
        f"![every method against its compared arm, per study, with 95% intervals]({figure.name})",
        "",
    ]
    studies = []
    for name, results, pooled in sections:
        if results is None:
            lines += [f"### `{name}`", "", "Not run yet: no finished run is committed.", ""]
            continue
        studies.append(decision_rows(name, results, pooled, n_resamples))
        lines += decision_section(studies[-1])
    if any(FLOOR_MARK in row.p for study in studies for row in study.rows):
        lines += [FLOOR_NOTE, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    write_decision_figure(studies, figure)
    return path
