"""How estimates are printed in reports and model cards: one place, so every table reads the same."""

import math
from typing import Optional

from medseg_dropclass.study.statistics import Estimate

__all__ = ["interval_text", "signed_text", "p_text", "design_text", "FLOOR_MARK", "FLOOR_NOTE"]

FLOOR_MARK = "\u2020"  # dagger: a p-value at the smallest value the seed count supports
FLOOR_NOTE = (
    f"{FLOOR_MARK}: the smallest p-value the seed count can support (an exact sign-flip test over S seeds cannot "
    "go below 2 / 2^S: 0.25 for 3 seeds, 0.0625 for 5); the t-based p was smaller."
)


def interval_text(result: Estimate, index: int = 0, digits: int = 3, scale: float = 1.0, signed: bool = False) -> str:
    """``0.512 [0.480, 0.544]`` (``+`` signs with ``signed``); the point alone where no interval can be given."""
    estimate = result.estimate[index]
    if math.isnan(estimate):
        return "n/a"
    form = f"+.{digits}f" if signed else f".{digits}f"
    if math.isnan(result.low[index]):
        return f"{scale * estimate:{form}}"
    return f"{scale * estimate:{form}} [{scale * result.low[index]:{form}}, {scale * result.high[index]:{form}}]"


def signed_text(result: Estimate, index: int = 0, digits: int = 3, scale: float = 1.0) -> str:
    """:func:`interval_text` with signs (a difference)."""
    return interval_text(result, index, digits, scale, signed=True)


def p_text(value: float, floor: Optional[float] = None) -> str:
    """A p-value to 3 significant digits; at (or, not yet floored, below) ``floor`` it is the floor with a dagger."""
    if value is None or math.isnan(value):
        return "n/a"
    if floor is not None and not math.isnan(floor) and value <= floor * (1 + 1e-9):
        return f"{floor:.3g}{FLOOR_MARK}"
    return f"{value:.3g}"


def design_text(result: Estimate) -> str:
    """``5 seeds x 40 clusters`` (what an interval stands on)."""
    return f"{result.seeds} seed{'s' if result.seeds != 1 else ''} x {result.clusters} case cluster{'s' if result.clusters != 1 else ''}"
