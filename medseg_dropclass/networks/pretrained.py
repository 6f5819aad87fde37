"""Initialise an encoder from a local checkpoint (never a download), with a report of what matched."""

import pathlib
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Union

import torch
from monai.networks.utils import copy_model_state
from torch import nn

__all__ = ["LoadReport", "load_pretrained"]

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "network")
PREFIXES = ("module.", "model.", "backbone.", "encoder.", "features.")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: loaded keys, and the keys it could not use."""

    path: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: Dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.path}: loaded {len(self.loaded)} tensors"]
        if self.missing:
            lines.append(
                f"  missing in the checkpoint ({len(self.missing)}): {self.missing[:10]}{' ...' if len(self.missing) > 10 else ''}"
            )
        if self.unexpected:
            lines.append(
                f"  unused from the checkpoint ({len(self.unexpected)}): {self.unexpected[:10]}{' ...' if len(self.unexpected) > 10 else ''}"
            )
        for key, why in list(self.mismatched.items())[:10]:
            lines.append(f"  shape mismatch {key}: {why}")
        return "\n".join(lines)


def _strip(key: str, prefixes: Sequence[str]) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def load_pretrained(
    module: nn.Module, path: Union[str, pathlib.Path], prefixes: Sequence[str] = PREFIXES
) -> LoadReport:
    """Copy the tensors of a local checkpoint into ``module`` where names and shapes match.

    Keys are matched after stripping wrapper prefixes (``module.``, ``backbone.``, ...); a
    checkpoint saved as ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file holds no tensor whose name and shape match the module (naming both sides' first keys).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint {path} does not exist (weights are never downloaded here)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in WRAPPER_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(checkpoint).__name__}")
    source = {_strip(k, prefixes): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    target = module.state_dict()
    # MONAI copies by name where shapes match; the report below only explains what it skipped
    _, loaded, missing = copy_model_state(module, source, inplace=False)
    report = LoadReport(str(path), loaded=loaded, missing=missing)
    for key, value in source.items():
        if key not in target:
            report.unexpected.append(key)
        elif target[key].shape != value.shape:
            report.mismatched[key] = f"checkpoint {tuple(value.shape)} vs model {tuple(target[key].shape)}"
    if not loaded:
        raise ValueError(
            f"{path}: no tensor matches the model by name and shape; checkpoint keys start "
            f"{list(source)[:5]}, model keys start {list(target)[:5]}"
        )
    module.load_state_dict({key: source[key] for key in loaded}, strict=False)
    return report
