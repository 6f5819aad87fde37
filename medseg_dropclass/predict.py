"""``python -m medseg_dropclass predict``: segment images with a bundle's model, case by case.

The bundle's own inference pieces (preprocessing, inferer, postprocessing and writer, class count from its
``metadata.json``) run one case at a time, so a case that fails (an unreadable file, a wrong channel count, a
2D image for a 3D model) is reported and skipped: nothing is written for it, the other cases still run, and the
command ends with a summary and exit code 1. The network is the bundle's checkpoint (``--ckpt``, default
``models/model.pt``) or an exported ONNX model run by onnxruntime (``--backend onnxruntime --model FILE.onnx``),
which needs none of the training code.

    python -m medseg_dropclass predict --bundle phantom2d_dropclass --input scans/ --output predictions/
"""

import pathlib
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np
import torch

__all__ = ["OnnxNetwork", "predict", "predict_main"]


class OnnxNetwork(torch.nn.Module):
    """An exported ONNX model as a ``torch.nn.Module`` for MONAI's inferers (onnxruntime on CPU)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        from medseg_dropclass.export import load_exported

        self.run = load_exported(path, "onnx")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.run(x.detach().cpu().float().numpy()))).to(x.device)


def _inputs(source: str, suffixes, scratch: str, series_uid: Optional[str], modality: Optional[str]) -> List[Dict[str, str]]:
    """The input images; a folder holding a DICOM series becomes one volume (written to ``scratch`` as
    ``<folder name>.nii.gz``, geometry kept) after :func:`~medseg_dropclass.data.dicom.dicom_series_volume`'s checks."""
    from medseg_dropclass.data import image_datalist
    from medseg_dropclass.data.dicom import dicom_series_volume, is_dicom_folder, keep_locale

    path = pathlib.Path(source)
    if path.is_file() and path.name.lower().endswith(tuple(suffixes)):
        return [{"image": str(path.resolve())}]
    if path.is_dir() and not any(f.name.lower().endswith(tuple(suffixes)) for f in path.iterdir()) and is_dicom_folder(source):
        import SimpleITK as sitk

        volume, uid = dicom_series_volume(source, series_uid, modality)
        target = pathlib.Path(scratch) / f"{path.resolve().name}.nii.gz"
        with keep_locale():
            sitk.WriteImage(volume, str(target))
        print(f"{source}: DICOM series {uid}, {volume.GetSize()} voxels of {tuple(round(v, 3) for v in volume.GetSpacing())} mm")
        return [{"image": str(target)}]
    return image_datalist(source, suffixes=suffixes)


def predict(
    bundle: str,
    source: str,
    output_dir: str,
    ckpt: Optional[str] = None,
    backend: str = "torch",
    model: Optional[str] = None,
    overwrite: bool = False,
    progress: bool = True,
    series_uid: Optional[str] = None,
) -> Dict[str, object]:
    """Segment every image of ``source`` (a file, a folder or a JSON datalist) into ``output_dir``.

    Returns ``{"written": [output files], "failed": {input: message}}``.

    Raises:
        FileNotFoundError: no checkpoint / model file, or no input image.
        FileExistsError: an output would replace an input or an existing file (without ``overwrite``).
    """
    from medseg_dropclass.engine.bundles import find_bundle, inference_parser, load_weights

    if backend not in ("torch", "onnxruntime"):
        raise ValueError(f"backend {backend!r}: use 'torch' or 'onnxruntime'")
    root = find_bundle(bundle)
    parser = inference_parser(root, output_dir=str(output_dir), input=str(source))
    device = parser.get_parsed_content("device")
    if backend == "torch":
        checkpoint = pathlib.Path(ckpt) if ckpt else root / "models" / "model.pt"
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{checkpoint}: no such checkpoint (train the bundle, or pass --ckpt)")
        network = load_weights(parser.get_parsed_content("network_def").to(device), checkpoint, device)
    else:
        if model is None or not pathlib.Path(model).is_file():
            raise FileNotFoundError(f"{model}: no such ONNX model (export one with `python -m medseg_dropclass export --format onnx`)")
        network, device = OnnxNetwork(model), torch.device("cpu")
    network.eval()
    preprocessing = parser.get_parsed_content("preprocessing")
    trained_on = str(parser.get("_meta_#network_data_format#inputs#image#modality", "")).upper()
    scratch = tempfile.TemporaryDirectory(prefix="predict_")
    try:
        items = _inputs(source, preprocessing.suffixes, scratch.name, series_uid, trained_on if trained_on in ("CT", "MR") else None)
        return _predict_items(items, preprocessing, parser, network, device, output_dir, overwrite, progress)
    finally:
        scratch.cleanup()


def _predict_items(items, preprocessing, parser, network, device, output_dir, overwrite, progress) -> Dict[str, object]:
    from monai.data import MetaTensor
    from tqdm import tqdm

    from medseg_dropclass.data import plan_output_names
    from medseg_dropclass.data.transforms import find_dataset_error

    names = plan_output_names(items, str(output_dir), preprocessing.output_extension, "seg", overwrite)
    transforms = preprocessing.transforms("inference")
    postprocessing = preprocessing.postprocessing("inference", str(output_dir), names)
    inferer = parser.get_parsed_content("inferer")
    written, failed = [], {}
    for item in tqdm(items, desc="predict", unit="case", disable=not progress):
        source_file = item["image"]
        target = pathlib.Path(output_dir) / f"{names[source_file]}_seg{preprocessing.output_extension}"
        try:
            data = transforms(dict(item))
            image = data["image"]
            with torch.no_grad():
                logits = inferer(image.unsqueeze(0).to(device), network)[0]
            data["pred"] = MetaTensor(logits.cpu(), meta=image.meta, applied_operations=image.applied_operations)
            postprocessing(data)
            written.append(str(target))
        except Exception as error:  # noqa: BLE001  (any failure of one case: report it, go on with the others)
            named = find_dataset_error(error) or error
            failed[source_file] = f"{type(named).__name__}: {named}"
            if target.exists() and str(target) not in written:
                target.unlink()  # nothing half-written stays behind
    return {"written": written, "failed": failed}


def predict_main(argv: Optional[List[str]] = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, help="a shipped bundle's name or a bundle folder")
    parser.add_argument("--input", required=True, help="an image file, a folder of images, a folder holding a DICOM series, or a JSON datalist")
    parser.add_argument("--series-uid", default=None, help="the DICOM series to segment when the folder holds several")
    parser.add_argument("--output", required=True, help="the output folder")
    parser.add_argument("--ckpt", default=None, help="the checkpoint (torch backend; default: the bundle's models/model.pt)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument("--model", default=None, help="the exported ONNX model (onnxruntime backend)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files (an input is never replaced)")
    args = parser.parse_args(argv)
    try:
        result = predict(args.bundle, args.input, args.output, args.ckpt, args.backend, args.model, args.overwrite, series_uid=args.series_uid)
    except (FileNotFoundError, FileExistsError, ValueError) as error:  # DatasetError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    total = len(result["written"]) + len(result["failed"])
    print(f"{len(result['written'])} of {total} case(s) written to {args.output}")
    if result["failed"]:
        print(f"{len(result['failed'])} case(s) failed (nothing written for them):", file=sys.stderr)
        for source, message in result["failed"].items():
            print(f"  {source}: {message}", file=sys.stderr)
        sys.exit(1)
