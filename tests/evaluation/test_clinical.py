"""Cardiac volumes, ejection fraction, Bland-Altman agreement and HD95 against plain computations."""

import math

import numpy as np
import pytest

from medseg_dropclass.evaluation.clinical import bland_altman, ejection_fraction, hausdorff95, structure_volume_ml


def test_volume_in_ml_from_voxels_and_spacing():
    label = np.zeros((10, 10, 4), np.uint8)
    label[2:6, 3:8, 1:3] = 3  # 4 * 5 * 2 = 40 voxels
    assert structure_volume_ml(label, 3, (1.5, 1.5, 10.0)) == pytest.approx(40 * 22.5 / 1000)
    assert structure_volume_ml(label, 1, (1.0, 1.0, 1.0)) == 0.0
    with pytest.raises(ValueError, match="3D label map"):
        structure_volume_ml(label, 3, (1.0, 1.0))


def test_ejection_fraction():
    assert ejection_fraction(150.0, 60.0) == pytest.approx(60.0)
    assert math.isnan(ejection_fraction(0.0, 0.0))


def test_bland_altman_against_a_hand_computation():
    predicted, reference = [10.0, 12.0, 9.0, float("nan")], [11.0, 11.0, 10.0, 5.0]
    differences = np.array([-1.0, 1.0, -1.0])
    result = bland_altman(predicted, reference)
    assert result["n"] == 3 and result["bias"] == pytest.approx(differences.mean())
    sd = math.sqrt(((differences - differences.mean()) ** 2).sum() / 2)
    assert result["sd"] == pytest.approx(sd) and result["upper"] == pytest.approx(differences.mean() + 1.96 * sd)
    assert math.isnan(bland_altman([1.0], [2.0])["sd"])


def test_hd95_of_a_shifted_square_and_absent_classes():
    reference = np.zeros((40, 40), np.uint8)
    reference[10:20, 10:20] = 1
    shifted = np.roll(reference, 3, axis=0)  # every surface point moves 3 voxels along one axis at most
    distance = hausdorff95(shifted, reference, 1)
    assert 0 < distance <= 3.0 + 1e-6
    assert hausdorff95(shifted, reference, 1, spacing_mm=(2.0, 1.0)) == pytest.approx(2 * distance)
    assert hausdorff95(reference, reference, 1) == 0.0
    assert math.isnan(hausdorff95(reference, reference, 2))


def test_cardiac_indices_pair_the_phases_of_each_patient():
    from medseg_dropclass.evaluation.clinical import cardiac_indices

    def case(patient, phase, lv_pred, lv_ref):
        counts = {"left_ventricle": {"n_pred": lv_pred, "n_ref": lv_ref}, "right_ventricle": {"n_pred": 1, "n_ref": 1}}
        return {"reference": f"/d/acdc_{patient}_{phase}.nii.gz", "metrics": counts, "voxel_ml": 0.002}

    cases = [
        case("patient001", "ED", 1000, 1100),
        case("patient001", "ES", 400, 500),
        case("patient002", "ED", 2000, 2000),
        case("patient002", "ES", 1000, 800),
        case("patient003", "ED", 500, 500),
    ]  # fmt: skip  (patient003 has no ES: left out)
    lv = cardiac_indices(cases)["left_ventricle"]
    assert lv["patients"] == ["patient001", "patient002"]
    assert lv["edv_ml"] == ([2.0, 4.0], [2.2, 4.0])
    np.testing.assert_allclose(lv["ef_percent"][0], [60.0, 50.0])
    np.testing.assert_allclose(lv["ef_percent"][1], [100 * 600 / 1100, 60.0])
    assert lv["edv_agreement"]["bias"] == pytest.approx(-0.1) and lv["edv_agreement"]["n"] == 2
    assert lv["ef_agreement"]["bias"] == pytest.approx(np.mean([60.0 - 100 * 600 / 1100, 50.0 - 60.0]))
