import json

import numpy as np
import pytest
import torch
from monai.transforms import ClassesToIndicesd

from medseg_dropclass.data import (
    DatasetError,
    decathlon_datalist,
    decathlon_dataset,
    decathlon_transforms,
    read_dataset_json,
    split_datalist,
    verify_datalist,
)
from medseg_dropclass.data.crops import RandBalancedCropd
from tests.data.conftest import shared_fixture, write_decathlon, write_nifti


def test_phantom_2d_samples(phantom2d):
    dataset = decathlon_dataset(phantom2d / "dataset.json", "training", train=False)
    sample = dataset[0]
    assert sample["image"].shape == (1, 48, 48) and sample["label"].shape == (1, 48, 48)
    assert set(torch.unique(sample["label"]).tolist()) <= set(range(7))
    assert abs(float(sample["image"][sample["image"] != 0].mean())) < 0.2  # z-scored


def test_phantom_3d_rare_class_crops(phantom3d):
    dataset = decathlon_dataset(
        phantom3d / "dataset.json", train=True, crop_size=(16, 16, 8), num_crops=4, pixdim=(1.0, 1.0, 2.5)
    )
    crops = dataset[0]
    assert len(crops) == 4
    for crop in crops:
        assert crop["image"].shape == (1, 16, 16, 8) and crop["label"].shape == (1, 16, 16, 8)


def balanced_crops(label, share, samples=600, size=(9, 9)):
    """Centre-voxel classes of the crops RandBalancedCropd takes from one case."""
    data = ClassesToIndicesd(keys="label", num_classes=4, indices_postfix="_idx")({"image": torch.zeros(1, *label.shape), "label": torch.as_tensor(label)[None]})
    crop = RandBalancedCropd(["image", "label"], "label", size, num_classes=4, indices_key="label_idx", foreground_share=share, num_samples=samples)
    crop.set_random_state(0)
    crops = crop(data)
    assert len(crops) == samples and all(c["label"].shape == (1,) + size for c in crops)
    return np.array([int(c["label"][0, size[0] // 2, size[1] // 2]) for c in crops])


def test_balanced_crops_centre_a_share_on_present_foreground_classes_uniformly():
    label = np.zeros((60, 60), np.int64)
    label[10:40, 10:40] = 1  # a large organ: 25% of the pixels
    label[45:48, 45:48] = 3  # a small lesion: 0.25%; class 2 is absent from this case
    centres = balanced_crops(label, share=1.0)
    assert set(np.unique(centres)) == {1, 3}  # only present foreground classes
    assert abs(np.mean(centres == 3) - 0.5) < 0.08  # uniform among them, whatever their size
    random_centres = balanced_crops(label, share=0.0)
    assert abs(np.mean(random_centres == 3) - 9 / (52 * 52)) < 0.02  # positions uniform over valid centres
    third = balanced_crops(label, share=1 / 3)
    assert abs(np.mean(third == 3) - 1 / 6) < 0.05  # 1/3 of the crops, half of those on the lesion
    empty = balanced_crops(np.zeros((20, 20), np.int64), share=1.0, samples=5)  # no foreground: random crops
    assert np.all(empty == 0)
    with pytest.raises(ValueError, match=r"foreground_share=1.5 is outside 0..1"):
        RandBalancedCropd(["image"], "label", (4, 4), 3, "idx", foreground_share=1.5)


def test_msd_task_layout_loads_without_code_change(tmp_path):
    """The real MSD dataset.json format: string test entries, CT modality, organ + lesion labels."""
    root = tmp_path / "Task03_Liver"
    affine = np.diag([0.7, 0.7, 5.0, 1.0])
    label = np.zeros((20, 20, 6), np.uint8)
    label[5:15, 5:15, 1:5] = 1
    label[8:10, 8:10, 2:3] = 2
    ct = np.where(label > 0, 60.0, -100.0).astype(np.float32)
    cases = [(f"liver_{i}", ct, label, affine, affine) for i in range(2)]
    dataset_json = write_decathlon(
        root, cases, labels={"0": "background", "1": "liver", "2": "cancer"},
        extra={"test": ["./imagesTs/liver_9.nii.gz"], "numTraining": 2, "numTest": 1},
    )
    write_nifti(root / "imagesTs" / "liver_9.nii.gz", ct, affine)
    info = read_dataset_json(root)
    assert info.class_names == ["background", "liver", "cancer"] and info.modalities == ["CT"]
    dataset = decathlon_dataset(dataset_json, train=False, intensity=(-200.0, 200.0), pixdim=(1.4, 1.4, 5.0))
    sample = dataset[0]
    assert sample["image"].shape == (1, 10, 10, 6)
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert set(torch.unique(sample["label"]).tolist()) == {0.0, 1.0, 2.0}
    test = decathlon_datalist(dataset_json, "test")
    assert test[0]["image"].endswith("liver_9.nii.gz")
    image_only = decathlon_transforms(3, 3, train=False, with_label=False)
    assert image_only(dict(test[0]))["image"].shape == (1, 20, 20, 6)


@pytest.mark.shared
@pytest.mark.parametrize("reader", ["NibabelReader", "ITKReader"])
def test_real_ct_with_117_class_label_map(reader):
    root = shared_fixture("ct_multiorgan_mini")
    item = {"image": str(root / "ct.nii.gz"), "label": str(root / "labels.nii.gz")}
    transform = decathlon_transforms(3, 118, train=False, intensity=(-1000.0, 1000.0), reader=reader)
    sample = transform(dict(item))
    assert sample["image"].shape == (1, 122, 101, 30) == sample["label"].shape
    present = torch.unique(sample["label"]).long()
    assert len(present) == 42  # background + 41 labels
    assert int(present.max()) <= 117


@pytest.mark.shared
def test_real_nrrd_lesions_load_through_itk():
    root = shared_fixture("nrrd_lesions")
    datalist = [{"image": str(root / f"{c}_image.nrrd"), "label": str(root / f"{c}_label.nrrd")} for c in ("brain1", "brain2", "breast1")]
    assert verify_datalist(datalist, num_classes=2, image_channels=1, progress=False) == 3
    transform = decathlon_transforms(3, 2, train=False, reader="ITKReader")
    for item in datalist:
        label = transform(dict(item))["label"]
        share = float((label > 0).float().mean())
        assert 0.0002 < share < 0.003, (item["label"], share)


def test_split_datalist_is_deterministic_and_complete():
    items = [{"image": str(i), "label": str(i)} for i in range(10)]
    train, validation = split_datalist(items, 0.2, seed=3)
    assert len(validation) == 2 and len(train) == 8
    assert sorted(i["image"] for i in train + validation) == sorted(i["image"] for i in items)
    assert split_datalist(items, 0.2, seed=3) == (train, validation)
    with pytest.raises(ValueError, match=r"validation_fraction=1.0 is outside"):
        split_datalist(items, 1.0)


# --- bad input: every error names the file and the problem ---------------------------------------


def one_case(root, image=None, label=None, label_affine=None, labels=None):
    image = np.zeros((8, 8, 4), np.float32) if image is None else image
    label = np.zeros((8, 8, 4), np.uint8) if label is None else label
    return write_decathlon(root, [("case", image, label, np.eye(4), np.eye(4) if label_affine is None else label_affine)], labels)


def load_first(dataset_json):
    return decathlon_dataset(dataset_json, train=False, cache=False)[0]


def test_label_value_outside_the_classes(tmp_path):
    label = np.zeros((8, 8, 4), np.uint8)
    label[2, 2, 2] = 9
    dataset_json = one_case(tmp_path, label=label)
    with pytest.raises(DatasetError, match=r"labelsTr/case.nii.gz: label value 9 outside the classes 0..2 \(num_classes=3\)"):
        load_first(dataset_json)


def test_image_and_label_of_different_shape(tmp_path):
    dataset_json = one_case(tmp_path, label=np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(DatasetError, match=r"case.nii.gz: label shape \(8, 8, 5\) differs from image shape \(8, 8, 4\)"):
        load_first(dataset_json)


def test_image_and_label_of_different_geometry(tmp_path):
    dataset_json = one_case(tmp_path, label_affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    with pytest.raises(DatasetError, match=r"labelsTr/case.nii.gz: label geometry \(affine\) differs from image"):
        load_first(dataset_json)


def test_wrong_channel_count(tmp_path):
    dataset_json = one_case(tmp_path, image=np.zeros((8, 8, 4, 2), np.float32))
    with pytest.raises(DatasetError, match=r"imagesTr/case.nii.gz: image has 2 channel\(s\), expected 1"):
        load_first(dataset_json)


def test_missing_file(tmp_path):
    dataset_json = one_case(tmp_path)
    (tmp_path / "labelsTr" / "case.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"split 'training' lists 1 missing file\(s\):\n  .*labelsTr/case.nii.gz \(label\)"):
        decathlon_datalist(dataset_json)


def test_unreadable_file_is_named_and_all_problems_are_collected(tmp_path):
    dataset_json = one_case(tmp_path)
    good = decathlon_datalist(dataset_json)[0]
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file")
    bad_values = write_nifti(tmp_path / "bad_label.nii.gz", np.full((8, 8, 4), 5, np.uint8))
    datalist = [good, {"image": good["image"], "label": str(broken)}, {"image": good["image"], "label": bad_values}]
    with pytest.raises(DatasetError) as error:
        verify_datalist(datalist, num_classes=3, progress=False)
    message = str(error.value)
    assert message.startswith("2 of 3 case(s) have problems")
    assert "broken.nii.gz: cannot be read" in message
    assert "bad_label.nii.gz: label value 5 outside the classes 0..2" in message


def test_empty_split_and_missing_keys(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "a"}, "training": []}))
    with pytest.raises(DatasetError, match=r"dataset.json: split 'training' is empty"):
        decathlon_datalist(tmp_path)
    with pytest.raises(DatasetError, match=r"dataset.json: no split 'validation'; splits present: \['training'\]"):
        decathlon_datalist(tmp_path, "validation")
    (tmp_path / "dataset.json").write_text(json.dumps({"training": []}))
    with pytest.raises(DatasetError, match=r"dataset.json: missing key\(s\) \['labels'\]"):
        read_dataset_json(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"dataset.json: cannot be read as JSON"):
        read_dataset_json(tmp_path)
    with pytest.raises(DatasetError, match=r"nowhere/dataset.json: no such file"):
        read_dataset_json(tmp_path / "nowhere" / "dataset.json")


def test_labels_must_be_numbered_from_zero(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"1": "a", "2": "b"}, "training": []}))
    with pytest.raises(DatasetError, match=r"'labels' must number at least 2 classes 0..K-1, got \[1, 2\]"):
        read_dataset_json(tmp_path)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int16])
def test_zscore_over_nonzero_voxels_is_bitwise_monais(dtype):
    """The in-place z-score (half the peak memory on a CT-sized volume) equals NormalizeIntensityd(nonzero, channel_wise)."""
    from monai.data import MetaTensor
    from monai.transforms import NormalizeIntensityd

    from medseg_dropclass.data.transforms import ZScoreNonzerod

    generator = torch.Generator().manual_seed(0)
    image = (torch.randn(3, 20, 18, 9, generator=generator, dtype=torch.float64) * 300 + 40).to(dtype)
    image[:, :4] = 0  # background
    image[2] = 0  # an all-zero channel stays as it is
    image[1, 5:, :, :] = 7  # a constant channel: std 0, divided by 1
    expected = NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True)({"image": MetaTensor(image.clone())})["image"]
    ours = ZScoreNonzerod(keys="image")({"image": MetaTensor(image.clone())})["image"]
    assert ours.dtype == expected.dtype and torch.equal(ours.as_tensor(), expected.as_tensor())
