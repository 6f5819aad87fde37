"""``python -m medseg_dropclass convert <kind> ...``: the dataset converters and tools, reachable from an installed
package (``data_scripts/*.py`` are thin wrappers over these).

    convert acdc --source official|h5 --input DIR --output-dir data/acdc      ACDC into the Decathlon layout
    convert camvid --input CamVid --output-dir data/camvid_180x240            a downsampled CamVid copy
    convert phantoms --output-dir data/phantom2d_v2 [--spatial-dims 2|3]      the embedded phantoms
    convert class-stats decathlon|cityscapes|voc ROOT --output-dir DIR        per-class shares: CSV, markdown, chart
    convert training-domain --bundle B --dataset-dir DIR                       the metadata's training_domain
"""

import argparse
import dataclasses
import pathlib
import sys
import time
from typing import Callable, Dict, List, Optional

__all__ = [
    "CONVERTERS",
    "convert_main",
    "acdc_main",
    "camvid_main",
    "phantoms_main",
    "class_stats_main",
    "training_domain_main",
]


def acdc_main(argv: Optional[List[str]] = None) -> None:
    """Convert ACDC (the official download or the h5 copy of antares0811/3DCardiac) into the Decathlon layout: one
    volume per patient and phase (ED, ES) and dataset.json with the ``common`` (70/10/20 patients), ``shift`` (test
    on the RV group) and ``shift_dcm`` (test on the DCM group) splits. ACDC's terms apply to the output (research
    use, cite the paper). The h5 copy from a bare git directory: ``git -C REPO.git archive HEAD data/ACDC | tar -x``."""
    import json

    from tqdm import tqdm

    from medseg_dropclass.data.acdc import h5_cases, official_cases, write_acdc_decathlon
    from medseg_dropclass.data.transforms import DatasetError

    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass convert acdc", description=acdc_main.__doc__)
    parser.add_argument("--source", choices=("official", "h5"), required=True)
    parser.add_argument(
        "--input", required=True, help="the official folder (with training/) or the h5 copy's data/ACDC"
    )
    parser.add_argument("--output-dir", required=True, help="the Decathlon-layout dataset folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier conversion in --output-dir")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    reader = official_cases if args.source == "official" else h5_cases
    kind = "official ACDC layout" if args.source == "official" else "h5 copy, antares0811/3DCardiac"
    try:
        path = write_acdc_decathlon(
            reader(pathlib.Path(args.input)), pathlib.Path(args.output_dir), f"{args.source} ({kind}): {args.input}",
            args.overwrite, progress=lambda cases: tqdm(cases, desc="convert", unit="volume"),
        )  # fmt: skip
    except (DatasetError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    content = json.loads(path.read_text())
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s; groups from {content['group_source']}")
    for split, items in content.items():  # every split the converter wrote (common, shift, shift_dcm, ...)
        if isinstance(items, list) and split != "training":
            print(f"  {split:<20} {len(items):4d} volumes")


def camvid_main(argv: Optional[List[str]] = None) -> None:
    """Write a downsampled copy of CamVid (the SegNet layout) for CPU studies: images resized with antialiasing,
    annotations by nearest neighbour (class indices and void 11 kept), split lists rewritten to the copy. CamVid's
    terms apply to the output (research use; CC BY-NC): never commit it."""
    from medseg_dropclass.data.camvid import CAMVID_CLASSES, prepare_camvid_copy
    from medseg_dropclass.data.transforms import DatasetError

    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass convert camvid", description=camvid_main.__doc__)
    parser.add_argument("--input", required=True, help="the CamVid folder (train/, trainannot/, ..., train.txt)")
    parser.add_argument("--output-dir", required=True, help="the copy's folder")
    parser.add_argument("--size", type=int, nargs=2, default=(180, 240), metavar=("H", "W"), help="the copy's size")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier copy in --output-dir")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        counts = prepare_camvid_copy(pathlib.Path(args.input), pathlib.Path(args.output_dir), args.size, args.overwrite)
    except (DatasetError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(
        f"wrote {args.output_dir} ({args.size[0]}x{args.size[1]}, {len(CAMVID_CLASSES)} classes + void) in "
        f"{time.perf_counter() - start:.0f} s: " + ", ".join(f"{k} {v}" for k, v in counts.items())
    )


def phantoms_main(argv: Optional[List[str]] = None) -> None:
    """Write the embedded phantom datasets (Decathlon layout, deterministic): background, three organs and three
    rare lesions, with a context-shifted test split."""
    from medseg_dropclass.data.phantoms import DEFAULT_2D, DEFAULT_3D, make_phantom_dataset

    parser = argparse.ArgumentParser(
        prog="python -m medseg_dropclass convert phantoms", description=phantoms_main.__doc__
    )
    parser.add_argument("--output-dir", required=True, help="the dataset folder to write")
    parser.add_argument("--spatial-dims", type=int, choices=(2, 3), default=2, help="2D images or 3D volumes")
    parser.add_argument("--size", type=int, help="voxels per axis (default: 96 in 2D, 64 in 3D)")
    parser.add_argument("--num-train", type=int, help="training cases (default: the embedded set's)")
    parser.add_argument("--num-test", type=int, help="in-distribution test cases")
    parser.add_argument("--num-shifted", type=int, help="context-shifted test cases")
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed")
    args = parser.parse_args(argv)
    config = DEFAULT_2D if args.spatial_dims == 2 else DEFAULT_3D
    overrides = {"seed": args.seed}
    for name in ("size", "num_train", "num_test", "num_shifted"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    start = time.perf_counter()
    path = make_phantom_dataset(args.output_dir, dataclasses.replace(config, **overrides))
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s")


def class_stats_main(argv: Optional[List[str]] = None) -> None:
    """Per-class voxel share of a dataset's training split: CSV, markdown and a log-scale bar chart, with the classes
    under 1% and 0.1% flagged."""
    from monai.transforms import Compose, LoadImaged

    from medseg_dropclass.data import (
        DatasetError,
        class_table,
        count_classes,
        decathlon_class_counts,
        write_class_statistics,
    )
    from medseg_dropclass.data.decathlon import read_dataset_json
    from medseg_dropclass.data.transforms import LookupLabelsd

    parser = argparse.ArgumentParser(
        prog="python -m medseg_dropclass convert class-stats", description=class_stats_main.__doc__
    )
    parser.add_argument("kind", choices=("decathlon", "cityscapes", "voc"), help="the dataset's layout")
    parser.add_argument("root", help="dataset folder (for decathlon: the folder of dataset.json, or the file)")
    parser.add_argument("--split", default=None, help="default: 'training' (decathlon) or 'train'")
    parser.add_argument("--output-dir", required=True, help="where the CSV, markdown and chart go")
    args = parser.parse_args(argv)
    try:
        if args.kind == "decathlon":
            info = read_dataset_json(args.root)
            names, title = info.class_names, f"{info.path.parent.name} ({args.split or 'training'})"
            result = decathlon_class_counts(info.path, args.split or "training", progress=True)
        elif args.kind == "cityscapes":
            from medseg_dropclass.data.cityscapes import CITYSCAPES_CLASSES, LABEL_ID_TO_TRAIN_ID, cityscapes_datalist

            datalist, names = cityscapes_datalist(args.root, args.split or "train"), CITYSCAPES_CLASSES
            loader = Compose(
                [LoadImaged("label", reader="PILReader", image_only=True), LookupLabelsd("label", LABEL_ID_TO_TRAIN_ID)]
            )
            title = f"Cityscapes ({args.split or 'train'})"
            result = count_classes(datalist, loader, len(names), ignore_index=255)
        else:
            from medseg_dropclass.data.voc import VOC_CLASSES, voc_datalist

            datalist, names = voc_datalist(args.root, args.split or "train"), VOC_CLASSES
            loader = Compose([LoadImaged("label", reader="PILReader", image_only=True)])
            title = f"Pascal VOC ({args.split or 'train'})"
            result = count_classes(datalist, loader, len(names), ignore_index=255)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    paths = write_class_statistics(class_table(result["counts"], names), args.output_dir, title)
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")


def training_domain_main(argv: Optional[List[str]] = None) -> None:
    """A bundle's ``training_domain`` (modality, spacing range, orientations, and for CT the intensity range) from the
    training images of a Decathlon dataset, as the JSON to put into the bundle's metadata.json (printed, or --output)."""
    import json

    from medseg_dropclass.data.decathlon import read_dataset_json
    from medseg_dropclass.data.domain import training_domain
    from medseg_dropclass.engine.bundles import inference_parser

    parser = argparse.ArgumentParser(
        prog="python -m medseg_dropclass convert training-domain", description=training_domain_main.__doc__
    )
    parser.add_argument("--bundle", required=True, help="the bundle whose input modality is recorded")
    parser.add_argument("--dataset-dir", required=True, help="the folder of the dataset.json it was trained on")
    parser.add_argument("--output", default=None, help="write the JSON here (an existing file is not replaced)")
    args = parser.parse_args(argv)
    info = read_dataset_json(args.dataset_dir)
    modality = str(inference_parser(args.bundle).get("_meta_#network_data_format#inputs#image#modality"))
    training = json.loads(info.path.read_text()).get("training", [])
    files = [str(info.path.parent / entry["image"]) for entry in training]
    domain = training_domain(files, modality, absolute_intensity=modality.upper() == "CT")
    text = json.dumps({"training_domain": domain}, indent=1)
    if args.output:
        if pathlib.Path(args.output).exists():
            print(f"error: {args.output} exists; nothing written", file=sys.stderr)
            sys.exit(1)
        pathlib.Path(args.output).write_text(text + "\n")
    print(text)


CONVERTERS: Dict[str, Callable[[Optional[List[str]]], None]] = {
    "acdc": acdc_main, "camvid": camvid_main, "phantoms": phantoms_main, "class-stats": class_stats_main,
    "training-domain": training_domain_main,
}  # fmt: skip


def convert_main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in CONVERTERS:
        print(__doc__)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown kind {argv[0]!r}; known: {', '.join(CONVERTERS)}", file=sys.stderr)
            sys.exit(2)
        return
    CONVERTERS[argv[0]](argv[1:])
