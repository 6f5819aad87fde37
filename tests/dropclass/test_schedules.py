import math

import pytest

from medseg_dropclass import CappedLinearSchedule, ConstantSchedule, CosineSchedule, LinearSchedule, build_schedule


@pytest.mark.parametrize(
    "schedule, expected",
    [
        (LinearSchedule(), [0.0, 0.25, 0.5, 1.0, 1.0]),
        (LinearSchedule(0.2, 0.6), [0.2, 0.3, 0.4, 0.6, 0.6]),
        (CappedLinearSchedule(0.4), [0.0, 0.25, 0.4, 0.4, 0.4]),
        (CosineSchedule(), [0.0, 0.5 * (1 - math.cos(math.pi / 4)), 0.5, 1.0, 1.0]),
        (ConstantSchedule(0.3), [0.3] * 5),
    ],
)
def test_values_follow_iteration_over_max_iterations(schedule, expected):
    values = [schedule(i, 100) for i in (0, 25, 50, 100, 250)]
    assert values == pytest.approx(expected)


def test_build_schedule_by_name():
    assert build_schedule("capped_linear", max_value=0.5)(80, 100) == 0.5
    assert build_schedule("linear")(30, 60) == 0.5
    with pytest.raises(ValueError, match=r"unknown schedule 'step'; allowed: linear, capped_linear, cosine, constant"):
        build_schedule("step")


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"max_iterations=0 must be >= 1"):
        LinearSchedule()(0, 0)
    with pytest.raises(ValueError, match=r"iteration=-1 must be >= 0"):
        LinearSchedule()(-1, 10)
    with pytest.raises(ValueError, match=r"max_value=1.5 is outside the allowed range 0..1"):
        CappedLinearSchedule(1.5)
