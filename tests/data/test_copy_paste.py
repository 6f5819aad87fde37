"""Rare-object copy-paste: the bank finds every component of the chosen classes with its host; a paste writes the
object's label and image values inside its mask and changes nothing else, outside its host where asked, in 2D and 3D;
the same seed gives the same sample; class indices follow the paste; the bank's default classes are the rare ones;
the transform's random state is part of the training state (exact resume)."""

import numpy as np
import pytest
import torch

from medseg_dropclass.data.copy_paste import RandCopyPasted, object_bank, objects_of, rare_classes
from medseg_dropclass.engine.random_state import TrainingRandomState


def case(spatial=(24, 20), seed=0):
    """An organ (1) filling the left half with a lesion (2) inside it; background 0 elsewhere."""
    rng = np.random.default_rng(seed)
    label = np.zeros(spatial, np.int64)
    label[(slice(2, spatial[0] // 2),) + tuple(slice(2, s - 2) for s in spatial[1:])] = 1
    label[(slice(4, 7),) + tuple(slice(5, 8) for _ in spatial[1:])] = 2
    image = (rng.normal(size=(2, *spatial)) + label[None] * 3.0).astype(np.float32)
    return image, label


@pytest.mark.parametrize("spatial", [(24, 20), (24, 20, 16)])
def test_a_paste_writes_the_object_outside_its_host_and_nothing_else(spatial):
    image, label = case(spatial)
    [lesion] = objects_of(image, label, [2])
    assert lesion["label"] == 2 and lesion["host"] == 1 and lesion["mask"].sum() == 3 ** len(spatial)
    box = (slice(None), slice(2, 9)) + tuple(slice(3, 10) for _ in spatial[1:])  # with a 2-voxel margin for blending
    np.testing.assert_array_equal(lesion["image"], image[box])
    assert lesion["mask"].shape == lesion["image"].shape[1:] == (7,) * len(spatial)
    paste = RandCopyPasted(bank=[lesion], prob=1.0, max_objects=1, avoid_host=True)
    paste.set_random_state(3)
    out = paste({"image": torch.as_tensor(image), "label": torch.as_tensor(label[None])})
    new_image, new_label = out["image"].numpy(), out["label"].numpy()[0]
    changed = new_label != label
    assert changed.sum() == 3 ** len(spatial) and set(np.unique(new_label[changed])) == {2}
    assert not np.any(label[changed] == 1)  # not inside the organ, its usual host
    np.testing.assert_array_equal(new_image[:, changed], lesion["image"][:, lesion["mask"]])  # the object's values
    np.testing.assert_array_equal(new_image[:, ~changed], image[:, ~changed])  # nothing else
    assert isinstance(out["image"], torch.Tensor) and out["image"].dtype == torch.float32


def test_the_same_seed_gives_the_same_sample_and_another_seed_another():
    image, label = case()
    bank = objects_of(image, label, [2])
    outputs = []
    for seed in (0, 0, 1):
        paste = RandCopyPasted(bank=bank, prob=1.0, max_objects=3, avoid_host=False)
        paste.set_random_state(seed)
        outputs.append(paste({"image": image, "label": label[None]})["label"])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert not np.array_equal(outputs[0], outputs[2])


def test_class_indices_follow_the_paste_and_prob_zero_pastes_nothing():
    from monai.transforms.utils import map_classes_to_indices

    image, label = case()
    bank = objects_of(image, label, [2])
    paste = RandCopyPasted(bank=bank, prob=1.0, indices_key="idx", num_classes=3)
    paste.set_random_state(0)
    out = paste({"image": image, "label": label[None], "idx": map_classes_to_indices(label[None], 3)})
    assert len(out["idx"][2]) == 2 * 9 and sorted(np.asarray(out["idx"][2]).tolist()) == sorted(np.flatnonzero(out["label"][0] == 2).tolist())
    never = RandCopyPasted(bank=bank, prob=0.0)
    assert never({"image": image, "label": label[None]})["label"] is not None
    np.testing.assert_array_equal(never({"image": image, "label": label[None]})["label"], label[None])


def test_blending_softens_the_image_border_and_keeps_the_label_hard():
    image, label = case()
    bank = objects_of(image, label, [2])
    hard, soft = (RandCopyPasted(bank=bank, prob=1.0, avoid_host=False, blend_sigma=s) for s in (0.0, 1.0))
    hard.set_random_state(5)
    soft.set_random_state(5)
    a, b = hard({"image": image, "label": label[None]}), soft({"image": image, "label": label[None]})
    np.testing.assert_array_equal(a["label"], b["label"])
    inside = a["label"][0] != label
    np.testing.assert_array_equal(a["image"][:, inside], b["image"][:, inside])  # the object itself unchanged
    assert not np.array_equal(a["image"], b["image"])  # its surroundings blended


def test_the_default_bank_holds_the_rare_classes_and_errors_name_the_option():
    cases = [{"i": s} for s in range(3)]

    def load(entry):
        image, label = case(seed=entry["i"])
        label[20:22, 2:4] = 3  # a third class, 4 voxels per case: rare (< 1%)? 4 / 480 = 0.8%
        return {"image": image, "label": label[None]}

    assert rare_classes(cases, load, 4) == [3]  # the lesion is 9 / 480 = 1.9%
    bank = object_bank(cases, load, None, num_classes=4)
    assert len(bank) == 3 and {o["label"] for o in bank} == {3} and all(o["host"] == 0 for o in bank)
    with pytest.raises(ValueError, match="num_classes"):
        object_bank(cases, load, None)
    with pytest.raises(ValueError, match="bank"):
        RandCopyPasted()
    from medseg_dropclass.data import DecathlonPreprocessing

    with pytest.raises(ValueError, match=r"copy_paste options \['probability'\] unknown"):
        DecathlonPreprocessing(2, 3).set_copy_paste({"probability": 0.5}, [])


def test_its_random_state_is_saved_and_restored_with_the_training_state():
    image, label = case()
    paste = RandCopyPasted(bank=objects_of(image, label, [2]), prob=0.7, max_objects=2, avoid_host=False)
    paste.set_random_state(0)
    state = TrainingRandomState(paste)
    assert state.transforms == [paste]
    saved = state.state_dict()
    first = [paste({"image": image, "label": label[None]})["label"] for _ in range(4)]
    state.load_state_dict(saved)
    again = [paste({"image": image, "label": label[None]})["label"] for _ in range(4)]
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)


def test_the_bundle_pipeline_pastes_the_rare_phantom_lesions(phantom2d):
    from medseg_dropclass.data import DecathlonPreprocessing, decathlon_datalist

    cases = decathlon_datalist(phantom2d, "training")
    preprocessing = DecathlonPreprocessing(2, 7, crop_size=(32, 32), num_crops=1)
    plain = preprocessing.transforms("train")
    steps = preprocessing.train_transforms({"prob": 1.0}, cases).transforms
    assert not any(isinstance(t, RandCopyPasted) for t in plain.transforms)
    [paste] = [t for t in steps if isinstance(t, RandCopyPasted)]
    assert type(steps[steps.index(paste) + 1]).__name__ == "RandBalancedCropd"  # before the crops, indices updated
    assert paste.bank and {o["label"] for o in paste.bank} <= {4, 5, 6}  # lesions: the classes under 1%
    assert preprocessing.train_transforms(None, cases) is not None and not any(
        isinstance(t, RandCopyPasted) for t in preprocessing.transforms("train").transforms
    )
