import json

import pytest
import torch

from medseg_dropclass.engine import check_batches, check_types, ensure_phantoms, image_datalist, latest_checkpoint, require_dir, require_file
from medseg_dropclass.engine.handlers import PerClassSegmentationMetric


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
    with pytest.raises(FileNotFoundError, match=r"checkpoint '.*nope.pt' does not exist"):
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


def test_per_class_metric_on_hand_made_batches():
    metric = PerClassSegmentationMetric(3, ["bg", "a", "b"], ignore_index=255, include_background=False)
    metric.reset()
    prediction = torch.tensor([[[0, 1], [1, 2]]])  # a class map (1, H, W)
    label = torch.tensor([[[0, 1], [2, 255]]])
    metric.update(([prediction], [label]))
    scores = torch.zeros(3, 2, 2)
    scores[1] = 1.0  # argmax -> class a everywhere
    metric.update(([scores], [torch.tensor([[[1, 1], [0, 0]]])]))
    values = metric.per_class()
    # a: TP 1+2, FP 1 (from the first map) + 2, FN 0; b: TP 0, FP 0 (the 255 pixel is ignored), FN 1
    assert values["iou"][1].item() == pytest.approx(3 / 6)
    assert values["dice"][2].item() == 0.0
    assert metric.compute() == pytest.approx((2 * 3 / 9 + 0.0) / 2)
