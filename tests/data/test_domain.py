"""The training domain of a bundle and the notices an input outside it gets: spacing beyond the tolerance, slices
in a plane not seen (an axial series in LPS or RAS is the same plane), intensities outside an absolute range; nothing for an input inside; the demonstration
notice for a synthetic bundle whatever the input."""

import numpy as np
import SimpleITK as sitk

from medseg_dropclass.data.domain import (
    DEMONSTRATION_NOTICE,
    SPACING_TOLERANCE,
    acquisition_plane,
    describe_image,
    domain_notices,
    training_domain,
)


def write(path, spacing, offset=0.0, sagittal=False):
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) + offset
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    if sagittal:  # slices (the third axis) along x
        image.SetDirection((0, 0, 1, 1, 0, 0, 0, 1, 0))
    sitk.WriteImage(image, str(path))
    return str(path)


def test_the_domain_spans_the_training_images_and_an_image_inside_gets_no_notice(tmp_path):
    files = [write(tmp_path / "a.nii.gz", (1.0, 1.0, 3.0)), write(tmp_path / "b.nii.gz", (1.5, 1.5, 5.0), offset=100)]
    domain = training_domain(files, "CT", absolute_intensity=True)
    assert domain["modality"] == "CT" and domain["spacing_mm"] == [[1.0, 1.5], [1.0, 1.5], [3.0, 5.0]]
    low, high = domain["intensity"]
    assert low == round(float(np.percentile(np.arange(120), 0.5)), 2) and high == round(
        float(np.percentile(np.arange(120) + 100, 99.5)), 2
    )
    assert len(domain["orientations"]) == 1
    assert domain_notices(describe_image(write(tmp_path / "c.nii.gz", (1.2, 1.2, 4.0), offset=50)), domain) == []
    assert "intensity" not in training_domain(files, "MR")  # no absolute scale in MR


def test_spacing_slice_plane_and_intensity_outside_give_one_notice_each(tmp_path):
    domain = training_domain([write(tmp_path / "a.nii.gz", (1.0, 1.0, 3.0))], "CT", absolute_intensity=True)
    coarse = 3.0 * SPACING_TOLERANCE * 1.01
    notices = domain_notices(
        describe_image(write(tmp_path / "b.nii.gz", (1.0, 1.0, coarse), offset=500, sagittal=True)), domain
    )
    assert notices == [
        f"OUT OF DOMAIN: spacing z {coarse:.2f} mm (trained on 3.00-3.00)",
        "OUT OF DOMAIN: sagittal slices (trained on axial)",
        f"OUT OF DOMAIN: intensities {np.percentile(np.arange(120) + 500, 0.5):.0f} to "
        f"{np.percentile(np.arange(120) + 500, 99.5):.0f} (trained on {domain['intensity'][0]:.0f} to {domain['intensity'][1]:.0f})",
    ]
    inside = 3.0 * SPACING_TOLERANCE * 0.99
    assert domain_notices(describe_image(write(tmp_path / "c.nii.gz", (1.0, 1.0, inside))), domain) == []
    assert acquisition_plane("LPS") == acquisition_plane("RAS") == "axial" and acquisition_plane("RSA") == "coronal"


def test_a_synthetic_bundle_says_it_is_a_demonstration_and_no_domain_says_nothing(tmp_path):
    case = describe_image(write(tmp_path / "a.nii.gz", (1.0, 1.0, 3.0)))
    assert domain_notices(case, None, "synthetic") == [DEMONSTRATION_NOTICE]
    assert domain_notices(case, None, "CT") == []


def test_a_fine_series_gets_its_out_of_domain_notice_in_the_log_and_the_seg(tmp_path, phantom3d, capsys):
    import nibabel as nib
    import pydicom

    from medseg_dropclass.apps.predict import predict
    from tests.data.test_dicom import write_series

    case = sorted((phantom3d / "imagesTs").iterdir())[0]
    volume = np.asarray(nib.load(str(case)).dataobj, dtype=np.float64).transpose(2, 1, 0)
    write_series(tmp_path / "fine", spacing=(0.5, 0.5, 2.5), array=np.round(volume * 1000).astype(np.int16))
    result = predict(
        "phantom3d_dropclass", str(tmp_path / "fine"), str(tmp_path / "out"), output_format="dicom-seg", progress=False
    )
    [notices] = result["notices"].values()
    assert notices == [
        DEMONSTRATION_NOTICE,
        "OUT OF DOMAIN: spacing x 0.50 mm (trained on 1.00-1.00), y 0.50 mm (trained on 1.00-1.00)",
    ]
    assert (
        f"{tmp_path / 'fine'}: OUT OF DOMAIN: spacing x 0.50 mm" in capsys.readouterr().err
    )  # the folder, not a scratch file
    seg = pydicom.dcmread(result["written"][1])
    assert seg.ContentDescription.startswith("DEMONSTRATION MODEL; OUT OF DOMAIN: spacing; ")
