"""DropClass progress ``p(t)``, driven by ``t = iteration / max_iterations`` (not epochs).

``p`` weights the dropped branch of the loss, ``(1 - p)`` the main branch, and ``p`` is also the
probability that a class is dropped at all in a step. The paper ramps it linearly from 0 to 1.
"""

import math
from typing import Callable, Dict

__all__ = [
    "ProgressSchedule",
    "LinearSchedule",
    "CappedLinearSchedule",
    "CosineSchedule",
    "ConstantSchedule",
    "build_schedule",
    "SCHEDULES",
]


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value} is outside the allowed range 0..1")
    return float(value)


class ProgressSchedule:
    """Base class: ``schedule(iteration, max_iterations) -> p`` in ``[0, 1]``.

    Subclasses implement :meth:`at` on the training fraction ``t`` in ``[0, 1]``; iterations past
    ``max_iterations`` keep ``t = 1``.
    """

    def __call__(self, iteration: int, max_iterations: int) -> float:
        if max_iterations < 1:
            raise ValueError(f"max_iterations={max_iterations} must be >= 1")
        if iteration < 0:
            raise ValueError(f"iteration={iteration} must be >= 0")
        return self.at(min(iteration / max_iterations, 1.0))

    def at(self, fraction: float) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class LinearSchedule(ProgressSchedule):
    """``p = start + (end - start) * t``; the paper's ramp is ``start=0, end=1``."""

    def __init__(self, start: float = 0.0, end: float = 1.0) -> None:
        self.start = _check_probability("start", start)
        self.end = _check_probability("end", end)

    def at(self, fraction: float) -> float:
        return self.start + (self.end - self.start) * fraction


class CappedLinearSchedule(ProgressSchedule):
    """``p = min(t, max_value)``: the paper's ramp, stopped at ``max_value``."""

    def __init__(self, max_value: float = 0.5) -> None:
        self.max_value = _check_probability("max_value", max_value)

    def at(self, fraction: float) -> float:
        return min(fraction, self.max_value)


class CosineSchedule(ProgressSchedule):
    """``p = start + (end - start) * (1 - cos(pi t)) / 2``: slow start, slow finish."""

    def __init__(self, start: float = 0.0, end: float = 1.0) -> None:
        self.start = _check_probability("start", start)
        self.end = _check_probability("end", end)

    def at(self, fraction: float) -> float:
        return self.start + (self.end - self.start) * 0.5 * (1.0 - math.cos(math.pi * fraction))


class ConstantSchedule(ProgressSchedule):
    """``p = value`` at every iteration."""

    def __init__(self, value: float = 0.5) -> None:
        self.value = _check_probability("value", value)

    def at(self, fraction: float) -> float:
        return self.value


SCHEDULES: Dict[str, Callable[..., ProgressSchedule]] = {
    "linear": LinearSchedule,
    "capped_linear": CappedLinearSchedule,
    "cosine": CosineSchedule,
    "constant": ConstantSchedule,
}


def build_schedule(name: str, **kwargs: float) -> ProgressSchedule:
    """Build a schedule by name: ``linear``, ``capped_linear``, ``cosine`` or ``constant``."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)
