"""A batch's estimated duration and energy from token counts."""

from __future__ import annotations

import pytest

from smallfirst.metering.pricing import Profile
from smallfirst.scheduling.estimate import Throughput, estimate

pytestmark = pytest.mark.fast


def test_energy_from_the_profile_and_time_from_the_throughput() -> None:
    profile = Profile(
        "m", j_per_input_token=0.1, j_per_output_token=1.0, method="measured", source="t"
    )
    work_s, energy_wh = estimate([(100, 10), (300, 30)], profile, Throughput(400.0, 20.0))
    assert work_s == pytest.approx(400 / 400 + 40 / 20)
    assert energy_wh == pytest.approx((400 * 0.1 + 40 * 1.0) / 3600)


def test_no_lines_is_no_work() -> None:
    profile = Profile(
        "m", j_per_input_token=0.1, j_per_output_token=1.0, method="measured", source="t"
    )
    assert estimate([], profile, Throughput(1.0, 1.0)) == (0.0, 0.0)
