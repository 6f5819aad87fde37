import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest

from medseg_dropclass.data.phantoms import DEFAULT_2D, LESIONS, MIN_LESION_PIXELS, MIN_LESION_VOXELS, PHANTOM_CLASSES, make_phantom_dataset, render_case
from tests.data.conftest import TINY_2D, TINY_3D


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
    config = dataclasses.replace(DEFAULT_2D, num_train=60)
    rng = [np.random.default_rng([0, 0, i]) for i in range(config.num_train)]
    cases = [render_case(config, r, lesions_in_host=True) for r in rng]
    shares = class_shares([label for _, label in cases])
    assert all(0.03 <= shares[k] <= 0.2 for k in (1, 2, 3)), shares
    assert 0.001 < shares[4] < 0.01 and 0.001 < shares[5] < 0.01 and 0 < shares[6] < 0.001, shares
    sizes = [np.sum(label == k) for _, label in cases for k in (4, 5, 6) if np.any(label == k)]
    assert min(sizes) >= MIN_LESION_PIXELS
    # lesion_c is rare through few instances, not through size: about LESIONS[6].presence of the cases
    with_c = np.mean([np.any(label == 6) for _, label in cases])
    assert 0.03 < with_c < 0.3 and np.median([np.sum(l == 6) for _, l in cases if np.any(l == 6)]) >= MIN_LESION_PIXELS

    assert in_host_fraction(cases) > 0.8
    shifted = [render_case(config, np.random.default_rng([0, 2, i]), lesions_in_host=False) for i in range(30)]
    assert in_host_fraction(shifted) < 0.1
    unbiased = dataclasses.replace(config, host_probability=0.0)
    assert in_host_fraction([render_case(unbiased, np.random.default_rng([0, 0, i]), True) for i in range(30)]) < 0.1


def in_host_fraction(cases):
    hits, total = 0, 0
    for _, label in cases:
        for lesion, spec in LESIONS.items():
            ring = lesion_ring(label, lesion)
            if ring is None:
                continue
            hits += int(np.mean(label[ring] == spec.host) > 0.5)
            total += 1
    return hits / total


def lesion_ring(label, lesion, width=2):
    """The pixels within ``width`` of the lesion, outside it (its local surroundings)."""
    mask = label == lesion
    if not mask.any():
        return None
    grown = mask.copy()
    for _ in range(width):
        grown = grown | np.roll(grown, 1, 0) | np.roll(grown, -1, 0) | np.roll(grown, 1, 1) | np.roll(grown, -1, 1)
    return grown & ~mask & (label < 4)


def test_shift_changes_context_not_contrast():
    """A lesion's contrast to its surroundings has the same distribution inside and outside its host."""
    config = DEFAULT_2D  # the noise averages out over a lesion's >= 25 pixels and many cases
    contrasts = {True: {k: [] for k in LESIONS}, False: {k: [] for k in LESIONS}}
    for in_host in (True, False):
        for i in range(150):
            image, label = render_case(config, np.random.default_rng([5, int(in_host), i]), lesions_in_host=in_host)
            for lesion in LESIONS:
                ring = lesion_ring(label, lesion)
                if ring is None or not ring.any():
                    continue
                contrasts[in_host][lesion].append(float(np.mean(image[label == lesion]) - np.mean(image[ring])))
    for lesion, spec in LESIONS.items():
        inside, outside = np.array(contrasts[True][lesion]), np.array(contrasts[False][lesion])
        assert len(inside) >= 5 and len(outside) >= 5, lesion
        # contrast sign and size follow the class (8 = DEFAULT_2D.noise), not the context
        assert np.sign(np.median(inside)) == np.sign(np.median(outside)) == np.sign(spec.contrast[0])
        assert abs(np.median(inside) - np.median(outside)) < 0.25 * abs(np.median(inside)), (lesion, np.median(inside), np.median(outside))


def test_image_has_noise_and_partial_volume_edges():
    image, label = render_case(DEFAULT_2D, np.random.default_rng(0), lesions_in_host=True)
    organ = image[label == 1]
    assert organ.std() > 4.0 and np.isfinite(image).all()  # noise and bias field
    clean, label = render_case(dataclasses.replace(DEFAULT_2D, noise=0.0), np.random.default_rng(0), lesions_in_host=True)
    # border pixels of organ_large against the body background hold a mix of the two intensities
    background_level, organ_level = np.median(clean[label == 0][clean[label == 0] > 1]), np.median(clean[label == 1])
    border = (label == 1) & (np.roll(label, 1, 0) == 0) | (label == 0) & (np.roll(label, -1, 0) == 1)
    values = clean[border]
    mixed = (values > background_level * 1.05) & (values < organ_level * 0.95)
    assert border.sum() > 5 and mixed.mean() > 0.3, (border.sum(), mixed.mean())
    interior = clean[(label == 1) & ~border]
    assert np.mean(np.abs(interior / organ_level - 1) < 0.1) > 0.9  # away from borders: the pure level


def test_bad_configuration(tmp_path):
    with pytest.raises(ValueError, match=r"spatial_dims=4 is not supported for phantoms"):
        make_phantom_dataset(str(tmp_path), dataclasses.replace(TINY_2D, spatial_dims=4))
    with pytest.raises(ValueError, match=r"spacing \(0.8, 0.8\) needs 3 values"):
        make_phantom_dataset(str(tmp_path), dataclasses.replace(TINY_2D, spatial_dims=3))
    with pytest.raises(ValueError, match=r"size=16 is too small"):
        make_phantom_dataset(str(tmp_path), dataclasses.replace(TINY_2D, size=16))


def test_3d_lesions_have_the_minimum_size():
    config = dataclasses.replace(TINY_3D, size=48)
    sizes = []
    for i in range(12):
        _, label = render_case(config, np.random.default_rng([1, 0, i]), lesions_in_host=i % 2 == 0)
        sizes += [int(np.sum(label == k)) for k in LESIONS if np.any(label == k)]
    assert len(sizes) >= 8 and min(sizes) >= MIN_LESION_VOXELS == 47


def test_ensure_phantoms_refuses_an_older_phantom_version(tmp_path):
    from medseg_dropclass.data.phantoms import ensure_phantoms

    old = tmp_path / "old"
    old.mkdir()
    (old / "dataset.json").write_text(json.dumps({"name": "Phantom2D", "training": []}))
    with pytest.raises(FileExistsError, match=r"phantoms of version 1, this code generates version 2; delete .*old to regenerate"):
        ensure_phantoms(str(old), 2)
    assert (old / "dataset.json").read_text() == json.dumps({"name": "Phantom2D", "training": []})  # untouched
