"""Model cards: numbers come from the results (per-class means equal the evaluator's, intervals from the bootstrap),
the rare classes and the shift are named with their figures, and a bundle without results says it has none."""

import json
import pathlib
import re

from medseg_dropclass.apps.model_card import model_card
from medseg_dropclass.engine.bundles import bundles_dir
from tests.cli_runner import run_cli

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

NAMES = ["background", "organ", "lesion"]


def case(organ: float, lesion):
    return {
        "reference": "c.nii.gz",
        "metrics": {
            "background": {"Dice": 1.0, "IoU": 1.0},
            "organ": {"Dice": organ, "IoU": organ / (2 - organ)},
            "lesion": {"Dice": lesion, "IoU": None if lesion is None else lesion / (2 - lesion)},
        },
    }


def results(seeds: int):
    test = [case(0.9, 0.5), case(0.8, 1.0), case(0.85, None)]
    shifted = [case(0.9, 0.1), case(0.7, 0.0), case(0.8, 0.2)]
    run = {"summaries": {"test": {"metric_per_case": test}, "test_shifted": {"metric_per_case": shifted}}}
    return {
        "class_names": NAMES,
        "class_share": [0.9, 0.095, 0.005],
        "splits": ["test", "test_shifted"],
        "seeds": list(range(seeds)),
        "arms": {"model": {"seeds": {str(s): run for s in range(seeds)}}},
    }


METADATA = {
    "name": "Test model",
    "version": "1.2.3",
    "network_data_format": {
        "inputs": {"image": {"num_channels": 1, "modality": "CT", "spatial_shape": [96, 96]}},
        "outputs": {"pred": {"num_channels": 3, "channel_def": {"0": "background", "1": "organ", "2": "lesion"}}},
    },
}


def test_the_card_reads_its_numbers_off_the_results():
    text = model_card(METADATA, results(1))
    assert "Not for clinical decisions" in text and "bundle version 1.2.3" in text
    row = next(line for line in text.splitlines() if line.startswith("| lesion | 0.50% |"))
    dice = re.search(r"\| (\d\.\d{3}) \[(\d\.\d{3}), (\d\.\d{3})\] \|", row)
    assert dice and dice.group(1) == "0.750"  # (0.5 + 1.0) / 2: the case without a value is left out
    assert float(dice.group(2)) >= 0.5 and float(dice.group(3)) <= 1.0
    assert row.endswith("| 2 of 3 |")
    assert "| organ | 9.50% | 0.850 [" in text
    assert "lesion (0.50% of the training pixels, Dice 0.75)" in text
    assert "the largest Dice drops are lesion 0.75 -> 0.10, organ 0.85 -> 0.80" in text


def test_a_study_gives_crossed_intervals_and_no_results_says_so():
    study = results(3)
    study["arms"]["baseline"] = study["arms"].pop("model")
    text = model_card(METADATA, None, study, ["baseline"])
    assert "`baseline` Dice (3 seeds)" in text and "| organ | 0.850 [" in text
    assert "## Measured performance of the shipped model" not in text
    empty = model_card(METADATA)
    assert "**None yet.**" in empty and "Not measured for this bundle yet" in empty


def test_the_command_evaluates_the_shipped_model_and_matches_the_evaluator(phantom2d, tmp_path):
    out = tmp_path / "card.md"
    done = run_cli(
        "model-card",
        "--bundle",
        "phantom2d_dropclass",
        "--evaluate",
        "--dataset-dir",
        str(phantom2d),
        "--splits",
        "test",
        "--output",
        str(out),
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    run_cli(
        "run",
        "phantom2d_dropclass",
        "evaluate",
        "--dataset_dir",
        str(phantom2d),
        "--eval_split",
        "test",
        "--eval_dir",
        str(tmp_path / "eval"),
        "--ckpt_path",
        str(bundles_dir() / "phantom2d_dropclass" / "models" / "model.pt"),
        cwd=REPO_ROOT,
    )
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    for name in ("organ_large", "lesion_a"):
        value = summary["mean"][name]["Dice"]
        row = next(
            line for line in text.splitlines() if line.startswith(f"| {name} |") and " of " in line
        )  # the performance table
        assert f"| {value:.3f}" in row, (row, value)
