import math

import pytest
import torch

from medseg_dropclass.evaluation.metrics import confusion_matrix, frequency_bin, summarize_cases


def case(prediction, target, k=4):
    return {"reference": "x", "confusion": confusion_matrix(torch.tensor(prediction), torch.tensor(target), k).tolist()}


def test_summary_on_hand_made_masks_with_empty_and_ignored_classes():
    cases = [
        case([0, 1, 1, 2, 0, 0], [0, 1, 1, 1, 255, 0]),  # class 3 absent everywhere: no value; 255 ignored
        case(
            [0, 1, 3, 3, 0, 1], [0, 0, 3, 0, 0, 255]
        ),  # class 2 absent: no value; class 1 predicted only (and on an ignored pixel, left out)
    ]
    summary = summarize_cases(cases, ["bg", "a", "b", "c"], class_share=[0.9, 0.095, 0.004, 0.001])
    first, second = (c["metrics"] for c in summary["metric_per_case"])
    assert first["a"]["Dice"] == pytest.approx(2 * 2 / (3 + 2)) and first["b"]["Dice"] == 0.0
    assert math.isnan(first["c"]["Dice"]) and math.isnan(second["b"]["IoU"])
    assert second["a"]["Dice"] == 0.0 and second["c"]["IoU"] == pytest.approx(1 / 2)
    assert summary["mean"]["a"]["Dice"] == pytest.approx((0.8 + 0.0) / 2)
    assert summary["mean"]["c"]["Dice"] == pytest.approx(2 / 3)  # the NaN case is left out
    assert summary["dataset"]["a"]["IoU"] == pytest.approx(2 / 4)  # pooled: TP 2, FP 1, FN 1
    assert summary["frequency_bins"]["0.1-1%"]["classes"] == ["b", "c"]
    assert summary["frequency_bins"][">1%"]["classes"] == ["a"]
    assert summary["foreground_mean"]["Dice"] == pytest.approx((0.4 + 0.0 + 2 / 3) / 3)
    assert first["a"] | {} == {
        "Dice": pytest.approx(0.8),
        "IoU": pytest.approx(2 / 3),
        "TP": 2,
        "FP": 0,
        "FN": 1,
        "n_ref": 3,
        "n_pred": 2,
    }
    with_background = summarize_cases(cases, ["bg", "a", "b", "c"], include_background=True)
    assert with_background["foreground_mean"]["Dice"] == pytest.approx(
        (summary["mean"]["bg"]["Dice"] + 0.4 + 0.0 + 2 / 3) / 4
    )


@pytest.mark.parametrize(
    "share, name",
    [(0.0, "<0.1%"), (0.0009, "<0.1%"), (0.001, "0.1-1%"), (0.0099, "0.1-1%"), (0.5, ">1%"), (1.0, ">1%")],
)
def test_frequency_bins(share, name):
    assert frequency_bin(share) == name
