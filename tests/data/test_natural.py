"""Cityscapes and Pascal VOC loaders on tiny trees in the real formats and on the shared real-format fixtures."""

import numpy as np
import pytest
import torch
from PIL import Image

from medseg_dropclass.data import DatasetError
from medseg_dropclass.data.cityscapes import (
    CITYSCAPES_CLASSES,
    LABEL_ID_TO_TRAIN_ID,
    cityscapes_datalist,
    cityscapes_dataset,
)
from medseg_dropclass.data.voc import VOC_CLASSES, voc_datalist, voc_dataset
from tests.data.conftest import shared_fixture


def test_cityscapes_label_table():
    assert len(CITYSCAPES_CLASSES) == 19 and CITYSCAPES_CLASSES[0] == "road" and CITYSCAPES_CLASSES[18] == "bicycle"
    assert LABEL_ID_TO_TRAIN_ID[7] == 0 and LABEL_ID_TO_TRAIN_ID[26] == 13 and LABEL_ID_TO_TRAIN_ID[33] == 18
    assert LABEL_ID_TO_TRAIN_ID[0] == 255 and LABEL_ID_TO_TRAIN_ID[6] == 255  # unlabeled, ground


def make_cityscapes(root, split="train", label_ids=None):
    image_dir = root / "leftImg8bit" / split / "aachen"
    label_dir = root / "gtFine" / split / "aachen"
    image_dir.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    labels = np.array(label_ids if label_ids is not None else [[7, 7, 26, 0], [24, 33, 6, 7], [11, 11, 21, 23]], np.uint8)
    rgb = np.random.default_rng(0).integers(0, 255, size=labels.shape + (3,), dtype=np.uint8)
    Image.fromarray(rgb).save(image_dir / "aachen_000000_000019_leftImg8bit.png")
    Image.fromarray(labels).save(label_dir / "aachen_000000_000019_gtFine_labelIds.png")
    return labels


def test_cityscapes_tiny_tree(tmp_path):
    label_ids = make_cityscapes(tmp_path)
    sample = cityscapes_dataset(tmp_path, "train", train=False)[0]
    assert sample["image"].shape == (3, 3, 4)  # (C, H, W): not transposed
    expected = np.vectorize(LABEL_ID_TO_TRAIN_ID.get)(label_ids)
    assert np.array_equal(sample["label"][0].numpy(), expected)
    assert abs(float(sample["image"].mean())) < 3  # ImageNet-normalised


@pytest.mark.shared
def test_cityscapes_real_frame_matches_reference_train_ids():
    root = shared_fixture("cityscapes_mini")
    datalist = cityscapes_datalist(root, "val")
    assert len(datalist) == 1
    sample = cityscapes_dataset(root, "val", train=False)[0]
    assert sample["image"].shape == (3, 128, 256)
    reference_path = datalist[0]["label"].replace("_labelIds.png", "_labelTrainIds.png")
    reference = np.array(Image.open(reference_path))
    ours = sample["label"][0].numpy()
    assert ours.shape == reference.shape
    # the two label images were downscaled separately: about 0.25% of boundary pixels disagree
    assert np.mean(ours == reference) > 0.99
    assert set(np.unique(ours)) <= set(range(19)) | {255}


def test_cityscapes_training_crops(tmp_path):
    make_cityscapes(tmp_path)
    sample = cityscapes_dataset(tmp_path, "train", train=True, crop_size=(4, 6))[0]
    assert sample["image"].shape == (3, 4, 6) and sample["label"].shape == (1, 4, 6)
    assert 255 in torch.unique(sample["label"]).tolist()  # padding is ignored, not background


def test_cityscapes_bad_input(tmp_path):
    with pytest.raises(DatasetError, match=r"leftImg8bit/train: no '<city>/\*_leftImg8bit.png' images"):
        cityscapes_datalist(tmp_path, "train")
    make_cityscapes(tmp_path)
    (tmp_path / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) without a label file, e.g. \[.*aachen_000000_000019_gtFine_labelIds.png"):
        cityscapes_datalist(tmp_path, "train")


VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192]  # 256 entries, 255 = void


def make_voc(root, label):
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    mask = Image.fromarray(np.array(label, np.uint8))  # "L"; putpalette makes it a "P" palette image
    mask.putpalette(VOC_PALETTE)
    assert mask.mode == "P"
    mask.save(root / "SegmentationClass" / "2007_000032.png")
    rgb = np.random.default_rng(0).integers(0, 255, size=np.array(label).shape + (3,), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "JPEGImages" / "2007_000032.jpg")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n")


def test_voc_palette_masks_are_read_as_indices(tmp_path):
    label = [[0, 1, 1, 255], [0, 15, 255, 20]]
    make_voc(tmp_path, label)
    sample = voc_dataset(tmp_path, "train", train=False)[0]
    assert sample["image"].shape == (3, 2, 4)
    assert sample["label"][0].long().tolist() == label


@pytest.mark.shared
def test_voc_real_fixture():
    root = shared_fixture("voc_mini")
    assert len(VOC_CLASSES) == 21
    names = [line.strip() for line in (root / "class_names.txt").read_text().splitlines() if line.strip()]
    normalise = lambda name: name.replace(" ", "").replace("/", "")  # noqa: E731  ("potted plant", "tv/monitor")
    assert [normalise(n) for n in names[1:]] == VOC_CLASSES[1:]
    seen = set()
    for split, count in (("train", 2), ("val", 1)):
        dataset = voc_dataset(root, split, train=False)
        assert len(dataset) == count
        for sample in dataset:
            values = set(torch.unique(sample["label"]).long().tolist())
            assert values <= set(range(21)) | {255} and len(values - {0, 255}) >= 1
            assert sample["image"].shape[0] == 3 and sample["image"].shape[1:] == sample["label"].shape[1:]
            seen |= values
    assert seen == {0, 5, 6, 7, 9, 15, 18, 255}  # indices as stored in the palette masks, void kept


def test_voc_bad_input(tmp_path):
    make_voc(tmp_path, [[0, 21], [1, 255]])
    with pytest.raises(DatasetError, match=r"2007_000032.png: label value 21 outside the classes 0..20 or ignore_index=255"):
        voc_dataset(tmp_path, "train", train=False)[0]
    with pytest.raises(DatasetError, match=r"ImageSets/Segmentation/val.txt: no such split list"):
        voc_datalist(tmp_path, "val")
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\nmissing_id\n")
    with pytest.raises(DatasetError, match=r"2 listed file\(s\) missing, e.g. \[.*missing_id.jpg"):
        voc_datalist(tmp_path, "train")
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"split 'train' is empty"):
        voc_datalist(tmp_path, "train")
