import json

import pytest

from medseg_dropclass.analysis.compare import ARMS, paired_sign_flip_test, run_study, write_figures, write_report
from medseg_dropclass.__main__ import main


def test_sign_flip_test_exact_values():
    assert paired_sign_flip_test([1.0, 1.0, 1.0]) == pytest.approx(2 / 8)  # only all-plus and all-minus are as extreme
    assert paired_sign_flip_test([0.0, 0.0]) == 1.0
    assert paired_sign_flip_test([1.0, -1.0, 2.0, -2.0]) == 1.0
    assert paired_sign_flip_test([float("nan")]) != paired_sign_flip_test([float("nan")])  # nan: nothing to test
    large = paired_sign_flip_test([1.0] * 30)
    assert large < 0.001


def test_comparison_pipeline_end_to_end_on_a_tiny_budget(phantom2d, tmp_path):
    results = run_study(str(tmp_path), ["baseline", "dropclass_alpha1"], [0], 1, dataset_dir=str(phantom2d), extra_overrides={"batch_size": 2})
    for arm in ("baseline", "dropclass_alpha1"):
        entry = results["arms"][arm]["seeds"][0]
        assert entry["cost"]["seconds"] > 0 and entry["cost"]["peak_memory_mib"] > 50
        summary = json.loads((tmp_path / arm / "seed0" / "eval_test_shifted" / "summary.json").read_text())
        assert len(summary["metric_per_case"]) == 2 and set(summary["frequency_bins"]) == {"<0.1%", "0.1-1%", ">1%"}
    report = write_report(results, str(tmp_path)).read_text()
    assert "| lesion_c |" in report and "Paired test against `baseline`" in report and "peak memory" in report
    assert (tmp_path / "delta_iou_vs_frequency.png").stat().st_size > 5000
    lines = [line for line in report.splitlines() if line.startswith("| organ_large |")]
    dice_row = lines[1]  # IoU table first, then Dice, for split `test`
    baseline_dice = results["arms"]["baseline"]["seeds"][0]["summaries"]["test"]["mean"]["organ_large"]["Dice"]
    assert f"{baseline_dice:.3f} +/- 0.000" in dice_row
    figures = write_figures(results, str(tmp_path))
    assert {p.name for p in figures} == {"similarity_baseline.png", "gradcam_baseline.png", "similarity_dropclass_alpha1.png", "gradcam_dropclass_alpha1.png"}


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--arms", "baseline", "dropclass_alpha7"])
    assert "unknown arm(s) ['dropclass_alpha7']" in capsys.readouterr().err
    assert {"baseline", "dropclass", "baseline_weighted_ce", "baseline_dicece", "dropclass_2x"} <= set(ARMS)
