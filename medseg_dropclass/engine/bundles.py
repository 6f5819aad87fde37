"""Find the bundles and the shared base configuration, and run a bundle config through MONAI.

The bundles ship inside the package (``medseg_dropclass.bundles``, built from the top-level
``bundles/`` folder), so they are found through ``importlib.resources`` whether the package is
installed from a wheel or in editable mode. Any other bundle folder works by path.

A bundle's ``configs/train.yaml`` is an overlay on ``_base/configs/base.yaml``: MONAI merges
``--config_file "[base, overlay, ...]"`` in order, a later file replacing what an earlier one says.
"""

import importlib.resources
import pathlib
from typing import Any, Dict, List, Sequence, Union

__all__ = ["BASE", "CONFIGS", "bundles_dir", "available_bundles", "find_bundle", "config_files", "run_bundle", "inference_parser", "load_weights"]

BASE = "_base"
# config name -> base files merged after the base and bundle train configs (in order)
CONFIGS: Dict[str, Sequence[str]] = {
    "train": (),
    "evaluate": ("evaluate.yaml",),
    "inference": ("inference.yaml",),
    "multi_gpu_train": ("multi_gpu_train.yaml",),
}


def bundles_dir() -> pathlib.Path:
    """The folder holding every shipped bundle and ``_base`` (inside the installed package)."""
    return pathlib.Path(str(importlib.resources.files("medseg_dropclass.bundles")))


def available_bundles() -> List[str]:
    """Names of the shipped bundles (folders with ``configs/metadata.json``)."""
    return sorted(p.name for p in bundles_dir().iterdir() if (p / "configs" / "metadata.json").is_file())


def find_bundle(bundle: Union[str, pathlib.Path]) -> pathlib.Path:
    """A bundle folder from a shipped bundle's name or a path to a bundle folder.

    Raises:
        FileNotFoundError: neither a shipped bundle nor a folder with ``configs/train.yaml``; names the
            shipped bundles.
    """
    path = pathlib.Path(bundle)
    if (path / "configs" / "train.yaml").is_file():
        return path.resolve()
    shipped = bundles_dir() / str(bundle)
    if str(bundle) != BASE and (shipped / "configs" / "train.yaml").is_file():
        return shipped
    raise FileNotFoundError(
        f"bundle {str(bundle)!r} is neither a shipped bundle ({', '.join(available_bundles())}) nor a folder "
        "with configs/train.yaml"
    )


def config_files(bundle: Union[str, pathlib.Path], *configs: str) -> List[str]:
    """The ``--config_file`` list of ``configs`` (e.g. ``"evaluate"``) for a bundle, base first.

    ``config_files("phantom2d_dropclass", "evaluate")`` is ``[base/base.yaml, bundle/train.yaml,
    base/evaluate.yaml]`` plus the bundle's own ``evaluate.yaml`` when it has one.
    """
    root = find_bundle(bundle)
    base = bundles_dir() / BASE / "configs"
    files = [base / "base.yaml", root / "configs" / "train.yaml"]
    for name in configs or ("train",):
        if name not in CONFIGS:
            raise ValueError(f"unknown config {name!r}; known: {', '.join(CONFIGS)}")
        for file in CONFIGS[name]:
            files.append(base / file)
            if (root / "configs" / file).is_file():
                files.append(root / "configs" / file)
    return [str(f) for f in files]


def run_bundle(bundle: Union[str, pathlib.Path], *configs: str, **overrides: Any) -> Any:
    """``monai.bundle.run`` of a bundle's merged configs with its own metadata and the shared logging config."""
    from monai.bundle import run

    root = find_bundle(bundle)
    overrides.setdefault("bundle_root", str(root))
    return run(
        config_file=config_files(root, *configs),
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=str(bundles_dir() / BASE / "configs" / "logging.conf"),
        **overrides,
    )


def inference_parser(bundle: Union[str, pathlib.Path], **overrides: Any) -> Any:
    """A ``ConfigParser`` of a bundle's inference configs with its ``metadata.json`` (the model's contract) and ``overrides``."""
    from monai.bundle import ConfigParser

    root = find_bundle(bundle)
    parser = ConfigParser()
    parser.read_config(config_files(root, "inference"))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    if overrides:
        parser.update(overrides)
    return parser


def load_weights(network: Any, checkpoint: Union[str, pathlib.Path], map_location: Any = "cpu") -> Any:
    """Load ``checkpoint`` into ``network``: a ``model.pt`` (the network's state dict) or an epoch checkpoint
    (its ``"network"`` entry). Returns the network."""
    import torch

    state = torch.load(checkpoint, map_location=map_location, weights_only=True)
    network.load_state_dict(state["network"] if isinstance(state.get("network"), dict) else state)
    return network
