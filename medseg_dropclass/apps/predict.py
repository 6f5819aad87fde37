"""``python -m medseg_dropclass predict``: segment images with a bundle's model, case by case.

The bundle's own inference pieces (preprocessing, inferer, postprocessing and writer, class count from its
``metadata.json``) run one case at a time, so a case that fails (an unreadable file, a wrong channel count, a
2D image for a 3D model) is reported and skipped: nothing is written for it, the other cases still run, and the
command ends with a summary and exit code 1. The network is the bundle's checkpoint (``--ckpt``, default
``models/model.pt``) or an exported ONNX model run by onnxruntime (``--backend onnxruntime --model FILE.onnx``),
which needs none of the training code.

    python -m medseg_dropclass predict --bundle phantom2d_dropclass --input scans/ --output predictions/
    python -m medseg_dropclass predict --bundle phantom3d_dropclass --input dicom_series/ --output-dir out/ --format dicom-seg
"""

import atexit
import pathlib
import shutil
import sys
import tempfile
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from medseg_dropclass.validation import error_in_chain

__all__ = [
    "OUTPUT_FORMATS",
    "OnnxNetwork",
    "PredictionInputs",
    "CaseSegmenter",
    "CasesFailedError",
    "predict",
    "predict_main",
]

OUTPUT_FORMATS = ("nifti", "dicom-seg")
STREAM_ABOVE_VOXELS = 2**24  # 16.8 M voxels (256^3): larger cases are segmented slab by slab


class OnnxNetwork(torch.nn.Module):
    """An exported ONNX model as a ``torch.nn.Module`` for MONAI's inferers (onnxruntime on CPU)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        from medseg_dropclass.apps.export import load_exported

        self.run = load_exported(path, "onnx")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.run(x.detach().cpu().float().numpy()))).to(x.device)


class PredictionInputs:
    """The cases of one prediction run: ``items`` (``[{"image": path}]``) and, for a DICOM series input, its slices.

    A folder holding a DICOM series becomes one volume (``<folder name>.nii.gz`` in a scratch folder, geometry kept,
    after :func:`~medseg_dropclass.data.dicom.dicom_series_volume`'s checks; a one-slice series given to a 2D model
    becomes a 2D image); its slice files are kept so that a DICOM SEG can reference them
    (:meth:`write_dicom_seg`). Used by :func:`predict` and by the bundles' ``inference.yaml``.

    Raises:
        DatasetError: a DICOM folder that fails the series checks.
        ValueError: ``output_format="dicom-seg"`` for an input that is not a DICOM series.
    """

    def __init__(
        self,
        source: str,
        suffixes,
        series_uid: Optional[str] = None,
        modality: Optional[str] = None,
        spatial_dims: int = 3,
        output_format: str = "nifti",
        scratch: Optional[str] = None,
    ) -> None:
        from medseg_dropclass.data import image_datalist
        from medseg_dropclass.data.dicom import is_dicom_folder, keep_locale, read_dicom_series

        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output format {output_format!r}: use one of {', '.join(OUTPUT_FORMATS)}")
        self.output_format = output_format
        self.series: Dict[str, Tuple[str, List[str]]] = {}  # converted image -> (series UID, slice files in order)
        self.origins: Dict[str, str] = {}  # converted image -> the DICOM folder it came from
        modality = str(modality or "").upper()
        path = pathlib.Path(source)
        if (
            path.is_dir()
            and not any(f.name.lower().endswith(tuple(suffixes)) for f in path.iterdir())
            and is_dicom_folder(source)
        ):
            import SimpleITK as sitk

            volume, uid, files = read_dicom_series(source, series_uid, modality if modality in ("CT", "MR") else None)
            if spatial_dims == 2 and volume.GetDimension() == 3 and volume.GetSize()[2] == 1:
                volume = volume[:, :, 0]  # one slice for a 2D model: a 2D image of the slice's plane
            if scratch is None:  # lives as long as the process (the bundle's inference config reads the file later)
                scratch = tempfile.mkdtemp(prefix="predict_")
                atexit.register(shutil.rmtree, scratch, True)
            target = pathlib.Path(scratch) / f"{path.resolve().name}.nii.gz"
            with keep_locale():
                sitk.WriteImage(volume, str(target))
            print(
                f"{source}: DICOM series {uid}, {volume.GetSize()} voxels of {tuple(round(v, 3) for v in volume.GetSpacing())} mm"
            )
            self.items = [{"image": str(target)}]
            self.series[str(target)] = (uid, list(files))
            self.origins[str(target)] = str(source)
        elif path.is_file() and path.name.lower().endswith(tuple(suffixes)):
            self.items = [{"image": str(path.resolve())}]
        else:
            self.items = image_datalist(source, suffixes=suffixes)
        if output_format == "dicom-seg" and not self.series:
            raise ValueError(
                f"{source}: --format dicom-seg needs a folder holding a DICOM series (a SEG references its source slices)"
            )

    def output_names(self, output_dir: str, extension: str, overwrite: bool = False) -> Dict[str, str]:
        """:func:`~medseg_dropclass.data.plan_output_names` for the label maps and, with ``dicom-seg``, the SEG files."""
        from medseg_dropclass.data import plan_output_names

        names = plan_output_names(self.items, str(output_dir), extension, "seg", overwrite)
        if self.output_format == "dicom-seg":
            plan_output_names(self.items, str(output_dir), ".dcm", "seg", overwrite)
        return names

    def write_dicom_seg(
        self,
        image: str,
        label_file: str,
        output: str,
        class_names: Sequence[str],
        algorithm_name: str,
        algorithm_version: str,
        segment_codes: Optional[Mapping] = None,
        notices: Sequence[str] = (),
    ) -> str:
        """The label map ``label_file`` predicted for ``image`` as a DICOM SEG over the series it came from
        (segments coded by ``segment_codes``, ``notices`` in its content description)."""
        import SimpleITK as sitk

        from medseg_dropclass.data.dicom import keep_locale
        from medseg_dropclass.data.dicom_seg import write_dicom_seg

        _, files = self.series[image]
        with keep_locale():
            label = sitk.ReadImage(str(label_file))
        return write_dicom_seg(
            label,
            files,
            output,
            class_names,
            algorithm_name,
            algorithm_version,
            segment_codes=segment_codes,
            notices=notices,
        )


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
    output_format: str = "nifti",
    stream_above: int = STREAM_ABOVE_VOXELS,
    review: bool = False,
) -> Dict[str, object]:
    """Segment every image of ``source`` (a file, a folder, a JSON datalist or a folder holding a DICOM series)
    into ``output_dir``; with ``output_format="dicom-seg"`` a DICOM series also gets ``<name>_seg.dcm``, a DICOM
    SEG over its slices. The cases, output names, preprocessing and inferer are those of the bundle's ``inference.yaml``.
    A case of more than ``stream_above`` voxels given to a sliding-window bundle is segmented slab by slab
    (:class:`~medseg_dropclass.engine.inferers.SlabArgmaxInferer`: the class map and one slab of scores in memory,
    progress over the windows); its class map goes back to the input grid by nearest neighbour (smaller cases: the
    class scores are resampled, then argmaxed; identical where the preprocessing does not resample).

    Each case is first compared with the bundle's training domain (notices printed and kept; see
    :class:`CaseSegmenter`); ``review=True`` also writes ``review.html`` into ``output_dir``.

    Returns ``{"cases": number of cases, "written": [output files], "failed": {input: problem},
    "notices": {input: [notice]}, "review": the review page or None}``.

    Raises:
        FileNotFoundError: no checkpoint / model file, or no input image.
        FileExistsError: an output would replace an input or an existing file (without ``overwrite``).
        ValueError: an unknown backend or output format, or ``dicom-seg`` for an input that is not a DICOM series.
    """
    from medseg_dropclass.engine.bundles import find_bundle, inference_parser, load_weights
    from medseg_dropclass.engine.checkpoints import require_checkpoint
    from medseg_dropclass.validation import MissingFileError, require_file

    if backend not in ("torch", "onnxruntime"):
        raise ValueError(f"backend {backend!r}: use 'torch' or 'onnxruntime'")
    root = find_bundle(bundle)
    checkpoint = pathlib.Path(ckpt) if ckpt else root / "models" / "model.pt"
    parser = inference_parser(
        root,
        output_dir=str(output_dir),
        input=str(source),
        overwrite=overwrite,
        series_uid=series_uid,
        output_format=output_format,
        **({"ckpt_path": str(checkpoint)} if backend == "torch" else {}),  # the network the checkpoint holds
    )
    device = parser.get_parsed_content("device")
    if backend == "torch":  # the model is checked before any case is read
        require_checkpoint(str(checkpoint))
        network = load_weights(parser.get_parsed_content("network_def").to(device), checkpoint, device)
    else:
        if model is None:
            raise MissingFileError(
                "--backend onnxruntime needs --model FILE.onnx (export one with `python -m medseg_dropclass export --format onnx`)"
            )
        require_file(str(model), "ONNX model")
        network, device = OnnxNetwork(model), torch.device("cpu")
    network.eval()
    return _predict_items(parser, network, device, str(output_dir), progress, stream_above, review)


def _parsed(parser, key: str):
    """``parser.get_parsed_content(key)``, raising the error of the input itself (a missing input, an output that
    exists, a bad DICOM folder) instead of MONAI's "Failed to evaluate" wrapper around it."""
    try:
        return parser.get_parsed_content(key)
    except RuntimeError as error:  # the outermost error of the input itself, below MONAI's wrappers
        cause = error_in_chain(
            error.__cause__, (FileNotFoundError, FileExistsError, ValueError, PermissionError), context=False
        )
        if cause is None:
            raise
        raise cause from None


class CasesFailedError(RuntimeError):
    """Some cases of a prediction run failed; the others were written. ``failures``: ``{input file: problem}``; the
    message is one ``<file>: <problem>`` line per failed case."""

    def __init__(self, failures: Dict[str, str]) -> None:
        self.failures = dict(failures)
        super().__init__("\n".join(f"{source}: {problem}" for source, problem in self.failures.items()))


class CaseSegmenter:
    """The one inference loop, for ``predict`` and the bundles' ``inference`` config alike: every case of ``cases``
    through the bundle's inference transforms, its inferer (slab by slab above ``stream_above`` voxels for a
    sliding-window inferer: :class:`~medseg_dropclass.engine.inferers.SlabArgmaxInferer`) and its postprocessing into
    ``output_dir``, plus a DICOM SEG per case with ``dicom-seg`` output. A case that fails is reported with its file
    and error and leaves nothing behind; the others still run. Kept instead of MONAI's ``SupervisedEvaluator``
    because that loop stops at the first failing case and holds the whole volume's class scores.

    Args:
        cases: the inputs (:class:`PredictionInputs`); ``output_names``: their checked output names.
        preprocessing: the bundle's preprocessing object; ``inferer``: its inferer; ``network``: a module (or
            :class:`OnnxNetwork`) with its weights, on ``device``.
        class_names, algorithm: the segment names and ``(name, version)`` written into DICOM SEGs.
        segment_codes: the bundle metadata's DICOM codes and colours per class (SEG segments, review page).
        domain, modality: the bundle metadata's ``training_domain`` and input modality: each case is compared with
            them first (:func:`~medseg_dropclass.data.domain.domain_notices`); a notice is printed, written into
            the SEG's content description and shown on the review page.
        review: also write ``review.html`` (:func:`~medseg_dropclass.apps.review.write_review_page`) into
            ``output_dir``; an existing one is replaced only with ``overwrite``.

    Raises:
        FileExistsError: ``review`` where ``output_dir`` already holds a review page (without ``overwrite``).
    """

    def __init__(
        self,
        cases: "PredictionInputs",
        output_names: Dict[str, str],
        preprocessing,
        inferer,
        network: torch.nn.Module,
        device,
        output_dir: str,
        class_names: Sequence[str],
        algorithm: Sequence[str] = ("", ""),
        stream_above: int = STREAM_ABOVE_VOXELS,
        progress: bool = True,
        segment_codes: Optional[Mapping] = None,
        domain: Optional[Mapping] = None,
        modality: Optional[str] = None,
        review: bool = False,
        overwrite: bool = False,
    ) -> None:
        from medseg_dropclass.apps.review import REVIEW_FILE

        if review and not overwrite and (pathlib.Path(output_dir) / REVIEW_FILE).exists():
            raise FileExistsError(f"{pathlib.Path(output_dir) / REVIEW_FILE} exists: pass --overwrite to replace it")
        self.cases, self.names, self.preprocessing, self.inferer = cases, output_names, preprocessing, inferer
        self.network, self.device, self.output_dir = network.eval(), torch.device(device), str(output_dir)
        self.class_names, self.algorithm = list(class_names), (str(algorithm[0]), str(algorithm[1]))
        self.stream_above, self.progress = int(stream_above), progress
        self.segment_codes, self.domain, self.modality = dict(segment_codes or {}), domain, modality
        self.review = bool(review)

    def __call__(self) -> Dict[str, object]:
        """Segment every case; ``{"cases": count, "written": [files], "failed": {input: problem},
        "notices": {input: [notice]}, "review": page or None}``."""
        from monai.data import MetaTensor
        from monai.inferers import SlidingWindowInferer
        from tqdm import tqdm

        from medseg_dropclass.data.transforms import find_dataset_error
        from medseg_dropclass.engine.inferers import SlabArgmaxInferer
        from medseg_dropclass.engine.run_lock import folder_lock

        preprocessing, output_dir, names = self.preprocessing, self.output_dir, self.names
        transforms = preprocessing.transforms("inference")
        postprocessing = preprocessing.postprocessing("inference", output_dir, names)
        slab = None
        if isinstance(self.inferer, SlidingWindowInferer):
            slab = SlabArgmaxInferer.like(self.inferer, progress=self.progress)
            slab_postprocessing = preprocessing.postprocessing("inference", output_dir, names, class_map=True)
        from medseg_dropclass.data.domain import describe_image, domain_notices

        written, failed, notices, reviewed = [], {}, {}, []
        with folder_lock(output_dir):  # one writer per output folder, taken once the outputs are known to be writable
            for item in tqdm(self.cases.items, desc="predict", unit="case", disable=not self.progress):
                source_file = item["image"]
                targets = [pathlib.Path(output_dir) / f"{names[source_file]}_seg{preprocessing.output_extension}"]
                if self.cases.output_format == "dicom-seg":
                    targets.append(pathlib.Path(output_dir) / f"{names[source_file]}_seg.dcm")
                try:
                    first_file = source_file if isinstance(source_file, str) else source_file[0]
                    # the file is read again only where a training domain asks (its header; voxels for an intensity range)
                    case = describe_image(first_file, "intensity" in self.domain) if self.domain else {}
                    notices[source_file] = domain_notices(case, self.domain, self.modality)
                    for notice in notices[source_file]:
                        origin = self.cases.origins.get(source_file, source_file)
                        print(f"{origin}: {notice}", file=sys.stderr, flush=True)
                    data = transforms(dict(item))
                    image = data["image"]
                    # a large volume goes slab by slab to its class map (in memory: the map and one slab of scores)
                    large = slab is not None and image[0].numel() > self.stream_above
                    with torch.no_grad():
                        prediction = (slab if large else self.inferer)(image.unsqueeze(0).to(self.device), self.network)
                    data["pred"] = MetaTensor(
                        prediction[0].cpu(), meta=image.meta, applied_operations=image.applied_operations
                    )
                    del prediction
                    (slab_postprocessing if large else postprocessing)(data)
                    if not targets[0].is_file():  # the writer's name differs from the planned one: never claim it
                        raise RuntimeError(f"{targets[0]}: not written (the writer chose another name)")
                    if len(targets) > 1:
                        self.cases.write_dicom_seg(
                            source_file,
                            str(targets[0]),
                            str(targets[1]),
                            self.class_names,
                            *self.algorithm,
                            segment_codes=self.segment_codes,
                            notices=notices[source_file],
                        )
                    written.extend(str(t) for t in targets)
                    reviewed.append(
                        {"name": names[source_file], "image": first_file, "label": str(targets[0]),
                         "notices": notices[source_file]}
                    )  # fmt: skip
                except Exception as error:  # noqa: BLE001  (any failure of one case: report it, go on with the others)
                    named = find_dataset_error(error)  # the project's own errors are written for the user
                    problem = str(named) if named is not None else f"{type(error).__name__}: {error}"
                    failed[source_file] = problem.removeprefix(f"{source_file}: ")  # the file is the key
                    for target in targets:
                        if target.exists():
                            target.unlink()  # nothing half-written stays (existing outputs were refused before the run)
            page = None
            if self.review:
                from medseg_dropclass.apps.review import REVIEW_FILE, write_review_page

                page = write_review_page(
                    reviewed,
                    str(pathlib.Path(output_dir) / REVIEW_FILE),
                    self.class_names,
                    self.algorithm,
                    self.segment_codes,
                    failed,
                )
        result = {"cases": len(self.cases.items), "written": written, "failed": failed}
        return {**result, "notices": notices, "review": page}

    def run(self) -> Dict[str, object]:
        """:meth:`__call__` for a bundle config's ``run``: prints the count and raises :class:`CasesFailedError`
        naming every failed case (after the others were written)."""
        result = self()
        print(f"{result['cases'] - len(result['failed'])} of {result['cases']} case(s) written to {self.output_dir}")
        if result["failed"]:
            raise CasesFailedError(result["failed"])
        return result


def _predict_items(
    parser, network, device, output_dir: str, progress: bool, stream_above: int, review: bool = False
) -> Dict[str, object]:
    """The bundle's inference pieces around ``network``, through :class:`CaseSegmenter`."""
    # the review page's check comes after the outputs' (an input or existing output is named first)
    segmenter = CaseSegmenter(
        _parsed(parser, "cases"),
        _parsed(parser, "output_names"),
        parser.get_parsed_content("preprocessing"),
        parser.get_parsed_content("inferer"),
        network,
        device,
        output_dir,
        parser.get_parsed_content("class_names"),
        (parser.get("_meta_#name"), parser.get("_meta_#version")),
        stream_above,
        progress,
        segment_codes=parser.get("_meta_#segment_codes", {}),
        domain=parser.get("_meta_#training_domain", None),
        modality=parser.get("_meta_#network_data_format#inputs#image#modality", None),
        review=review,
        overwrite=bool(parser.get("overwrite", False)),
    )
    return segmenter()


def predict_main(argv: Optional[List[str]] = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, help="a shipped bundle's name or a bundle folder")
    parser.add_argument(
        "--input",
        required=True,
        help="an image file, a folder of images, a folder holding a DICOM series, or a JSON datalist",
    )
    parser.add_argument("--series-uid", default=None, help="the DICOM series to segment when the folder holds several")
    parser.add_argument(
        "--output-dir", required=True, help="the output folder (label maps, and SEGs with --format dicom-seg)"
    )
    parser.add_argument(
        "--ckpt", default=None, help="the checkpoint (torch backend; default: the bundle's models/model.pt)"
    )
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument(
        "--model", default=None, help="the exported ONNX model (onnxruntime backend; default: <bundle>_model.onnx here)"
    )
    parser.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default="nifti",
        dest="output_format",
        help="dicom-seg: also a DICOM Segmentation object over the input DICOM series (default: %(default)s)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (an input is never replaced)"
    )
    parser.add_argument(
        "--review",
        action="store_true",
        help="also write review.html: every case with its overlay, class volumes and notices (no server needed)",
    )
    parser.add_argument(
        "--stream-above",
        type=int,
        default=STREAM_ABOVE_VOXELS,
        metavar="VOXELS",
        help="cases larger than this are segmented slab by slab, keeping only the class map (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.backend == "onnxruntime" and not args.model:  # what `export --bundle B` writes by default, here
        from medseg_dropclass.engine.bundles import find_bundle

        try:
            args.model = f"{find_bundle(args.bundle).name}_model.onnx"
        except FileNotFoundError as error:
            parser.error(str(error))
        if not pathlib.Path(args.model).is_file():
            print(f"error: {args.model}: no such ONNX model (the default of --model: `python -m medseg_dropclass export "
                  f"--bundle {args.bundle}` writes it here; or pass --model FILE.onnx)", file=sys.stderr)  # fmt: skip
            sys.exit(1)
    if args.backend == "torch" and args.model:
        parser.error("--model is the ONNX model of --backend onnxruntime; the torch backend reads --ckpt")
    from medseg_dropclass.engine import CheckpointError, FolderLockedError

    try:
        result = predict(
            args.bundle,
            args.input,
            args.output_dir,
            args.ckpt,
            args.backend,
            args.model,
            args.overwrite,
            series_uid=args.series_uid,
            output_format=args.output_format,
            stream_above=args.stream_above,
            review=args.review,
        )
    except (
        FileNotFoundError,
        FileExistsError,
        ValueError,
        CheckpointError,
        FolderLockedError,
    ) as error:  # DatasetError, InputError: ValueErrors
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"{result['cases'] - len(result['failed'])} of {result['cases']} case(s) written to {args.output_dir}")
    if result["review"]:
        print(f"review page: {result['review']}")
    if result["failed"]:
        print(f"{len(result['failed'])} case(s) failed (nothing written for them):", file=sys.stderr)
        for source, message in result["failed"].items():
            print(f"  {source}: {message}", file=sys.stderr)
        sys.exit(1)
