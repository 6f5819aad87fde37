"""A review page for one prediction run: a single static HTML file, opened in any browser, no server.

Per case: the image with the segmentation overlaid in the bundle's class colours (every slice of a 3D case, a
slider and the mouse wheel to scroll through them), the class names and colours, the volume of each class in mL
(area in mm^2 for a 2D image), any notice the case got (out of domain, demonstration model), and the model's
name and version under a research-use banner. Pictures are PNGs inside the page (base64), so the file can be
mailed or archived as it is. Written by ``predict --review`` (:class:`~medseg_dropclass.apps.predict.CaseSegmenter`).
"""

import base64
import html
import io
import json
import pathlib
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["class_colors", "overlay_slices", "write_review_page", "REVIEW_FILE"]

REVIEW_FILE = "review.html"
OVERLAY_ALPHA = 0.45
# classes a bundle gives no colour: a fixed, distinguishable cycle (tab10 without grey)
FALLBACK_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                   (227, 119, 194), (188, 189, 34), (23, 190, 207)]  # fmt: skip


def class_colors(class_names: Sequence[str], segment_codes: Optional[Mapping[str, Mapping]] = None) -> List[tuple]:
    """An RGB colour per class (background black): the bundle's ``segment_codes`` colour, else a fixed cycle."""
    colors = [(0, 0, 0)]
    for k, name in enumerate(class_names[1:]):
        color = ((segment_codes or {}).get(str(name)) or {}).get("color")
        colors.append(tuple(int(v) for v in color) if color else FALLBACK_COLORS[k % len(FALLBACK_COLORS)])
    return colors


def _read(path: str):
    import SimpleITK as sitk

    from medseg_dropclass.data.dicom import keep_locale

    with keep_locale():
        return sitk.ReadImage(str(path))


def overlay_slices(image: np.ndarray, label: np.ndarray, colors: Sequence[tuple]) -> List[bytes]:
    """PNG bytes of each slice of ``image`` with ``label`` blended in: arrays ``(z, y, x)`` (``(y, x)``, or
    ``(y, x, 3)`` for a colour photograph, gives one slice). Grey values are windowed to the image's 0.5th-99.5th
    percentiles."""
    from PIL import Image

    rgb_input = image.ndim == label.ndim + 1 and image.shape[-1] in (3, 4)
    if label.ndim == 2:
        image, label = image[None], label[None]
    if rgb_input:
        base = image[..., :3].astype(np.float64)
    else:
        low, high = np.percentile(image, (0.5, 99.5)) if image.size else (0.0, 1.0)
        grey = np.clip((image.astype(np.float64) - low) / max(high - low, 1e-6), 0, 1) * 255
        base = np.repeat(grey[..., None], 3, axis=-1)
    palette = np.asarray(colors, dtype=np.float64)
    label = np.clip(label.astype(np.int64), 0, len(palette) - 1)
    mask = (label > 0)[..., None]
    blended = np.where(mask, (1 - OVERLAY_ALPHA) * base + OVERLAY_ALPHA * palette[label], base)
    pictures = []
    for plane in blended.astype(np.uint8):
        buffer = io.BytesIO()
        Image.fromarray(plane).save(buffer, format="PNG")  # row 0 on top, as a DICOM viewer shows a slice
        pictures.append(buffer.getvalue())
    return pictures


def _case_section(index: int, case: Mapping, class_names: Sequence[str], colors: Sequence[tuple]) -> str:
    import SimpleITK as sitk

    from medseg_dropclass.evaluation.clinical import structure_volume_ml

    image, label = _read(case["image"]), _read(case["label"])
    image_array, label_array = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)
    spacing = list(label.GetSpacing())[::-1]  # numpy order (z, y, x)
    unit = "mL" if label_array.ndim == 3 else "mm\u00b2"
    scale = 1.0 if label_array.ndim == 3 else 1000.0  # structure_volume_ml divides by 1000: an area stays in mm^2
    rows = "".join(
        f'<tr><td><span class="swatch" style="background:rgb{tuple(colors[k])}"></span>{html.escape(str(name))}</td>'
        f"<td>{structure_volume_ml(label_array, k, spacing) * scale:.2f}</td></tr>"
        for k, name in enumerate(class_names)
        if k > 0
    )
    slices = overlay_slices(image_array, label_array, colors)
    middle = len(slices) // 2
    pictures = "".join(
        f'<img class="slice" data-index="{z}" alt="slice {z + 1}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"{"" if z == middle else " hidden"}>'
        for z, png in enumerate(slices)
    )
    notices = "".join(f'<p class="notice">{html.escape(n)}</p>' for n in case.get("notices", []))
    slider = (
        f'<input type="range" min="0" max="{len(slices) - 1}" value="{middle}" class="slider"> '
        f'<span class="where">slice {middle + 1} of {len(slices)}</span>'
        if len(slices) > 1
        else ""
    )
    return (
        f'<section class="case" id="case{index}"><h2>{html.escape(str(case["name"]))}</h2>{notices}'
        f'<div class="row"><div class="viewer">{pictures}<div>{slider}</div></div>'
        f"<table><tr><th>class</th><th>{unit}</th></tr>{rows}</table></div></section>"
    )


STYLE = """body{font-family:sans-serif;margin:0;background:#111;color:#eee}
.banner{background:#b00020;color:#fff;padding:8px 16px;font-weight:bold}
header,section{padding:8px 16px}.case{border-top:1px solid #444}
.notice{background:#ffcc00;color:#000;padding:4px 8px;display:inline-block;margin:2px 0}
.row{display:flex;gap:24px;align-items:flex-start}.slice{width:384px;image-rendering:pixelated}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px}td,th{padding:2px 8px;text-align:left}
.slider{width:384px}"""

SCRIPT = """window.reviewErrors=[];window.addEventListener('error',e=>{window.reviewErrors.push(String(e.message));
document.body.dataset.errors=window.reviewErrors.join(' | ');});
function show(section,z){section.querySelectorAll('img.slice').forEach(i=>{i.hidden=Number(i.dataset.index)!==z;});
const where=section.querySelector('.where');const n=section.querySelectorAll('img.slice').length;
if(where){where.textContent='slice '+(z+1)+' of '+n;}}
document.querySelectorAll('section.case').forEach(section=>{const slider=section.querySelector('.slider');
if(!slider){return;}slider.addEventListener('input',()=>show(section,Number(slider.value)));
section.querySelector('.viewer').addEventListener('wheel',e=>{e.preventDefault();
slider.value=String(Number(slider.value)+(e.deltaY>0?1:-1));show(section,Number(slider.value));},{passive:false});});
document.body.dataset.cases=String(document.querySelectorAll('section.case').length);
document.body.dataset.ready='1';"""


def write_review_page(
    cases: Sequence[Mapping],
    output: str,
    class_names: Sequence[str],
    model: Sequence[str],
    segment_codes: Optional[Mapping[str, Mapping]] = None,
    failed: Optional[Dict[str, str]] = None,
) -> str:
    """Write the page for ``cases`` (each ``{"name", "image", "label", "notices"}``) to ``output``; ``model`` is
    ``(name, version)``; ``failed`` lists the cases that were not segmented, with their error. Returns the path."""
    from medseg_dropclass.data.dicom_seg import RESEARCH_NOTICE

    colors = class_colors(class_names, segment_codes)
    sections = "".join(_case_section(i, case, class_names, colors) for i, case in enumerate(cases))
    failures = "".join(f"<li>{html.escape(s)}: {html.escape(m)}</li>" for s, m in (failed or {}).items())
    name, version = (html.escape(str(v)) for v in model)
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Review: {name} {version}</title><style>{STYLE}</style></head><body>"
        f'<div class="banner">{RESEARCH_NOTICE}: automatic segmentations, not reviewed by a clinician; '
        "not for diagnosis or treatment.</div>"
        f"<header><h1>{name}</h1><p>model version {version}; {len(cases)} case(s) segmented</p>"
        + (f"<p>not segmented:</p><ul>{failures}</ul>" if failures else "")
        + f'</header>{sections}<script type="application/json" id="classes">'
        f"{json.dumps(list(map(str, class_names)))}</script><script>{SCRIPT}</script></body></html>"
    )
    path = pathlib.Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return str(path)
