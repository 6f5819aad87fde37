"""Find the bundles and the shared base configuration, and run a bundle config through MONAI.

The bundles ship inside the package (``medseg_dropclass.bundles``, built from the top-level
``bundles/`` folder), so they are found through ``importlib.resources`` whether the package is
installed from a wheel or in editable mode. Any other bundle folder works by path.

A bundle's ``configs/train.yaml`` is an overlay on ``_base/configs/base.yaml``: MONAI merges
``--config_file "[base, overlay, ...]"`` in order, a later file replacing what an earlier one says.
"""

import importlib.resources
import pathlib
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

__all__ = [
    "BASE",
    "CONFIGS",
    "bundles_dir",
    "available_bundles",
    "find_bundle",
    "config_files",
    "merged_config",
    "run_bundle",
    "bundle_parser",
    "inference_parser",
    "documented_keys",
    "run_help",
    "load_weights",
]

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


def merged_config(bundle: Union[str, pathlib.Path], *configs: str) -> Dict[str, Any]:
    """The raw merged config (nothing parsed or evaluated) of ``configs`` of a bundle, with its metadata as ``_meta_``."""
    from monai.bundle import ConfigParser

    root = find_bundle(bundle)
    parser = ConfigParser()
    parser.read_config(config_files(root, *configs))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    return parser.get()


def _checked_overrides(
    bundle: Union[str, pathlib.Path], configs: Sequence[str], overrides: Mapping[str, Any]
) -> Dict[str, Any]:
    """``overrides`` as literals (:func:`~medseg_dropclass.engine.config_values.literal`), every key checked against
    the bundle's merged ``configs``."""
    from medseg_dropclass.engine.config_values import check_override_keys, parser_overrides

    config = merged_config(bundle, *configs)
    check_override_keys(
        config, overrides, f"{pathlib.Path(str(bundle)).name}'s {'+'.join(configs or ('train',))} configs"
    )
    return parser_overrides(overrides, config)


def run_bundle(bundle: Union[str, pathlib.Path], *configs: str, **overrides: Any) -> Any:
    """``monai.bundle.run`` of a bundle's merged configs with its own metadata and the shared logging config.

    Every override is a literal (a value from a file, a path or a command line is never evaluated) under a key
    the configs have (:class:`~medseg_dropclass.engine.config_values.ConfigKeyError` otherwise). The output folders
    the run locks (:mod:`~medseg_dropclass.engine.run_lock`) are released when it returns.

    Raises:
        ConfigKeyError: an override key the bundle's configs do not have.
    """
    from monai.bundle import run

    from medseg_dropclass.engine.run_lock import held_folders, release_folder

    root = find_bundle(bundle)
    overrides.setdefault("bundle_root", str(root))
    checked = _checked_overrides(root, configs, overrides)
    held = set(held_folders())
    try:
        return run(
            config_file=config_files(root, *configs),
            meta_file=str(root / "configs" / "metadata.json"),
            logging_file=str(bundles_dir() / BASE / "configs" / "logging.conf"),
            **checked,
        )
    finally:
        for folder in set(held_folders()) - held:
            release_folder(folder)


def bundle_parser(bundle: Union[str, pathlib.Path], overrides: Mapping[str, Any], *configs: str) -> Any:
    """A ``ConfigParser`` of a bundle's ``configs`` (default: train) with ``overrides`` (literals, keys checked) on
    CPU; nothing instantiated yet."""
    from monai.bundle import ConfigParser

    from medseg_dropclass.engine.config_values import Expression, literal

    configs = configs or ("train",)
    parser = ConfigParser()
    parser.read_config(config_files(bundle, *configs))
    parser.read_meta(str(find_bundle(bundle) / "configs" / "metadata.json"))
    parser.update(
        {**_checked_overrides(bundle, configs, overrides), "device": literal(Expression("$torch.device('cpu')"))}
    )
    return parser


def inference_parser(bundle: Union[str, pathlib.Path], **overrides: Any) -> Any:
    """A ``ConfigParser`` of a bundle's inference configs with its ``metadata.json`` (the model's contract) and
    ``overrides`` (literals, keys checked; an :class:`~medseg_dropclass.engine.config_values.Expression` is project code)."""
    from monai.bundle import ConfigParser

    root = find_bundle(bundle)
    parser = ConfigParser()
    parser.read_config(config_files(root, "inference"))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    if overrides:
        parser.update(_checked_overrides(root, ("inference",), overrides))
    return parser


def documented_keys(bundle: Union[str, pathlib.Path], *configs: str) -> List[Tuple[str, str, str]]:
    """``(key, default as written, comment)`` of every top-level key of the merged ``configs`` (later files win),
    read from the YAML text so that the defaults show as written, expressions included."""
    import re

    rows: Dict[str, Tuple[str, str, str]] = {}
    line_pattern = re.compile(r"^([A-Za-z_+][\w#+]*):[ ]?(.*?)(?:\s+#\s*(.*))?$")
    for file in config_files(bundle, *configs):
        for line in pathlib.Path(file).read_text().splitlines():
            match = line_pattern.match(line)
            if match and not match.group(1).startswith(("imports", "+imports")):
                key, value, comment = match.group(1), match.group(2).strip(), (match.group(3) or "").strip()
                rows[key] = (
                    key,
                    value or "(a section)",
                    comment or rows.get(key, ("", "", ""))[2],
                )  # an overlay keeps the base's comment
    return list(rows.values())


def run_help(bundle: Union[str, pathlib.Path], *configs: str) -> str:
    """The text of ``run BUNDLE [CONFIG ...] --help``: the bundle's configs and its keys with their defaults."""
    root = find_bundle(bundle)
    configs = configs or ("train",)
    lines = [
        f"usage: python -m medseg_dropclass run {root.name} [{'|'.join(CONFIGS)} ...] [--key value ...]",
        "",
        f"bundle {root}",
        "configs: " + ", ".join(CONFIGS) + f" (shown: {' + '.join(configs)})",
        "values are literals: JSON/Python numbers, true/false, null, lists and dicts, else the string as typed",
        "(never evaluated: a '$' or '@' in a value stays a character). Nested keys with '#', e.g. --network_def#feature_channels 32.",
        "Options are the config keys with '-' for '_' (--max-epochs, or MONAI's --max_epochs); --ckpt is ckpt_path, --format output_format.",
        "",
        f"keys of {' + '.join(configs)} (default as written; '$...' is computed from other keys):",
    ]
    for key, value, comment in documented_keys(root, *configs):
        shown = value if len(value) <= 60 else value[:57] + "..."
        option = key.replace("_", "-") if "#" not in key else key
        lines.append(f"  --{option:<26} {shown}" + (f"   # {comment}" if comment else ""))
    return "\n".join(lines)


def load_weights(network: Any, checkpoint: Union[str, pathlib.Path], map_location: Any = "cpu") -> Any:
    """Load ``checkpoint`` into ``network``: a ``model.pt`` (the network's state dict) or an epoch checkpoint
    (its ``"network"`` entry), loaded with ``weights_only=True``. Returns the network.

    Raises:
        CheckpointError: not a readable checkpoint of tensors and plain values, or the weights of another network
            (the message says which parameters differ; a baseline's weights lack the DropClass projection)."""
    from medseg_dropclass.engine.checkpoints import CheckpointError, read_checkpoint

    state = read_checkpoint(str(checkpoint), map_location)
    if not isinstance(state, dict):
        raise CheckpointError(f"{checkpoint}: holds a {type(state).__name__}, not a state dict")
    weights = state["network"] if isinstance(state.get("network"), dict) else state
    expected = set(network.state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        hint = ""
        if any(".projection." in k for k in missing) and not any(".projection." in k for k in unexpected):
            hint = " (they are a baseline's, without the DropClass projection: build the network with dropclass false)"
        elif any(".projection." in k for k in unexpected):
            hint = " (they are a DropClass network's: build the network with dropclass true)"
        raise CheckpointError(
            f"{checkpoint}: the weights do not fit this bundle's network{hint}; missing {missing[:4]}"
            f"{'...' if len(missing) > 4 else ''}, unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}"
        )
    try:
        network.load_state_dict(weights)
    except RuntimeError as error:  # same names, other shapes: another class count or width
        raise CheckpointError(f"{checkpoint}: the weights do not fit this bundle's network: {error}") from None
    return network
