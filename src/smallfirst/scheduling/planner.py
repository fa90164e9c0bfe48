"""The planner: which hours before its deadline a deferrable batch should run in.

Given the batch's estimated duration and energy and hourly signals, :func:`plan` chooses
hours between now and ``deadline - margin`` that minimise the objective: grid carbon, the
electricity price, or carbon under a cost cap. Work is divisible (a batch is many lines), so
the choice is a fractional knapsack: the best hours first, the last one partly used, which
is optimal for a linear objective. Under a cost cap it minimises ``carbon + λ·price`` with
the smallest λ whose plan fits the cap (a Lagrangian relaxation: optimal up to the one hour
where the two bounds meet).

An hour the signal has no figure for is never chosen (a gap is not a clean hour). The plan
runs at once, and says why in ``reason``, when the signal is flat over the window, covers
too little of it, fails (a forecast API's ``SignalError``), when now is already the best
time, or when the deadline cannot be met with the margin. Re-planning is calling
:func:`plan` again with a new ``now``.

This module does not read signals' sources, run work, or keep state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from smallfirst.errors import ConfigError, SignalError
from smallfirst.scheduling.hourly import (
    CARBON_UNIT,
    HOUR,
    HourValue,
    Signal,
    floor_hour,
    hour_starts,
    utc,
)

__all__ = ["DEFAULT_MARGIN_S", "Objective", "Plan", "plan"]

DEFAULT_MARGIN_S = 1800.0  # finish half an hour before the deadline: estimates are estimates
_FLAT = 1e-9  # relative spread under which a window counts as flat


class Objective(StrEnum):
    CARBON = "carbon"
    COST = "cost"
    CARBON_COST_CAP = "carbon_cost_cap"


@dataclass(frozen=True)
class Plan:
    """The hours chosen for a batch, why, and what they are expected to emit."""

    hours: tuple[datetime, ...]  # the hour starts chosen to run in, ascending
    at_once: bool  # True: start now (flat signal, no data, or deadline too close)
    reason: str  # one line a user reads in the batch object
    expected_g: float | None  # gCO2e as planned; None when unknown
    at_submission_g: float | None  # the same work run at once
    worst_g: float | None  # the same work in the window's worst hours
    used_s: tuple[float, ...] = ()  # seconds of work planned in each of ``hours``
    expected_usd: float | None = None  # electricity cost as planned, with a price signal

    def to_json(self) -> dict[str, object]:
        """The plan as JSON values (hours as ISO 8601 UTC), for a batch object or a log."""
        return {
            "hours": [h.strftime("%Y-%m-%dT%H:%M:%SZ") for h in self.hours],
            "used_s": [round(s, 3) for s in self.used_s],
            "at_once": self.at_once,
            "reason": self.reason,
            "expected_g": self.expected_g,
            "at_submission_g": self.at_submission_g,
            "worst_g": self.worst_g,
            "expected_usd": self.expected_usd,
        }


@dataclass(frozen=True)
class _NoHours:
    """Stands in for a signal that failed: it knows no hour."""

    name: str = "none"
    unit: str = CARBON_UNIT

    def hours(self, start_utc: datetime, end_utc: datetime) -> list[HourValue]:
        return []


@dataclass(frozen=True)
class _Slot:
    start: datetime  # hour start
    seconds: float  # usable seconds of this hour inside [now, deadline - margin)
    carbon: float | None  # g/kWh
    price: float | None  # USD/kWh


Fill = list[tuple[_Slot, float]]  # slots used and the seconds used in each


def plan(
    now_utc: datetime,
    deadline_utc: datetime,
    work_s: float,
    energy_wh: float,
    carbon: Signal,
    *,
    price: Signal | None = None,
    objective: Objective = Objective.CARBON,
    cost_cap_usd: float | None = None,
    margin_s: float = DEFAULT_MARGIN_S,
) -> Plan:
    """Choose the hours in [now, deadline - margin) that minimise ``objective``.

    ``work_s`` and ``energy_wh`` are the batch's estimated duration and energy; energy is
    taken to be spread evenly over the work's duration.
    """
    objective = Objective(objective)
    if objective is not Objective.CARBON and price is None:
        raise ConfigError(f"the objective {objective.value!r} needs a price signal")
    if objective is Objective.CARBON_COST_CAP and cost_cap_usd is None:
        raise ConfigError("the objective 'carbon_cost_cap' needs a cost cap")
    now = utc(now_utc)
    end = utc(deadline_utc) - timedelta(seconds=margin_s)
    work_s = max(work_s, 0.0)
    horizon = max(end, now + timedelta(seconds=work_s))
    failure = None
    try:
        slots = _slots(now, end, horizon, carbon, price)
    except SignalError as exc:  # a forecast API down: the batch must not wait on it
        slots, failure = _slots(now, end, horizon, _NoHours(), None), exc.message
    at_once = _in_order(slots, work_s)
    baseline = _grams(at_once, work_s, energy_wh)

    def now_plan(reason: str) -> Plan:
        return _plan(at_once, work_s, energy_wh, True, reason, baseline, None)

    if work_s <= 0:
        return now_plan("no work to schedule")
    if failure is not None:
        return now_plan(f"no forecast, runs at once ({failure})")
    if now + timedelta(seconds=work_s) > end:
        return now_plan(
            f"deadline too close to wait: {_hours(work_s)} of work, "
            f"{_hours(max(0.0, (end - now).total_seconds()))} left before the margin"
        )
    window = [s for s in slots if s.start < end and s.seconds > 0]
    key = _key(objective)
    known = [s for s in window if key(s, 0.0) is not None]
    covered = sum(s.seconds for s in known)
    if covered < work_s:
        return now_plan(
            f"the signal covers {_hours(covered)} of the window, the work needs {_hours(work_s)}"
        )
    values = [v for s in known if (v := key(s, 0.0)) is not None]
    if max(values) - min(values) <= _FLAT * max(abs(v) for v in values):
        return now_plan("the signal is flat over the window: nothing to gain by waiting")
    worst = _grams(_greedy(known, work_s, lambda s: (-(s.carbon or 0.0), 0.0)), work_s, energy_wh)
    if any(s.carbon is None for s in known):
        worst = None
    chosen, note = _choose(objective, known, work_s, energy_wh, cost_cap_usd)
    if [s.start for s, _ in chosen] == [s.start for s, _ in at_once]:
        return _plan(
            chosen, work_s, energy_wh, True, "now is already the best time" + note, baseline, worst
        )
    deadline = utc(deadline_utc).strftime("%Y-%m-%d %H:%M UTC")
    reason = f"waits for the {len(chosen)} best hours before {deadline}{note}"
    return _plan(chosen, work_s, energy_wh, False, reason, baseline, worst)


def _slots(
    now: datetime, end: datetime, horizon: datetime, carbon: Signal, price: Signal | None
) -> list[_Slot]:
    """Every hour from now's to the horizon's, with its usable seconds and known values."""
    start = floor_hour(now)
    c = {floor_hour(v.start_utc): v.value for v in carbon.hours(start, horizon)}
    p = {floor_hour(v.start_utc): v.value for v in price.hours(start, horizon)} if price else {}
    out = []
    for h in hour_starts(now, horizon):
        stop = min(h + HOUR, horizon)
        seconds = (stop - max(h, now)).total_seconds()
        out.append(_Slot(h, max(0.0, seconds), c.get(h), p.get(h)))
    return out


def _key(objective: Objective) -> Callable[[_Slot, float], float | None]:
    """The cost of one hour under the objective (λ weighs price under a cost cap)."""

    def carbon(s: _Slot, lam: float) -> float | None:
        return s.carbon

    def cost(s: _Slot, lam: float) -> float | None:
        return s.price

    def capped(s: _Slot, lam: float) -> float | None:
        if s.carbon is None or s.price is None:
            return None
        return s.carbon + lam * s.price

    return {Objective.CARBON: carbon, Objective.COST: cost}.get(objective, capped)


def _choose(
    objective: Objective,
    known: list[_Slot],
    work_s: float,
    energy_wh: float,
    cap: float | None,
) -> tuple[Fill, str]:
    """The best fill for the objective, and a note for the reason when a cap bites."""
    key = _key(objective)
    if objective is not Objective.CARBON_COST_CAP or cap is None:
        return _greedy(known, work_s, lambda s: (key(s, 0.0) or 0.0, s.carbon or 0.0)), ""

    def fill(lam: float) -> Fill:
        return _greedy(known, work_s, lambda s: (key(s, lam) or 0.0, 0.0))

    def over(f: Fill) -> bool:
        usd = _usd(f, work_s, energy_wh)
        return usd is not None and usd > cap

    cleanest = fill(0.0)
    if not over(cleanest):
        return cleanest, ""
    cheapest = _greedy(known, work_s, lambda s: (s.price or 0.0, s.carbon or 0.0))
    if over(cheapest):
        return cheapest, f" (the cost cap ${cap:g} cannot be met: the cheapest hours instead)"
    low, high = 0.0, 1.0
    while over(fill(high)) and high < 1e12:
        low, high = high, high * 4
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if over(fill(mid)) else (low, mid)
    return fill(high), f" under the cost cap ${cap:g}"


Rank = Callable[[_Slot], tuple[float, float]]


def _greedy(slots: Sequence[_Slot], work_s: float, key: Rank) -> Fill:
    """Fill ``work_s`` from the slots with the lowest key first (earlier first on ties)."""
    ranked = sorted(slots, key=lambda s: (key(s), s.start))
    out: Fill = []
    left = work_s
    for s in ranked:
        if left <= 0:
            break
        used = min(s.seconds, left)
        out.append((s, used))
        left -= used
    return sorted(out, key=lambda pair: pair[0].start)


def _in_order(slots: Sequence[_Slot], work_s: float) -> Fill:
    """The work run at once: the hours from now on, in order, whatever their values."""
    return _greedy([s for s in slots if s.seconds > 0], work_s, lambda s: (0.0, 0.0))


def _grams(fill: Fill, work_s: float, energy_wh: float) -> float | None:
    if not fill or any(s.carbon is None for s, _ in fill):
        return None
    return sum(energy_wh * used / work_s * (s.carbon or 0.0) for s, used in fill) / 1000


def _usd(fill: Fill, work_s: float, energy_wh: float) -> float | None:
    if not fill or any(s.price is None for s, _ in fill):
        return None
    return sum(energy_wh * used / work_s * (s.price or 0.0) for s, used in fill) / 1000


def _plan(
    fill: Fill,
    work_s: float,
    energy_wh: float,
    at_once: bool,
    reason: str,
    baseline: float | None,
    worst: float | None,
) -> Plan:
    return Plan(
        hours=tuple(s.start for s, _ in fill),
        at_once=at_once,
        reason=reason,
        expected_g=_grams(fill, work_s, energy_wh) if work_s > 0 else 0.0,
        at_submission_g=baseline if work_s > 0 else 0.0,
        worst_g=worst if worst is not None else (baseline if at_once else None),
        used_s=tuple(used for _, used in fill),
        expected_usd=_usd(fill, work_s, energy_wh) if work_s > 0 else 0.0,
    )


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"
