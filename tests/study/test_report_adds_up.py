"""Every difference a report prints equals the difference of the columns it compares, to the printed digit, whatever
values are missing (random NaN patterns in both arms, arms with extra seeds)."""

import re
import sys

import numpy as np
import pytest

from medseg_dropclass.study.decision import _time_ratio
from medseg_dropclass.study.report import common_setting, run_setting, write_report
from tests.study.test_compare import NAMES, fake_results

NUMBER = r"[+-]?\d+\.\d+"


def _point(cell: str) -> float:
    return float(re.match(NUMBER, cell.strip()).group(0))


def table(report: str, header_start: str) -> list:
    """The rows (lists of cells) of the first table after a line starting with ``header_start``."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def check_report_adds_up(report: str, class_names, splits) -> int:
    """Assert the printed differences of a report against its printed columns; returns how many were checked."""
    checked = 0
    primary = table(report, "## Primary endpoint")
    header, rows = primary[0], primary[2:]
    rare = {row[0]: [_point(cell) for cell in row[1 : 2 if header[1] == "rare Dice" else 3]] for row in rows}
    if header[1] == "rare Dice":  # no shifted split: arm | rare Dice | compared arm's | difference | p
        for row in rows:
            if row[3] not in ("-", "n/a"):
                assert abs(_point(row[3]) - (_point(row[1]) - _point(row[2]))) <= 0.0011, row
                checked += 1
        rows = []
    drops = {}
    for row in rows:
        if len(row) > 3 and row[3] not in ("", "n/a"):
            drops[row[0]] = _point(row[3])
            assert abs(_point(row[3]) - (_point(row[1]) - _point(row[2]))) <= 0.0011, (
                row
            )  # drop = in distribution - shifted
            checked += 1
    for row in rows:
        if len(row) > 5 and row[5] not in ("-", "n/a"):
            reference = re.search(r"\(`(\w+)`\)", row[4]).group(1)
            assert abs(_point(row[4]) - drops[reference]) <= 1e-9, row  # the compared arm's drop is its own row's
            assert abs(_point(row[5]) - (drops[row[0]] - drops[reference])) <= 0.0011, row
            checked += 1
    if "Secondary contrasts" in report:  # each cell against the two arms' rows of the primary table
        for row in table(report, "Secondary contrasts")[2:]:
            arm, other = row[0].split(" - ")
            expected = [a - b for a, b in zip(rare[arm], rare[other])]
            if len(expected) == 2:  # the drops' difference
                expected.append((rare[arm][0] - rare[arm][1]) - (rare[other][0] - rare[other][1]))
            for cell, value in zip(row[1:-1], expected):
                assert abs(_point(cell) - value) <= 0.0021, (row, expected)
                checked += 1
            assert len(row) == len(expected) + 2, row  # contrast, the cells, p
    columns = {}
    for split in splits:
        rows = table(report, f"## Dice per class, split `{split}`")
        arms = rows[0][2:]
        for row in rows[2:]:
            if row[0] in class_names:
                for arm, cell in zip(arms, row[2:]):
                    if cell != "n/a":
                        columns[split, arm, row[0]] = _point(cell)
    if "## Per-class Dice difference" in report:
        rows = table(report, "## Per-class Dice difference")
        names = rows[0][2:]
        for row in rows[2:]:
            arm, reference = row[0].split(" vs ")
            for name, cell in zip(names, row[2:]):
                if cell.startswith("n/a"):
                    continue
                expected = columns[row[1], arm, name] - columns[row[1], reference, name]
                assert abs(_point(cell) - expected) <= 0.0011, (row[0], row[1], name, cell, expected)
                checked += 1
    return checked


@pytest.mark.parametrize("trial", range(6))
def test_printed_differences_equal_the_columns_beside_them(tmp_path, trial):
    rng = np.random.default_rng(trial)
    values = {}
    for arm in ("baseline", "dropclass", "head_control"):
        per_split = {}
        for split, cases in (("test", 30), ("test_shifted", 24)):
            array = rng.uniform(0, 1, (5, cases, 3))
            array[rng.uniform(size=array.shape) < 0.35] = np.nan  # no value: absent from reference and prediction
            array[rng.uniform(size=array.shape) < 0.15] = 0.0  # a false positive where the other arm has no value
            per_split[split] = array
        values[arm] = per_split
    results = fake_results(values)
    if trial % 2:  # a study in progress: one arm has a seed the others have not
        del results["arms"]["head_control"]["seeds"]["4"]
    contrasts = [("dropclass", "head_control"), ("head_control", "dropclass")]
    report = write_report(results, str(tmp_path), n_resamples=50, contrasts=contrasts).read_text()
    assert check_report_adds_up(report, NAMES, ["test", "test_shifted"]) >= 2 + 2 * 2 * 2 + 2 * 3
    rows = table(report, "Secondary contrasts")[2:]
    assert [row[0] for row in rows] == ["dropclass - head_control", "head_control - dropclass"]
    assert [_point(c) for c in rows[0][1:4]] == [-_point(c) for c in rows[1][1:4]]  # a contrast turned round


def test_a_contrast_without_a_shifted_split_is_the_in_distribution_difference(tmp_path):
    rng = np.random.default_rng(7)
    results = fake_results({arm: {"test": rng.uniform(0, 1, (5, 20, 3))} for arm in ("baseline", "dropclass", "topk")})
    results["splits"] = ["test"]
    report = write_report(results, str(tmp_path), n_resamples=50, contrasts=[("topk", "dropclass")]).read_text()
    assert table(report, "Secondary contrasts")[0] == ["contrast", "rare Dice `test`", "p"]
    assert check_report_adds_up(report, NAMES, ["test"]) >= 2 + 1


if __name__ == "__main__":  # python -m tests.study.test_report_adds_up REPORT.md CLASS ... : check a written report
    text = open(sys.argv[1]).read()
    splits = re.findall(r"## Dice per class, split `([^`]+)`", text)
    print(f"{check_report_adds_up(text, sys.argv[2:], splits)} printed differences equal the columns beside them")


def test_costs_and_similarities_are_on_the_seeds_of_every_other_table(tmp_path):
    rng = np.random.default_rng(0)
    values = {arm: {"test": rng.uniform(0, 1, (5, 10, 3))} for arm in ("baseline", "dropclass")}
    results = fake_results(values)
    results["splits"] = ["test"]
    del results["arms"]["dropclass"]["seeds"]["4"]  # in progress: baseline has seed 4 alone
    extra = results["arms"]["baseline"]["seeds"]["4"]
    extra["similarity"] = {key: 9.0 for key in extra["similarity"]}
    extra["cost"] = {"seconds": 1.0, "peak_memory_mib": 9999.0, "images_per_second": 999.0}
    report = write_report(results, str(tmp_path), n_resamples=20).read_text()
    assert "| baseline | 0.100 | 0.200 | 0.300 |" in report  # seed 4's 9.0 left out, as in every other table
    assert "| baseline | 10 | 5.0 | 100 | unrecorded |" in report and "`baseline` seed(s) 4" in report


def test_wall_times_compare_only_between_runs_trained_alike(tmp_path):
    """Threads and runs side by side change a run's wall time: the cost table and the decision table's time ratio
    take each arm's fastest run among those trained alike, and say so where no setting is shared."""
    rng = np.random.default_rng(0)
    results = fake_results({arm: {"test": rng.uniform(0, 1, (5, 10, 3))} for arm in ("baseline", "dropclass")})
    results["splits"] = ["test"]
    alone, beside = {"threads": 2, "side_by_side": 1}, {"threads": 1, "side_by_side": 2}
    for arm, seconds, settings in (
        ("baseline", [100, 90, 95, 30, 80], [alone, alone, alone, beside, {}]),  # 30 s: a run beside another
        ("dropclass", [120, 115, 60, 110, 130], [alone, alone, beside, alone, beside]),
    ):
        for seed, (time, setting) in enumerate(zip(seconds, settings)):
            results["arms"][arm]["seeds"][str(seed)]["cost"].update(seconds=float(time), **setting)
    assert run_setting(beside) == "1 thread, 2 side by side" and run_setting({"threads": 2}) == "2 threads"
    assert run_setting({}) == "unrecorded"
    assert common_setting(results, ["baseline", "dropclass"], range(5)) == "2 threads, alone"  # 6 runs against 3
    report = write_report(results, str(tmp_path), n_resamples=20).read_text()
    assert "| baseline | 90 | 5.0 | 100 | 2 threads, alone |" in report
    assert "| dropclass | 110 | 5.0 | 100 | 2 threads, alone |" in report
    results["arms"]["dropclass"]["seeds"]["3"]["cost"]["machine_load"] = 3.46  # recorded since 2026-12-05
    report = write_report(results, str(tmp_path), n_resamples=20).read_text()
    assert "| dropclass | 110 | 5.0 | 100 | 2 threads, alone, machine load 3.5 |" in report
    assert "| baseline | 90 | 5.0 | 100 | 2 threads, alone |" in report  # not recorded: nothing said
    assert _time_ratio(results, "dropclass", "baseline", range(5)) == f"{110 / 90:.2f}x"
    for entry in results["arms"]["dropclass"]["seeds"].values():
        entry["cost"].update(threads=4, side_by_side=1)
    assert _time_ratio(results, "dropclass", "baseline", range(5)) == "n/a (no runs trained alike)"
    report = write_report(results, str(tmp_path), n_resamples=20).read_text()
    assert (
        "**The arms have no runs trained alike**" in report
        and "| baseline | 30 | 5.0 | 100 | 1 thread, 2 side by side |" in report
    )
