import math

import pytest
import torch

from medseg_dropclass.evaluation.metrics import confusion_matrix, per_class_dice, per_class_iou


def test_values_on_hand_made_masks():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    matrix = confusion_matrix(prediction, target, 4)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    iou = per_class_iou(matrix)
    assert iou[:3].tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(iou[3])  # absent from target and prediction
    assert per_class_dice(matrix)[:3].tolist() == pytest.approx([2 / 4, 4 / 5, 2 / 3])


def test_errors():
    with pytest.raises(ValueError, match=r"target: label value 4 outside the classes 0..3"):
        confusion_matrix(torch.zeros(3), torch.tensor([0, 4, 1]), 4)
    with pytest.raises(ValueError, match=r"prediction shape \(2,\) differs from target shape \(3,\)"):
        confusion_matrix(torch.zeros(2), torch.zeros(3), 4)
