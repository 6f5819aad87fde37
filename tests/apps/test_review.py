"""predict --review: one static page, a section per segmented case with every slice, the bundle's class colours,
per-class volumes equal to the label maps', the notices and the research-use banner; an existing page is not
replaced without --overwrite. Opened in headless Chromium (services): it renders, runs without console errors,
shows the right number of cases and is not blank."""

import pathlib
import re

import numpy as np
import pytest
import SimpleITK as sitk

from medseg_dropclass.apps.predict import predict
from medseg_dropclass.apps.review import class_colors
from medseg_dropclass.data import PHANTOM_CLASSES
from medseg_dropclass.engine.bundles import inference_parser
from medseg_dropclass.evaluation.clinical import structure_volume_ml
from tests.cli_runner import run_cli
from tests.programs import chromium

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reviewed(phantom3d, tmp_path_factory):
    out = tmp_path_factory.mktemp("review")
    result = predict("phantom3d_dropclass", str(phantom3d / "imagesTr"), str(out), progress=False, review=True)
    assert not result["failed"] and result["review"] == str(out / "review.html")
    return out, result


def test_the_page_holds_every_case_slice_volume_and_notice(reviewed):
    out, result = reviewed
    page = (out / "review.html").read_text()
    labels = sorted(p for p in out.iterdir() if p.name.endswith("_seg.nii.gz"))
    assert page.count('<section class="case"') == result["cases"] == len(labels) >= 2
    assert "RESEARCH USE ONLY" in page and page.count("DEMONSTRATION: trained on synthetic phantoms") == len(labels)
    meta = inference_parser("phantom3d_dropclass")
    assert f"model version {meta.get('_meta_#version')}" in page
    codes = meta.get("_meta_#segment_codes")
    colors = class_colors(PHANTOM_CLASSES, codes)
    assert colors[4] == tuple(codes["lesion_a"]["color"])  # the bundle's colours, not a default
    for index, label_file in enumerate(labels):
        section = page.split('<section class="case"')[index + 1]
        image = sitk.ReadImage(str(label_file))
        assert section.count('<img class="slice"') == image.GetSize()[2]  # every slice
        label = sitk.GetArrayFromImage(image)
        shown = [float(v) for v in re.findall(r"</span>[a-z_]+</td><td>([0-9.]+)</td>", section)]
        expected = [structure_volume_ml(label, k, image.GetSpacing()[::-1]) for k in range(1, len(PHANTOM_CLASSES))]
        np.testing.assert_allclose(shown, expected, atol=0.006)  # mL, printed with 2 decimals


def test_an_existing_page_is_kept_without_overwrite(reviewed, phantom3d):
    out, _ = reviewed
    before = (out / "review.html").read_bytes()
    done = run_cli("predict", "--bundle", "phantom3d_dropclass", "--input", str(phantom3d / "imagesTs"), "--output-dir",
                   str(out / "again"), "--review", cwd=REPO_ROOT)  # fmt: skip
    assert done.returncode == 0 and "review page:" in done.stdout
    (out / "again" / "review.html").write_text("mine")
    for f in (out / "again").glob("*_seg.nii.gz"):
        f.unlink()
    done = run_cli("predict", "--bundle", "phantom3d_dropclass", "--input", str(phantom3d / "imagesTs"), "--output-dir",
                   str(out / "again"), "--review", cwd=REPO_ROOT)  # fmt: skip
    assert done.returncode == 1 and "review.html exists: pass --overwrite" in done.stderr
    assert (out / "again" / "review.html").read_text() == "mine" and (out / "review.html").read_bytes() == before


@pytest.mark.services
def test_chromium_renders_the_page_without_errors(reviewed, tmp_path):
    from PIL import Image

    out, result = reviewed
    url = (out / "review.html").as_uri()
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-ready="1"' in body and f'data-cases="{result["cases"]}"' in body  # the script ran to its end
    assert "data-errors" not in body and "Uncaught" not in dom.stderr  # no script error
    shot = chromium("--window-size=1000,800", f"--screenshot={tmp_path / 'shot.png'}", url)
    assert shot.returncode == 0, shot.stderr[-2000:]
    pixels = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB"))
    assert pixels.shape[:2] == (800, 1000) and pixels.std() > 20  # not blank
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # pictures, not a flat page


def test_the_inference_config_writes_the_same_page(reviewed, phantom3d, tmp_path):
    out, _ = reviewed
    done = run_cli("run", "phantom3d_dropclass", "inference", "--input", str(phantom3d / "imagesTr"), "--output-dir",
                   str(tmp_path), "--review", "True", cwd=REPO_ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    sections = [p.split("<table>")[0] for p in (out / "review.html").read_text().split('<section class="case"')[1:]]
    assert [
        p.split("<table>")[0] for p in (tmp_path / "review.html").read_text().split('<section class="case"')[1:]
    ] == sections
