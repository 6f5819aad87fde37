import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest

from medseg_dropclass.data.phantoms import DEFAULT_2D, PHANTOM_CLASSES, make_phantom_dataset, render_case
from tests.data.conftest import TINY_2D


def load(root, entry):
    return (np.asarray(nib.load(str(root / entry[key])).dataobj) for key in ("image", "label"))


def test_layout_and_dataset_json(phantom2d):
    content = json.loads((phantom2d / "dataset.json").read_text())
    assert content["labels"] == {str(k): n for k, n in enumerate(PHANTOM_CLASSES)}
    assert content["tensorImageSize"] == "2D"
    assert [len(content[s]) for s in ("training", "test", "test_shifted")] == [6, 2, 2]
    for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "imagesTsShifted", "labelsTsShifted"):
        assert (phantom2d / folder).is_dir()
    image, label = load(phantom2d, content["training"][0])
    assert image.shape == label.shape == (48, 48) and image.dtype == np.float32 and label.dtype == np.uint8


def test_geometry_is_rotated_and_anisotropic(phantom3d):
    content = json.loads((phantom3d / "dataset.json").read_text())
    nifti = nib.load(str(phantom3d / content["training"][0]["image"]))
    assert nifti.header.get_zooms() == pytest.approx((1.0, 1.0, 2.5))
    affine = nifti.affine
    assert abs(affine[0, 1]) > 1e-3  # rotated: not a diagonal affine
    assert np.allclose(nib.load(str(phantom3d / content["training"][0]["label"])).affine, affine)
    assert nifti.shape == (32, 32, 16)


def test_deterministic(tmp_path):
    a = make_phantom_dataset(str(tmp_path / "a"), TINY_2D, progress=False).parent
    b = make_phantom_dataset(str(tmp_path / "b"), TINY_2D, progress=False).parent
    entries = json.loads((a / "dataset.json").read_text())["training"]
    for entry in entries:
        for x, y in zip(load(a, entry), load(b, entry)):
            assert np.array_equal(x, y)
    other = make_phantom_dataset(str(tmp_path / "c"), dataclasses.replace(TINY_2D, seed=1), progress=False).parent
    assert not np.array_equal(next(iter(load(a, entries[0]))), next(iter(load(other, entries[0]))))


def class_shares(labels):
    counts = np.bincount(np.concatenate([l.ravel() for l in labels]), minlength=len(PHANTOM_CLASSES))
    return counts / counts.sum()


def test_default_2d_class_imbalance_and_context_bias():
    config = dataclasses.replace(DEFAULT_2D, num_train=40)
    rng = [np.random.default_rng([0, 0, i]) for i in range(config.num_train)]
    cases = [render_case(config, r, lesions_in_host=True) for r in rng]
    shares = class_shares([label for _, label in cases])
    assert all(0.03 <= shares[k] <= 0.2 for k in (1, 2, 3)), shares
    assert shares[4] < 0.005 and shares[5] < 0.0005 and shares[6] < 0.0005, shares
    assert all(shares[k] > 0 for k in (4, 5, 6))

    def in_host_fraction(cases_):
        host = {4: 1, 5: 2, 6: 3}
        hits, total = 0, 0
        for _, label in cases_:
            for lesion, organ in host.items():
                ys, xs = np.nonzero(label == lesion)
                if len(ys) == 0:
                    continue
                # the ring just outside the lesion: inside the host organ or not
                y, x = int(ys.mean()), int(xs.mean())
                radius = int(np.sqrt(len(ys) / np.pi)) + 2
                ring = label[max(y - radius, 0) : y + radius + 1, max(x - radius, 0) : x + radius + 1]
                hits += int(np.mean(ring == organ) > 0.3)
                total += 1
        return hits / total

    assert in_host_fraction(cases) > 0.75
    shifted = [render_case(config, np.random.default_rng([0, 2, i]), lesions_in_host=False) for i in range(20)]
    assert in_host_fraction(shifted) < 0.1


def test_image_has_noise_and_partial_volume_edges():
    image, label = render_case(DEFAULT_2D, np.random.default_rng(0), lesions_in_host=True)
    organ = image[label == 1]
    assert organ.std() > 4.0  # noise and bias field
    edge = (label[1:, :] != label[:-1, :])
    assert edge.any() and np.isfinite(image).all()


def test_bad_configuration(tmp_path):
    with pytest.raises(ValueError, match=r"spatial_dims=4 is not supported for phantoms"):
        make_phantom_dataset(str(tmp_path), dataclasses.replace(TINY_2D, spatial_dims=4))
    with pytest.raises(ValueError, match=r"spacing \(0.8, 0.8\) needs 3 values"):
        make_phantom_dataset(str(tmp_path), dataclasses.replace(TINY_2D, spatial_dims=3))
    with pytest.raises(ValueError, match=r"size=16 is too small"):
        make_phantom_dataset(str(tmp_path), dataclasses.replace(TINY_2D, size=16))
