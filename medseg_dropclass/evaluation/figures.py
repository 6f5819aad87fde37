"""Writing matplotlib figures: the one place that lays out, saves and closes them (every PNG of the project)."""

import pathlib
from typing import Union

__all__ = ["save_figure"]


def save_figure(figure, path: Union[str, pathlib.Path], dpi: int = 90, bbox_tight: bool = False) -> pathlib.Path:
    """Lay out, write (parent folders created) and close a matplotlib figure; returns the path.

    Args:
        figure: a ``matplotlib.figure.Figure``.
        path: the PNG to write.
        dpi: resolution.
        bbox_tight: crop to the drawn content (``bbox_inches="tight"``) instead of ``tight_layout``, for
            figures whose colour bar spans several axes (``tight_layout`` cannot place it).
    """
    import matplotlib.pyplot as plt

    if not bbox_tight:
        figure.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight" if bbox_tight else None)
    plt.close(figure)
    return path
