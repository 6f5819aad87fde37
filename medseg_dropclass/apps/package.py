"""``python -m medseg_dropclass package``: a bundle as a self-contained MONAI model-zoo package.

The shipped bundles are overlays on a shared base inside this package, so a bundle folder copied elsewhere does not
run under ``python -m monai.bundle``. A package is the same bundle with every config merged into one JSON file per
entry point (``train.json``, ``evaluate.json``, ``inference.json``, ``multi_gpu_train.json``, each complete), the
logging config, a ``metadata.json`` whose ``required_packages_version`` names every package the configs import at
their installed versions, the weights with their hash in ``large_files.yml``, and the docs and licence:

    python -m medseg_dropclass package --bundle phantom3d_dropclass --output-dir dist/
    cd dist/phantom3d_dropclass && python -m monai.bundle run --config_file configs/inference.json --input scans/

The only import it needs beyond MONAI is ``medseg_dropclass`` (the DropClass head, transforms and inference loop).
"""

import hashlib
import json
import pathlib
import shutil
from importlib import metadata as importlib_metadata
from typing import Dict, List, Optional, Sequence

__all__ = ["RUNTIME_PACKAGES", "package_bundle", "package_main"]

# what the configs import at run time (training, evaluation, inference, DICOM in and SEG out, ONNX), by distribution
RUNTIME_PACKAGES = (
    "medseg_dropclass", "monai", "torch", "numpy", "nibabel", "pytorch-ignite", "tensorboard", "SimpleITK", "itk",
    "pydicom", "highdicom", "scipy", "PyYAML", "tqdm", "onnxruntime",
)  # fmt: skip
CONFIG_FILES = {"train": "train.json", "evaluate": "evaluate.json", "inference": "inference.json",
                "multi_gpu_train": "multi_gpu_train.json"}  # fmt: skip


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def installed_versions(packages: Sequence[str] = RUNTIME_PACKAGES) -> Dict[str, str]:
    """``{distribution: installed version}`` of ``packages``; one that is not installed is left out."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def package_bundle(
    bundle: str,
    output_dir: str,
    checkpoint: Optional[str] = None,
    archive: bool = False,
    exports: Sequence[str] = (),
) -> pathlib.Path:
    """Write ``<output_dir>/<bundle name>/`` (and ``.zip`` beside it with ``archive``); return the package folder.
    ``exports``: also ``models/model<suffix>`` in these formats of ``export`` (``onnx``, ``exported-program``,
    ``torchscript``), parity-checked against the weights as ``export`` checks them.

    Raises:
        FileExistsError: the package folder exists and is not empty (nothing is overwritten).
        FileNotFoundError: an unknown bundle, or a ``checkpoint`` that does not exist.
    """
    from medseg_dropclass.engine.bundles import BASE, CONFIGS, bundles_dir, find_bundle, merged_config
    from medseg_dropclass.engine.checkpoints import require_checkpoint

    root = find_bundle(bundle)
    target = pathlib.Path(output_dir) / root.name
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target}: exists and is not empty; choose another --output-dir (nothing overwritten)")
    weights = pathlib.Path(checkpoint) if checkpoint else root / "models" / "model.pt"
    if checkpoint:
        require_checkpoint(str(weights))
    (target / "configs").mkdir(parents=True, exist_ok=True)
    for name in CONFIGS:
        config = merged_config(root, name)
        config.pop("_meta_", None)  # MONAI reads configs/metadata.json beside the config as _meta_
        (target / "configs" / CONFIG_FILES[name]).write_text(json.dumps(config, indent=2) + "\n")
    shutil.copyfile(bundles_dir() / BASE / "configs" / "logging.conf", target / "configs" / "logging.conf")
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    versions = installed_versions()  # read once; MONAI's schema states monai, pytorch and numpy in fields of their own
    core = {name: versions.pop(name) for name in ("monai", "torch", "numpy") if name in versions}
    packages = {**meta.get("required_packages_version", {}), **versions}
    meta["required_packages_version"] = {k: v for k, v in packages.items() if k not in ("monai", "torch", "numpy")}
    meta.update({f"{'pytorch' if name == 'torch' else name}_version": version for name, version in core.items()})
    (target / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
    large_files: List[str] = []
    if weights.is_file():
        (target / "models").mkdir(exist_ok=True)
        shutil.copyfile(weights, target / "models" / "model.pt")
        large_files.append(
            f'  - path: "models/model.pt"\n    url: ""\n    hash_val: "{_sha256(weights)}"\n    hash_type: "sha256"\n'
        )
    for export_format in exports:
        large_files.append(_export(root, target, export_format))
    (target / "large_files.yml").write_text(
        "large_files:\n" + "".join(large_files) if large_files else "large_files: []\n"
    )
    (target / "docs").mkdir(exist_ok=True)
    for name in ("README.md", "model_card.md"):
        if (root / "docs" / name).is_file():
            shutil.copyfile(root / "docs" / name, target / "docs" / name)
    if (root / "LICENSE").is_file():
        shutil.copyfile(root / "LICENSE", target / "LICENSE")
    if archive:
        shutil.make_archive(str(target), "zip", root_dir=str(target.parent), base_dir=target.name)
    return target


def _export(root: pathlib.Path, target: pathlib.Path, export_format: str) -> str:
    """``models/model<suffix>`` of the packaged weights, parity-checked; its ``large_files.yml`` entry."""
    import torch

    from medseg_dropclass.apps.export import SUFFIXES, export_network, parity
    from medseg_dropclass.engine.bundles import inference_parser, load_weights
    from medseg_dropclass.engine.config_values import Expression

    weights = target / "models" / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"{root.name}: no weights to export (the bundle ships none: pass --ckpt)")
    config = inference_parser(root, device=Expression("$torch.device('cpu')"))
    network = load_weights(config.get_parsed_content("network_def"), weights).eval()
    meta = config.get("_meta_#network_data_format#inputs#image")
    shape = (1, int(meta["num_channels"]), *[int(s) for s in meta["spatial_shape"]])
    output = target / "models" / f"model{SUFFIXES[export_format]}"
    export_network(network, torch.zeros(shape), str(output), export_format)
    check = parity(network, str(output), export_format, [shape])
    if not check["within"]:
        raise ValueError(f"{output}: the exported network differs from the weights by {check['max_abs']:.2e}")
    return (
        f'  - path: "models/{output.name}"\n    url: ""\n    hash_val: "{_sha256(output)}"\n    hash_type: "sha256"\n'
    )


def package_main(argv: Optional[List[str]] = None) -> None:
    import argparse
    import sys

    from medseg_dropclass.engine.checkpoints import CheckpointError

    parser = argparse.ArgumentParser(prog="python -m medseg_dropclass package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, help="a shipped bundle's name or a bundle folder")
    parser.add_argument("--output-dir", default=".", help="the package goes to <output-dir>/<bundle name>/")
    parser.add_argument(
        "--ckpt", default=None, help="the weights to ship (default: the bundle's models/model.pt, if any)"
    )
    parser.add_argument("--zip", action="store_true", help="also write <output-dir>/<bundle name>.zip")
    parser.add_argument(
        "--export", nargs="+", default=(), choices=("onnx", "exported-program", "torchscript"),
        help="also ship the network in these formats (models/model.onnx, .pt2, .ts), parity-checked",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        target = package_bundle(args.bundle, args.output_dir, args.ckpt, args.zip, args.export)
    except (FileExistsError, FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"packaged {args.bundle} into {target}")
    print(f"run it: cd {target} && python -m monai.bundle run --config_file configs/inference.json --input <images>")
