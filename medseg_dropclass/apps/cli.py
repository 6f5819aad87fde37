"""The command line, ``python -m medseg_dropclass <command>``: one parser per subcommand, dispatched by name."""

import os
import pathlib
import sys
from typing import Callable, Dict, List, Optional, Tuple

USAGE = """usage: python -m medseg_dropclass <command> [options]

commands:
  demo        both arms of the phantom2d bundle, one seed, on the embedded phantoms (compare with two arms)
  compare     baseline vs DropClass (and variants) over seeds: per-class tables, paired tests, plots
              (compare --study studies/NAME.yaml runs or resumes a study file)
  study-report  rewrite a study's committed report from its committed per-run results: study-report studies/NAME.yaml
  run         run a bundle config:  run BUNDLE [train|evaluate|inference|multi_gpu_train ...] [--key value ...]
  configs     print the --config_file list of a bundle config for `python -m monai.bundle ...`
  bundles     list the shipped bundles and where they are
  check-data  check a Decathlon dataset's files and report every problem:  check-data DATASET_DIR
  convert     dataset converters and tools: convert acdc|camvid|phantoms|class-stats ... (convert --help)
  predict     segment images with a bundle's model, case by case (a failing case is reported, the others run):
              predict --bundle BUNDLE --input PATH --output-dir DIR [--format nifti|dicom-seg] [--ckpt FILE]
                      [--backend torch|onnxruntime --model FILE.onnx] [--series-uid UID]
  pacs        segment a series held by a PACS and store the DICOM SEG back (DICOMweb: QIDO, WADO, STOW):
              pacs --url URL --bundle BUNDLE (--study UID [--series UID] | --watch) [--force]
  export      a bundle's network as ONNX, a torch.export program or TorchScript, parity-checked:
              export --bundle BUNDLE --format onnx|exported-program|torchscript [--ckpt FILE] [--output FILE]
  package     a bundle as a self-contained MONAI model-zoo package (merged JSON configs, complete metadata, weights):
              package --bundle BUNDLE [--output-dir DIR] [--ckpt FILE] [--zip]
  model-card  write a bundle's model card from measured results:
              model-card --bundle BUNDLE [--evaluate [--ckpt FILE]] [--study studies/NAME.yaml|results.json [--study-arms ARM ...]] [--output FILE]
"""


def _split_configs(argv: List[str]) -> Tuple[str, List[str], List[str]]:
    from medseg_dropclass.engine.bundles import CONFIGS

    if not argv or argv[0].startswith("-"):
        raise SystemExit("usage: python -m medseg_dropclass run BUNDLE [CONFIG ...] [--key value ...]")
    bundle, rest = argv[0], argv[1:]
    configs = []
    while rest and not rest[0].startswith("--"):
        if rest[0] not in CONFIGS:
            raise SystemExit(f"unknown config {rest[0]!r}; known: {', '.join(CONFIGS)}")
        configs.append(rest.pop(0))
    return bundle, configs or ["train"], rest


def run_main(argv: List[str]) -> None:
    """``run BUNDLE [CONFIG ...] --key value``: MONAI's ``run`` on the merged configs.

    Every value is a literal (never evaluated), every key must be one the configs have, ``--args_file FILE``
    reads more ``key: value`` pairs from a JSON file (the command line wins); ``--help`` lists the keys and runs nothing.
    """
    import json

    from medseg_dropclass.engine.bundles import run_bundle, run_help
    from medseg_dropclass.engine.config_values import ConfigKeyError, parse_cli_overrides

    bundle, configs, rest = _split_configs(argv)
    if any(word in ("-h", "--help") for word in rest):
        print(run_help(bundle, *configs))
        return
    try:
        overrides = parse_cli_overrides(rest)
        args_file = overrides.pop("args_file", None)
        if args_file is not None:
            try:
                loaded = json.loads(pathlib.Path(str(args_file)).read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise ValueError(f"{args_file}: cannot be read as a JSON object of overrides ({error})") from error
            if not isinstance(loaded, dict):
                raise ValueError(f"{args_file}: a JSON object of overrides expected, got {type(loaded).__name__}")
            overrides = {**loaded, **overrides}
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        run_bundle(bundle, *configs, **overrides)
    except ConfigKeyError as error:
        print(
            f"error: {error}\n(python -m medseg_dropclass run {bundle} {' '.join(configs)} --help lists the keys)",
            file=sys.stderr,
        )
        sys.exit(2)
    except Exception as error:
        named = _named_error(error)
        if named is None:
            raise
        if os.environ.get("MEDSEG_DROPCLASS_DEBUG"):
            import traceback

            traceback.print_exc()
        # the cause, last, not MONAI's "Failed to instantiate ..." wrapper; one line per failed case of an inference
        lines = str(named).splitlines() if type(named).__name__ == "CasesFailedError" else [str(named)]
        print("\n" + "\n".join(f"error: {line}" for line in lines), file=sys.stderr)
        sys.exit(1)


def _named_error(error: BaseException) -> Optional[BaseException]:
    """The project's own error (naming the file, iteration, checkpoint or folder) in an exception's cause chain."""
    from medseg_dropclass.apps.predict import CasesFailedError
    from medseg_dropclass.data.transforms import DatasetError
    from medseg_dropclass.engine import CheckpointError, NonFiniteLossError
    from medseg_dropclass.engine.run_lock import FolderLockedError
    from medseg_dropclass.validation import InputError, error_in_chain

    return error_in_chain(
        error, (DatasetError, NonFiniteLossError, CheckpointError, FolderLockedError, InputError, CasesFailedError)
    )


def configs_main(argv: List[str]) -> None:
    from medseg_dropclass.engine.bundles import config_files, find_bundle

    bundle, configs, _ = _split_configs(argv)
    print(repr(config_files(bundle, *configs)))
    print(f"meta_file: {find_bundle(bundle) / 'configs' / 'metadata.json'}", file=sys.stderr)


def bundles_main(argv: List[str]) -> None:
    from medseg_dropclass.engine.bundles import available_bundles, bundles_dir

    root = bundles_dir()
    for name in available_bundles():
        print(f"{name:<30} {root / name}")
    print(f"{'(shared base)':<30} {root / '_base'}")


def check_data_main(argv: List[str]) -> None:
    import argparse

    from medseg_dropclass.data import check_dataset, class_table, decathlon_class_counts

    parser = argparse.ArgumentParser(
        prog="python -m medseg_dropclass check-data", description="Check a Decathlon dataset."
    )
    parser.add_argument("dataset_dir")
    args = parser.parse_args(argv)
    report = check_dataset(args.dataset_dir)
    for line in report.get("warnings", []):
        print(f"warning: {line}", file=sys.stderr)
    if report["problems"]:
        print(f"{len(report['problems'])} problem(s) in {args.dataset_dir}:", file=sys.stderr)
        for line in report["problems"]:
            print(f"  {line}", file=sys.stderr)
        sys.exit(1)
    info = report["info"]
    print(
        f"{info.path}: {', '.join(f'{split} {n}' for split, n in report['cases'].items())} case(s); "
        f"{info.spatial_dims or '?'}D, {info.num_channels} channel(s), {info.num_classes} classes: all files fine"
        + (f" ({len(report['warnings'])} warning(s) above)" if report.get("warnings") else "")
    )
    counts = decathlon_class_counts(info.path)["counts"]
    for row in class_table(counts, info.class_names):
        print(f"  {row['class_id']:>3} {row['name']:<24} {100 * row['share']:9.4f}% {row['flag']}")


def _demo(argv: List[str]) -> None:
    from medseg_dropclass.apps.demo import demo_main

    demo_main(argv)


def _compare(argv: List[str]) -> None:
    from medseg_dropclass.study.compare import compare_main

    compare_main(argv)


def _study_report(argv: List[str]) -> None:
    from medseg_dropclass.study.study_file import study_report_main

    study_report_main(argv)


def _predict(argv: List[str]) -> None:
    from medseg_dropclass.apps.predict import predict_main

    predict_main(argv)


def _pacs(argv: List[str]) -> None:
    from medseg_dropclass.apps.pacs import pacs_main

    pacs_main(argv)


def _export(argv: List[str]) -> None:
    from medseg_dropclass.apps.export import export_main

    export_main(argv)


def _convert(argv: List[str]) -> None:
    from medseg_dropclass.apps.convert import convert_main

    convert_main(argv)


def _package(argv: List[str]) -> None:
    from medseg_dropclass.apps.package import package_main

    package_main(argv)


def _model_card(argv: List[str]) -> None:
    from medseg_dropclass.apps.model_card import model_card_main

    model_card_main(argv)


COMMANDS: Dict[str, Callable[[List[str]], None]] = {
    "demo": _demo,
    "compare": _compare,
    "study-report": _study_report,
    "run": run_main,
    "configs": configs_main,
    "bundles": bundles_main,
    "check-data": check_data_main,
    "export": _export,
    "predict": _predict,
    "pacs": _pacs,
    "model-card": _model_card,
    "package": _package,
    "convert": _convert,
}


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    if argv[0] not in COMMANDS:
        print(USAGE)
        print(f"unknown command {argv[0]!r}", file=sys.stderr)
        sys.exit(2)
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
