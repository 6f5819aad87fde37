"""Finding the checkpoint a run resumes from."""

import glob
import os
import pathlib
from typing import Optional

__all__ = ["latest_checkpoint"]


def latest_checkpoint(directory: str, pattern: str = "checkpoint_epoch=*.pt") -> Optional[str]:
    """The newest epoch checkpoint in ``directory`` (by epoch number), or ``None``."""
    def epoch(path: str) -> int:
        stem = pathlib.Path(path).stem
        try:
            return int(stem.rsplit("=", 1)[1])
        except (IndexError, ValueError):
            return -1

    found = sorted(glob.glob(os.path.join(directory, pattern)), key=epoch)
    return found[-1] if found else None
