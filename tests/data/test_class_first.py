"""Class-first patch sampling: the class is drawn first (uniformly, or by share ** -gamma), then a case holding
it, and the crops centre on it; measured per-class centre frequencies against the case-first default, where a class
held by few cases is centred in few patches. Through the bundle's loader config too."""

import numpy as np
import pytest
import torch

from medseg_dropclass.data.crops import ClassFirstSampler, case_first_only, class_first_sampler, encode_class_request

# 10 cases: class 1 in all, class 2 in 5, class 3 (rare) in 1
CASE_CLASSES = [[1, 2, 3]] + [[1, 2]] * 4 + [[1]] * 5


def drawn_classes(sampler, epochs=300):
    torch.manual_seed(0)
    classes = []
    for _ in range(epochs):
        classes += [index // sampler.num_cases - 1 for index in sampler]
    return np.asarray(classes)


def test_uniform_class_first_centres_every_class_equally_often():
    sampler = ClassFirstSampler(CASE_CLASSES, [0, 1, 1, 1], foreground_share=1.0)
    classes = drawn_classes(sampler)
    shares = np.bincount(classes, minlength=4)[1:] / classes.size
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.02)
    # case first (a case, then a class present in it): the rare class in 1/10 x 1/3 of the foreground crops
    case_first = np.mean([1 / len(c) if 3 in c else 0.0 for c in CASE_CLASSES])
    assert case_first == pytest.approx(1 / 30) and shares[2] > 9 * case_first


def test_share_weights_and_the_random_crop_share():
    share = [0.9, 0.08, 0.019, 0.001]
    sampler = ClassFirstSampler(CASE_CLASSES, [0.0] + [s ** -0.5 for s in share[1:]], foreground_share=0.5)
    classes = drawn_classes(sampler)
    assert np.mean(classes == 0) == pytest.approx(0.5, abs=0.02)  # k = 0: random crops
    weights = np.asarray([s ** -0.5 for s in share[1:]])
    foreground = classes[classes > 0]
    np.testing.assert_allclose(np.bincount(foreground, minlength=4)[1:] / foreground.size, weights / weights.sum(), atol=0.02)


def test_the_same_torch_state_gives_the_same_epoch_and_a_case_always_holds_its_class():
    sampler = ClassFirstSampler(CASE_CLASSES, [0, 1, 1, 1], foreground_share=1.0)
    torch.manual_seed(3)
    first = list(sampler)
    torch.manual_seed(3)
    assert list(sampler) == first  # exact resume: the epoch's draws follow torch's restored state
    for index in first:
        case, k = index % 10, index // 10 - 1
        assert k in CASE_CLASSES[case]
    assert encode_class_request(4, 0, 10) == 14


def test_the_dataset_centres_every_crop_on_the_requested_class(phantom2d):
    from monai.data import DataLoader

    from medseg_dropclass.data import CacheDataset, DecathlonPreprocessing, decathlon_datalist

    preprocessing = DecathlonPreprocessing(2, 7, crop_size=(16, 16), num_crops=2)
    dataset = CacheDataset(decathlon_datalist(phantom2d, "training"), preprocessing.transforms("train"), progress=False)
    sampler = class_first_sampler(dataset, 7, "uniform", foreground_share=1.0)
    assert set(sampler.classes) <= set(range(1, 7)) and len(sampler.classes) >= 4  # organs and lesions
    DataLoader(dataset, batch_size=1, sampler=sampler)  # seeds the transforms
    for k in sampler.classes:
        case = sampler.cases_of[k][0]
        for crop in dataset[encode_class_request(case, k, len(dataset))]:
            assert int(crop["label"][0][8, 8]) == k  # the centre voxel is of the requested class
    assert all(t.requested_class is None for t in preprocessing.transforms("train").transforms if hasattr(t, "requested_class"))
    with pytest.raises(ValueError, match="use uniform or share"):
        class_first_sampler(dataset, 7, "rare")
    with pytest.raises(ValueError, match="cached with its class indices"):
        class_first_sampler(CacheDataset(decathlon_datalist(phantom2d, "training"), DecathlonPreprocessing(2, 7).transforms("train"), progress=False), 7)
    with pytest.raises(ValueError, match="not supported by multi_gpu_train"):
        case_first_only("uniform", None)


def test_the_bundle_loader_samples_class_first_when_asked(phantom2d):
    from medseg_dropclass.engine.bundles import bundle_parser

    parser = bundle_parser("phantom2d_dropclass", {"dataset_dir": str(phantom2d), "class_first": "share"})
    loader = parser.get_parsed_content("train#dataloader")
    assert isinstance(loader.sampler, ClassFirstSampler) and loader.sampler.foreground_share == pytest.approx(1 / 3)
    batch = next(iter(loader))
    assert batch["image"].shape[0] == parser.get_parsed_content("batch_size") * 2  # two crops per case
    default = bundle_parser("phantom2d_dropclass", {"dataset_dir": str(phantom2d)}).get_parsed_content("train#dataloader")
    assert not isinstance(default.sampler, ClassFirstSampler)
