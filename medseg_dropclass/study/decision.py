"""The decision table: per method, its difference from the arm it is compared with in each situation a set of studies
measures, generated from their committed per-run results (``study-report A.yaml B.yaml --decision-table FILE``).

One table per study, one row per (method, compared arm): each arm against its compared arm (the study's primary
comparison, with its Holm-adjusted p-value, exactly as in the study's report), and an arm whose compared arm is not
the baseline (e.g. DropClass on top of copy-paste) also against the baseline. Every difference is the difference of
the two arms' own statistics on the same seeds and cases, with crossed seed x case intervals (docs/STUDY_DESIGN.md);
the columns are the study's primary endpoint on each split (and, with a shifted split, its drop), and the training
time as a multiple of the compared arm's. The plain-words reading of the numbers is written by people, beside it.
"""

import pathlib
from typing import List, Optional, Sequence, Tuple

from medseg_dropclass.study.formatting import FLOOR_NOTE, design_text, p_text, signed_text
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

__all__ = ["comparisons", "decision_section", "write_decision_table"]


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


def decision_section(name: str, results: dict, pooled: bool, n_resamples: int = 2000) -> List[str]:
    """The markdown lines of one study's table (``pooled``: the endpoint is the pooled IoU of its classes, in points)."""
    arms = finished_arms(results)
    seeds = study_seeds(results, arms)
    splits, shifted = results["splits"], shifted_split(results)
    classes = ", ".join(results["class_names"][k] for k in rare_classes(results))
    rows = comparisons(results)
    lines = [f"### `{name}`: {classes}", ""] + held_out_lines(results)
    if not rows:
        return lines + ["No comparison yet (no arm besides its compared arm has finished a run).", ""]
    if pooled:
        split = splits[0]
        primary = pooled_endpoint(results, arms, split, n_resamples, seeds)
        floor = next(entry["difference"].p_floor for entry in primary.values() if entry["difference"] is not None)
        lines += [
            f"Pooled IoU (points) on `{split}`, method minus compared arm; primary endpoint: the mean over the classes "
            "above.",
            "",
            "| method | compared with | endpoint (primary) | mIoU | p (Holm) | training time |",
            "|---|---|---:|---:|---:|---:|",
        ]
        design = None
        for arm, reference in rows:
            own = reference == reference_arm(results, arm)
            difference = (
                primary[arm]["difference"]
                if own
                else pooled_differences(results, arm, reference, split, n_resamples, seeds)
            )
            design = design or design_text(difference)
            lines.append(
                f"| {arm} | {reference} | {signed_text(difference, -1, 1, 100.0)} | {signed_text(difference, -2, 1, 100.0)} | "
                f"{p_text(primary[arm]['p_holm'], floor) if own else '-'} | {_time_ratio(results, arm, reference, seeds)} |"
            )
    else:
        primaries, adjusted, floor = primary_endpoints(results, arms, n_resamples, seeds)
        columns = [f"`{split}`" for split in splits] + (["drop (primary)"] if shifted else [])
        lines += [
            "Mean Dice of the classes above, method minus compared arm"
            + (
                f"; primary endpoint: the drop from `{splits[0]}` to `{shifted}` (negative: the method loses less)."
                if shifted
                else f"; primary endpoint: on `{splits[0]}`."
            ),
            "",
            "| method | compared with | " + " | ".join(columns) + " | p (Holm) | training time |",
            "|---|---|" + "---:|" * (len(columns) + 2),
        ]
        design = None
        for arm, reference in rows:
            own = reference == reference_arm(results, arm)
            cells = []
            for split in splits:
                difference = rare_difference(results, arm, reference, split, n_resamples, seeds)
                design = design or design_text(difference)
                cells.append(signed_text(difference))
            if shifted:
                drop = (
                    primaries[arm]["drop_minus_reference"]
                    if own
                    else endpoint_difference(results, arm, reference, n_resamples, seeds)
                )
                cells.append(signed_text(drop))
            lines.append(
                f"| {arm} | {reference} | "
                + " | ".join(cells)
                + f" | {p_text(adjusted[arm], floor) if own else '-'} | {_time_ratio(results, arm, reference, seeds)} |"
            )
    lines += [
        "",
        f"95% intervals, {design} (seeds every arm finished: {', '.join(map(str, seeds))}); p: the primary endpoint's, "
        "Holm-adjusted over the study's compared arms ('-': a secondary comparison). Training time: the fastest run of "
        "each arm, as a multiple of the compared arm's, among runs trained alike (threads, runs side by side); whole "
        "runs trained at different times, beside other work the runs do not record, so a ratio can carry that work: "
        "the training step's own cost, every arm interleaved in one process, is `benchmarks/loss_overhead.py`'s.",
        "",
    ]
    return lines


def write_decision_table(
    sections: Sequence[Tuple[str, Optional[dict], bool]], path: pathlib.Path, command: str, n_resamples: int = 2000
) -> pathlib.Path:
    """Write the tables of ``sections`` (``(study name, results or None: not run yet, pooled)``) to ``path``, headed by
    the ``command`` that writes it (a test regenerates the file with it)."""
    lines: List[str] = [
        f"<!-- generated by: {command} -->",
        "# Decision table: the numbers",
        "",
        "Generated from the studies' committed per-run results; do not edit by hand (the reading in words: "
        "[ALTERNATIVES.md](ALTERNATIVES.md)).",
        "",
    ]
    any_floor = False
    for name, results, pooled in sections:
        if results is None:
            lines += [f"### `{name}`", "", "Not run yet: no finished run is committed.", ""]
            continue
        section = decision_section(name, results, pooled, n_resamples)
        any_floor = any_floor or any("\u2020" in line for line in section)
        lines += section
    if any_floor:
        lines += [FLOOR_NOTE, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
