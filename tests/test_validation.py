import json
import math

import pytest
import torch

from medseg_dropclass.data import ensure_phantoms, image_datalist
from medseg_dropclass.engine import SegmentationEvaluation, latest_checkpoint
from medseg_dropclass.validation import (
    check_batches,
    check_label_values,
    check_num_classes,
    check_types,
    interpolation_mode,
    nanmean,
    require_dir,
    require_file,
)


def test_one_label_range_check_and_its_message():
    check_label_values(torch.tensor([0, 1, 255]), 3, ignore_index=255)
    with pytest.raises(
        ValueError,
        match=r"^case.nii: label value 7 outside the classes 0..2 or ignore_index=255 \(num_classes=3\); other bad values: \[9\]$",
    ):
        check_label_values(torch.tensor([0, 7, 9, 255]), 3, ignore_index=255, where="case.nii")
    with pytest.raises(KeyError, match=r"label value -1 outside the classes 0..1 \(num_classes=2\)"):
        check_label_values(torch.tensor([-1]), 2, error=KeyError)


def test_small_shared_checks():
    assert check_num_classes(2) == 2
    with pytest.raises(ValueError, match=r"num_classes=1 is too small; DropClass needs num_classes >= 2"):
        check_num_classes(1, "DropClass")
    assert [interpolation_mode(d) for d in (1, 2, 3)] == ["linear", "bilinear", "trilinear"]
    with pytest.raises(ValueError, match="spatial_dims=4"):
        interpolation_mode(4)
    assert nanmean([1.0, float("nan"), 3.0]) == 2.0
    assert nanmean([float("nan")]) != nanmean([float("nan")])


def test_check_types_names_every_wrong_value():
    assert check_types({"a": (3, int), "b": (0.5, (int, float))})
    with pytest.raises(TypeError, match=r"max_epochs='abc' \(str; expected int\); dropclass=1 \(int; expected bool\)"):
        check_types({"max_epochs": ("abc", int), "dropclass": (1, bool)})
    with pytest.raises(TypeError, match=r"batch_size=True \(bool; expected int\)"):
        check_types({"batch_size": (True, int)})


def test_check_batches_and_required_paths(tmp_path):
    assert check_batches(8, 8)
    with pytest.raises(ValueError, match=r"has 3 sample\(s\), fewer than batch_size=4"):
        check_batches(3, 4)
    with pytest.raises(FileNotFoundError, match=r"nope.pt: no such checkpoint"):
        require_file(str(tmp_path / "nope.pt"), "checkpoint")
    with pytest.raises(FileNotFoundError, match=r"dataset_dir '.*' has no dataset.json"):
        require_dir(str(tmp_path), "dataset_dir", "dataset.json")


def test_latest_checkpoint_orders_by_epoch(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None
    for epoch in (2, 10, 9):
        (tmp_path / f"checkpoint_epoch={epoch}.pt").write_bytes(b"")
    assert latest_checkpoint(str(tmp_path)).endswith("checkpoint_epoch=10.pt")


def test_image_datalist_from_folder_and_json(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"")
    (tmp_path / "b.nrrd").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert [p["image"].split("/")[-1] for p in image_datalist(str(tmp_path))] == ["a.nii.gz", "b.nrrd"]
    (tmp_path / "list.json").write_text(json.dumps(["a.nii.gz", {"image": "b.nrrd"}]))
    assert len(image_datalist(str(tmp_path / "list.json"))) == 2
    (tmp_path / "bad.json").write_text(json.dumps(["missing.nii.gz"]))
    with pytest.raises(FileNotFoundError, match=r"lists '.*missing.nii.gz', which does not exist"):
        image_datalist(str(tmp_path / "bad.json"))
    with pytest.raises(FileNotFoundError, match=r"holds no .png/.jpg/.jpeg image"):
        image_datalist(str(tmp_path), suffixes=(".png", ".jpg", ".jpeg"))


def test_ensure_phantoms_never_writes_into_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"holds no dataset.json"):
        ensure_phantoms(str(tmp_path / "mine"), 2)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["keep.txt"]


def test_segmentation_evaluation_per_case_on_hand_made_batches(tmp_path):
    metric = SegmentationEvaluation(
        3, ["bg", "a", "b"], ignore_index=255, include_background=False, summary_path=str(tmp_path / "s.json")
    )
    metric.reset()
    prediction = torch.tensor([[[0, 1], [1, 2]]])  # a class map (1, H, W)
    label = torch.tensor([[[0, 1], [2, 255]]])
    metric.update(([prediction], [label]))
    scores = torch.zeros(3, 2, 2)
    scores[1] = 1.0  # argmax -> class a everywhere
    metric.update(([scores], [torch.tensor([[[1, 1], [0, 0]]])]))
    # case 1: a TP 1 FP 1 -> Dice 2/3, b TP 0 FP 1 FN 1 -> Dice 0; case 2: a TP 2 FP 2 -> Dice 2/3, b absent -> no value
    value = metric.compute()
    assert metric.summary["mean"]["a"]["Dice"] == pytest.approx(2 / 3)
    assert metric.summary["mean"]["b"]["Dice"] == 0.0  # only case 1 has a value
    assert value == pytest.approx((2 / 3 + 0.0) / 2)
    assert metric.summary["metric_per_case"][0]["metrics"]["a"] == {
        "Dice": pytest.approx(2 / 3),
        "IoU": 0.5,
        "TP": 1,
        "FP": 1,
        "FN": 0,
        "n_ref": 1,
        "n_pred": 2,
    }

    class Engine:
        class state:
            metrics = {}

    metric.completed(Engine, "val_mean_dice")
    assert Engine.state.metrics["dice/b"] == 0.0 and Engine.state.metrics["val_mean_dice"] == pytest.approx(1 / 3)
    assert json.loads((tmp_path / "s.json").read_text())["mean"]["a"]["IoU"] == pytest.approx((0.5 + 0.5) / 2)


def test_segmentation_evaluation_with_nothing_to_score_is_never_best():
    metric = SegmentationEvaluation(2)
    metric.reset()
    metric.update(([torch.zeros(1, 2, 2)], [torch.zeros(1, 2, 2)]))
    assert metric.compute() == 0.0  # foreground absent everywhere: NaN mean, reported as the worst value


def test_segmentation_evaluation_adds_hd95_per_case_and_class_in_the_labels_spacing():
    from monai.data import MetaTensor

    from medseg_dropclass.evaluation.clinical import hausdorff95

    metric = SegmentationEvaluation(3, ["bg", "a", "b"], hausdorff95=True)
    metric.reset()
    label = torch.zeros(1, 12, 12, dtype=torch.long)
    label[0, 2:6, 2:6] = 1
    prediction = torch.zeros(1, 12, 12, dtype=torch.long)
    prediction[0, 3:7, 2:6] = 1  # shifted by one row; class b in neither
    affine = torch.diag(torch.tensor([2.0, 0.5, 1.0, 1.0]))  # 2 mm rows, 0.5 mm columns
    metric.update(([prediction], [MetaTensor(label, affine=affine, meta={"filename_or_obj": "/x/case_a.nii.gz"})]))
    metric.compute()
    case = metric.summary["metric_per_case"][0]
    expected = hausdorff95(prediction[0].numpy(), label[0].numpy(), 1, [2.0, 0.5])
    assert case["metrics"]["a"]["HD95"] == pytest.approx(expected) and expected == pytest.approx(2.0)  # one row, 2 mm
    assert math.isnan(case["metrics"]["b"]["HD95"]) and case["voxel_ml"] == pytest.approx(2.0 * 0.5 / 1000)
    assert metric.summary["mean"]["a"]["HD95"] == pytest.approx(expected)
    plain = SegmentationEvaluation(3, ["bg", "a", "b"])
    plain.reset()
    plain.update(([prediction], [label]))
    plain.compute()
    assert "HD95" not in plain.summary["metric_per_case"][0]["metrics"]["a"]  # off by default (training)
