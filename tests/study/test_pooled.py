"""Dataset-level (pooled) IoU of a study: values, pairing, the report and the compare command on synthetic CamVid."""

import json

import numpy as np
import pytest

from medseg_dropclass.apps.cli import main
from medseg_dropclass.study.pooled import (
    case_counts,
    pair_similarity,
    pooled_differences,
    pooled_iou,
    pooled_per_class,
    write_pooled_report,
)

NAMES = ["road", "car", "pole"]


def fake_results(counts, seeds=(0, 1, 2)):
    """results.json as run_study writes it, from ``{arm: (S, N, K, 3) TP/FP/FN}``."""
    results = {
        "bundle": "camvid_dropclass",
        "class_names": NAMES,
        "class_share": [0.8, 0.15, 0.05],
        "splits": ["test"],
        "max_epochs": 5,
        "seeds": list(seeds),
        "arms": {},
        "endpoint_classes": ["pole"],
    }
    for arm, array in counts.items():
        entry = {"description": arm, "budget": 1, "reference": "baseline", "seeds": {}}
        for s, seed in enumerate(seeds):
            cases = [
                {"metrics": {n: dict(zip(("TP", "FP", "FN"), map(float, array[s, i, k]))) for k, n in enumerate(NAMES)}}
                for i in range(array.shape[1])
            ]
            matrix = np.eye(3) + (0.5 - 0.1 * s if arm == "baseline" else 0.1) * (1 - np.eye(3))
            entry["seeds"][str(seed)] = {
                "summaries": {"test": {"metric_per_case": cases}},
                "similarity": {"matrix": matrix.tolist(), "mean_off_diagonal": 0.0},
            }
        results["arms"][arm] = entry
    return results


def test_pooled_iou_sums_counts_over_images_before_the_ratio():
    # one seed, two images: the pole is 1 of 2 pixels right in the first and 90 of 100 in the second
    counts = np.zeros((1, 2, 3, 3))
    counts[0, 0, 2] = [1, 1, 0]
    counts[0, 1, 2] = [90, 5, 5]
    iou = pooled_iou(counts)[0]  # (S, K): per seed
    assert iou[2] == pytest.approx(91 / 102)  # pooled, not the mean of 0.5 and 0.9
    assert np.isnan(iou[0]) and np.isnan(iou[1])  # never in reference nor prediction
    two_seeds = np.concatenate([counts, counts * [[[[1, 0, 0]]]]])  # seed 1: every pole pixel right
    assert pooled_iou(two_seeds)[:, 2] == pytest.approx([91 / 102, 1.0])


def test_paired_differences_intervals_and_report(tmp_path):
    rng = np.random.default_rng(0)
    shape = (3, 30, 3)
    tp = rng.integers(50, 100, shape).astype(float)
    base = np.stack([tp, rng.integers(5, 20, shape), rng.integers(5, 20, shape)], -1)
    better = base.copy()
    better[..., 2, 0] += 40  # the arm finds 40 more pole pixels in every image
    results = fake_results({"baseline": base, "dropclass": better, "head_control": base.copy()})
    assert case_counts(results, "dropclass", "test").shape == (3, 30, 3, 3)
    own = pooled_per_class(results, "baseline", "test", n_resamples=200)
    assert own.estimate.shape == (5,)  # per class, mIoU, endpoint mean
    assert own.estimate[3] == pytest.approx(np.mean(own.estimate[:3])) and own.estimate[4] == pytest.approx(
        own.estimate[2]
    )
    expected = pooled_iou(better)[:, 2].mean() - pooled_iou(base)[:, 2].mean()
    difference = pooled_differences(results, "dropclass", "baseline", "test", n_resamples=300)
    assert difference.estimate[2] == pytest.approx(expected) and expected > 0.05
    assert difference.low[2] > 0 and difference.p_value[2] < 0.01
    assert difference.estimate[0] == pytest.approx(0.0) and difference.estimate[-1] == pytest.approx(expected)
    same = pooled_differences(results, "head_control", "baseline", "test", n_resamples=200)
    np.testing.assert_allclose(same.estimate, 0.0)
    np.testing.assert_allclose(same.low[:3], 0.0)
    np.testing.assert_allclose(same.high[:3], 0.0)  # paired by seed and image: identical arms never differ

    similarity = pair_similarity(results, "baseline", [("car", "pole")])
    np.testing.assert_allclose(similarity[:, 0], [0.5, 0.4, 0.3])
    report = write_pooled_report(
        results, str(tmp_path), pairs=[("car", "pole")], n_resamples=200, contrasts=[("dropclass", "head_control")]
    ).read_text()
    contrast = next(row for row in report.splitlines() if row.startswith("| dropclass - head_control | "))
    cells = [
        cell.strip() for cell in contrast.strip("|").split("|")
    ]  # contrast, mIoU, endpoint, then the endpoint's class
    assert cells[2].startswith(f"{100 * expected:+.1f} [") and "(p " in cells[2]  # head_control = baseline here
    assert cells[3] == f"{100 * expected:+.1f} [{100 * difference.low[2]:+.1f}, {100 * difference.high[2]:+.1f}]"
    assert "pole 5.00%" in report and "**Primary endpoint**" in report
    line = next(row for row in report.splitlines() if row.startswith("| dropclass | "))
    assert f"{100 * expected:+.1f} [" in line and "vs `baseline`" in line
    assert "| car - pole | +0.40 [+0.30, +0.50] | +0.10 [+0.10, +0.10] | +0.10 [+0.10, +0.10] |" in report
    assert (tmp_path / "iou_gain_vs_share.png").stat().st_size > 5000 and (
        tmp_path / "similarity_per_arm.png"
    ).stat().st_size > 5000


def test_the_pooled_report_needs_the_endpoint_named(tmp_path):
    results = fake_results({"baseline": np.ones((3, 2, 3, 3))})
    results["endpoint_classes"] = []
    with pytest.raises(ValueError, match="named before the runs"):
        write_pooled_report(results, str(tmp_path))


def test_compare_on_a_dataset_without_dataset_json_and_the_pooled_report(tmp_path, capsys):
    from tests.bundles.test_bundles import SMALL
    from tests.data.test_camvid import write_camvid

    root = write_camvid(tmp_path / "CamVid")
    out = tmp_path / "study"
    settings = [f"{key}={json.dumps(value)}" for key, value in SMALL["camvid_dropclass"].items()]
    common = [
        "compare",
        "--bundle",
        "camvid_dropclass",
        "--dataset-dir",
        str(root),
        "--seeds",
        "1",
        "--max-epochs",
        "1",
        "--no-figures",
        "--output-dir",
        str(out),
        "--set",
        *settings,
    ]
    with pytest.raises(SystemExit):  # no dataset.json: the splits must be named
        main(common + ["--arms", "baseline", "dropclass"])
    assert "no dataset.json: name the labelled splits" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(common + ["--eval-splits", "test", "--pooled-iou"])
    assert "--pooled-iou needs --endpoint-classes" in capsys.readouterr().err
    main(
        common
        + [
            "--arms",
            "baseline",
            "dropclass",
            "--eval-splits",
            "test",
            "--endpoint-classes",
            "Pole",
            "Car",
            "--pooled-iou",
            "--similarity-pairs",
            "Pole:Car",
            "--gradcam-classes",
            "Pole",
            "--contrasts",
            "dropclass:baseline",
        ]
    )
    results = json.loads((out / "results.json").read_text())
    assert results["class_names"][2] == "Pole" and results["splits"] == ["test"]
    share = results["class_share"]
    assert sum(share) == pytest.approx(1.0) and share[2] > 0 and share[9] == 0  # void ignored; no pedestrian drawn
    report = (out / "report_pooled_iou.md").read_text()
    assert "Pole " in report and "| Pole - Car |" in report and "gradcam_Pole.png" in report
    assert (out / "gradcam_Pole.png").stat().st_size > 5000
    assert "pooled-IoU report:" in capsys.readouterr().out


def test_the_pooled_report_names_an_arm_trained_at_another_budget(tmp_path):
    counts = np.ones((2, 4, 3, 3))
    results = fake_results({"baseline": counts, "baseline_2x": counts.copy()}, seeds=(0, 1))
    one_budget = write_pooled_report(results, str(tmp_path / "one"), n_resamples=50).read_text()
    assert "Bundle `camvid_dropclass`, 5 epochs, networks of the last epoch" in one_budget
    results["arms"]["baseline_2x"]["budget"] = 2
    two_budgets = write_pooled_report(results, str(tmp_path / "two"), n_resamples=50).read_text()
    assert (
        "Bundle `camvid_dropclass`, budget 1x = 5 epochs (baseline_2x: 2x), networks of the last epoch" in two_budgets
    )
