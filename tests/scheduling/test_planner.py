"""The planner on hand-made signals whose best hours are known."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from smallfirst.errors import ConfigError, SignalError
from smallfirst.scheduling.hourly import HOUR, ConstantSignal, HourValue, hour_starts
from smallfirst.scheduling.planner import Objective, plan

pytestmark = pytest.mark.fast

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Table:
    """A signal from a table of hour offsets (from NOW's hour) to values; others absent."""

    by_offset: dict[int, float]
    unit: str = "gCO2e/kWh"
    name: str = "table"

    def hours(self, start_utc: datetime, end_utc: datetime) -> list[HourValue]:
        base = NOW.replace(minute=0)
        return [
            HourValue(h, self.by_offset[k])
            for h in hour_starts(start_utc, end_utc)
            if (k := int((h - base) / HOUR)) in self.by_offset
        ]


def day(values: dict[int, float], default: float = 400.0) -> Table:
    return Table({k: values.get(k, default) for k in range(48)})


def test_runs_in_the_known_clean_hour() -> None:
    carbon = day({13: 50.0})
    p = plan(NOW, NOW + timedelta(hours=24), 1800, 100.0, carbon, margin_s=1800)
    assert not p.at_once
    assert p.hours == (NOW.replace(minute=0) + 13 * HOUR,)
    assert p.used_s == (1800,)
    assert p.expected_g == pytest.approx(100.0 * 50 / 1000)
    assert p.at_submission_g == pytest.approx(100.0 * 400 / 1000)
    assert p.worst_g == pytest.approx(100.0 * 400 / 1000)
    assert "best hours" in p.reason
    as_json = p.to_json()
    assert as_json["hours"] == ["2026-03-01T22:00:00Z"]
    assert as_json["at_once"] is False and as_json["expected_g"] == pytest.approx(5.0)


def test_work_longer_than_an_hour_takes_the_cleanest_hours_and_part_of_the_next() -> None:
    carbon = day({5: 100.0, 9: 100.0, 20: 200.0, 2: 900.0})
    p = plan(NOW, NOW + timedelta(hours=24), 2.5 * 3600, 25.0, carbon)
    base = NOW.replace(minute=0)
    assert p.hours == (base + 5 * HOUR, base + 9 * HOUR, base + 20 * HOUR)
    assert p.used_s == (3600, 3600, 1800)
    assert p.expected_g == pytest.approx((10 * 100 + 10 * 100 + 5 * 200) / 1000)
    # the worst hours include the 900 g one
    assert p.worst_g == pytest.approx((10 * 900 + 15 * 400) / 1000)


def test_the_current_hour_counts_only_from_now() -> None:
    carbon = day({0: 10.0})  # now's hour is cleanest but only 30 minutes of it are left
    p = plan(NOW, NOW + timedelta(hours=24), 3600, 10.0, carbon)
    assert p.hours[0] == NOW.replace(minute=0)
    assert p.used_s[0] == pytest.approx(1800)
    assert sum(p.used_s) == pytest.approx(3600)


def test_a_constant_signal_runs_at_once() -> None:
    p = plan(NOW, NOW + timedelta(hours=24), 3600, 10.0, ConstantSignal(300.0))
    assert p.at_once
    assert "flat" in p.reason
    assert p.hours[0] == NOW.replace(minute=0)
    assert p.expected_g == p.at_submission_g == pytest.approx(3.0)


def test_a_deadline_too_close_runs_at_once_and_says_so() -> None:
    carbon = day({3: 1.0})
    p = plan(NOW, NOW + timedelta(hours=1.5), 3600, 10.0, carbon, margin_s=3600)
    assert p.at_once
    assert "deadline too close" in p.reason
    assert p.expected_g == p.at_submission_g == pytest.approx(4.0)


def test_missing_hours_are_never_chosen_nor_taken_as_zero() -> None:
    values = {k: 300.0 for k in range(48) if k != 4}
    values[6] = 100.0
    p = plan(NOW, NOW + timedelta(hours=24), 3600, 10.0, Table(values))
    base = NOW.replace(minute=0)
    assert base + 4 * HOUR not in p.hours
    assert p.hours == (base + 6 * HOUR,)


def test_no_data_runs_at_once_with_unknown_figures() -> None:
    p = plan(NOW, NOW + timedelta(hours=24), 3600, 10.0, Table({}))
    assert p.at_once
    assert "covers 0.0 h" in p.reason
    assert p.expected_g is None and p.at_submission_g is None


def test_now_already_best_runs_at_once() -> None:
    carbon = Table({k: 100.0 + 10 * k for k in range(48)})
    p = plan(NOW, NOW + timedelta(hours=24), 1200, 10.0, carbon)
    assert p.at_once
    assert "already the best" in p.reason
    assert p.worst_g is not None and p.worst_g > p.expected_g  # type: ignore[operator]


def test_replanning_later_moves_with_the_clock() -> None:
    carbon = day({13: 50.0, 20: 60.0})
    first = plan(NOW, NOW + timedelta(hours=24), 3600, 10.0, carbon)
    later = plan(NOW + timedelta(hours=14), NOW + timedelta(hours=24), 3600, 10.0, carbon)
    base = NOW.replace(minute=0)
    assert first.hours == (base + 13 * HOUR,)
    assert later.hours == (base + 20 * HOUR,)


def test_cost_objective_follows_the_price() -> None:
    carbon = day({3: 50.0})
    price = Table({k: (0.05 if k == 7 else 0.30) for k in range(48)}, unit="USD/kWh")
    p = plan(
        NOW,
        NOW + timedelta(hours=24),
        3600,
        1000.0,
        carbon,
        price=price,
        objective=Objective.COST,
    )
    assert p.hours == (NOW.replace(minute=0) + 7 * HOUR,)
    assert p.expected_usd == pytest.approx(0.05)


def test_cost_cap_trades_carbon_for_price() -> None:
    carbon = day({3: 50.0, 7: 200.0})
    price = Table({k: {3: 1.0, 7: 0.10}.get(k, 0.5) for k in range(48)}, unit="USD/kWh")
    kwargs = {"price": price, "objective": Objective.CARBON_COST_CAP}
    roomy = plan(NOW, NOW + timedelta(hours=24), 3600, 1000.0, carbon, cost_cap_usd=2.0, **kwargs)
    tight = plan(NOW, NOW + timedelta(hours=24), 3600, 1000.0, carbon, cost_cap_usd=0.2, **kwargs)
    impossible = plan(
        NOW, NOW + timedelta(hours=24), 3600, 1000.0, carbon, cost_cap_usd=0.01, **kwargs
    )
    base = NOW.replace(minute=0)
    assert roomy.hours == (base + 3 * HOUR,)
    assert tight.hours == (base + 7 * HOUR,)
    assert tight.expected_usd is not None and tight.expected_usd <= 0.2
    assert "cannot be met" in impossible.reason


@dataclass(frozen=True)
class Failing:
    name: str = "down"
    unit: str = "gCO2e/kWh"

    def hours(self, start_utc: datetime, end_utc: datetime) -> list[HourValue]:
        raise SignalError("signal down: api.example did not answer within 10 s")


def test_a_failing_signal_runs_at_once_and_says_why() -> None:
    p = plan(NOW, NOW + timedelta(hours=24), 3600, 10.0, Failing())
    assert p.at_once
    assert (
        p.reason
        == "no forecast, runs at once (signal down: api.example did not answer within 10 s)"
    )
    assert p.hours[0] == NOW.replace(minute=0) and p.expected_g is None


def test_hour_starts_include_the_hour_begun_and_stop_before_the_end() -> None:
    assert hour_starts(NOW, NOW) == [NOW.replace(minute=0)]
    on_the_hour = NOW.replace(minute=0)
    assert hour_starts(on_the_hour, on_the_hour) == []
    assert len(hour_starts(on_the_hour, on_the_hour + 2 * HOUR)) == 2
    assert len(hour_starts(on_the_hour, on_the_hour + 2 * HOUR + timedelta(seconds=1))) == 3


def test_cost_objectives_need_a_price() -> None:
    with pytest.raises(ConfigError, match="price signal"):
        plan(NOW, NOW + timedelta(hours=24), 60, 1.0, ConstantSignal(1.0), objective="cost")
