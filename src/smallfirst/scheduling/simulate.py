"""A year of batches on a virtual clock: what the planner saves against running at once.

:func:`simulate` replays an hourly carbon trace (as a year-long loop, so windows that cross
New Year read January again) and submits batches at uniformly random moments. For each one
it plans with the real :func:`~smallfirst.scheduling.planner.plan` under several forecasts and
charges the hours chosen at the trace's *true* values:

- ``perfect``: the trace itself as the forecast;
- ``profile`` (the realistic one, what an operator without a forecast API could run): the
  mean of the same hour over the last 14 days, shifted by how far the last observed hour
  sat from its own 14-day mean, the shift fading with an e-folding time of 24 h;
- ``persistence``: yesterday's same hour, the naive baseline;
- ``noisy10``, ``noisy20``: the true value times (1 + e), e Gaussian with a 10 % or 20 %
  standard deviation, drawn once per hour of the year (the same error whoever asks).

Against that: ``at submission`` (the same work run at once) and the ``oracle`` (the window's
cleanest hours with perfect knowledge and no safety margin). A submission whose run at once
touches an hour the trace lacks is skipped and counted: a gap is never charged as zero.

No model runs; energy and duration per line are the caller's assumptions, printed with the
results. This module does not draw (:mod:`.simplot`) nor print.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from smallfirst.errors import ConfigError
from smallfirst.scheduling.hourly import (
    CARBON_UNIT,
    HOUR,
    HourValue,
    Signal,
    floor_hour,
    hour_starts,
)
from smallfirst.scheduling.planner import Plan, plan

__all__ = [
    "FORECASTS",
    "LINE_OUTPUT_TOKENS_PER_S",
    "REALISTIC",
    "Assumptions",
    "Simulation",
    "Stats",
    "simulate",
]

FORECASTS = ("perfect", "profile", "persistence", "noisy10", "noisy20")
REALISTIC = "profile"
PROFILE_DAYS = 14  # chosen on the shared traces among 1, 3, 7, 14 and 28 days
LEVEL_FADE_H = 24.0  # among 3, 6, 12, 24 h and never
# the batched engine's measured throughput, 8 clients, qwen2.5-coder-0.5b on 2 cores:
# bench/results/serving/batching_throughput-20261202-210706.md
LINE_OUTPUT_TOKENS_PER_S = 44.0
FLEET_LINES_PER_DAY = (10**6, 10**9)


@dataclass(frozen=True)
class Assumptions:
    """What one batch is: its lines, their energy and time, its window and margin."""

    lines_per_batch: int
    energy_wh_per_line: float
    work_s_per_line: float
    window_h: float = 24.0
    margin_s: float = 1800.0
    energy_source: str = "given"

    @property
    def energy_wh(self) -> float:
        return self.lines_per_batch * self.energy_wh_per_line

    @property
    def work_s(self) -> float:
        return self.lines_per_batch * self.work_s_per_line


@dataclass(frozen=True)
class Stats:
    """g CO2e saved per batch against running at submission, over the submissions."""

    mean_g: float
    p10_g: float
    p50_g: float
    p90_g: float
    mean_pct: float  # mean of saved / at-submission, in %
    of_oracle: float  # total saved / total the oracle saves (1.0 = as good as the oracle)

    @classmethod
    def of(cls, saved: np.ndarray, baseline: np.ndarray, oracle_total: float) -> Stats:
        p10, p50, p90 = (float(x) for x in np.percentile(saved, [10, 50, 90]))
        return cls(
            mean_g=float(saved.mean()),
            p10_g=p10,
            p50_g=p50,
            p90_g=p90,
            mean_pct=float((saved / baseline).mean() * 100),
            of_oracle=float(saved.sum() / oracle_total) if oracle_total > 0 else 0.0,
        )


@dataclass(frozen=True)
class Simulation:
    signal: str
    days: int
    submitted: int
    skipped: int  # run-at-once touched an hour the trace lacks
    seed: int
    assumptions: Assumptions
    at_submission_mean_g: float
    oracle: Stats
    by_forecast: dict[str, Stats]
    saved_g: dict[str, list[float]] = field(repr=False)  # per submission, for plots

    def fleet(self, forecast: str = REALISTIC) -> list[dict[str, float]]:
        """Totals for fleets of 10^6 and 10^9 lines a day at this saving per line."""
        a = self.assumptions
        per_line_g = self.by_forecast[forecast].mean_g / a.lines_per_batch
        base_per_line_g = self.at_submission_mean_g / a.lines_per_batch
        return [
            {
                "lines_per_day": float(n),
                "energy_mwh_per_day": n * a.energy_wh_per_line / 1e6,
                "at_submission_t_per_year": n * base_per_line_g * 365 / 1e6,
                "saved_kg_per_day": n * per_line_g / 1e3,
                "saved_t_per_year": n * per_line_g * 365 / 1e6,
            }
            for n in FLEET_LINES_PER_DAY
        ]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("saved_g")
        out["fleet"] = {f: self.fleet(f) for f in self.by_forecast}
        return out


@dataclass(frozen=True)
class _Looped:
    """An hourly series from ``origin`` on, read as a loop (the trace's year repeats)."""

    values: tuple[float | None, ...]
    origin: datetime
    name: str
    unit: str = CARBON_UNIT

    def at(self, hour: datetime) -> float | None:
        return self.values[int((floor_hour(hour) - self.origin) / HOUR) % len(self.values)]

    def hours(self, start_utc: datetime, end_utc: datetime) -> list[HourValue]:
        out = []
        for h in hour_starts(start_utc, end_utc):
            v = self.at(h)
            if v is not None:
                out.append(HourValue(h, v))
        return out


def _year(trace: dict[datetime, float]) -> tuple[datetime, list[float | None]]:
    first = min(trace)
    origin = first.replace(month=1, day=1, hour=0)
    length = int((origin.replace(year=origin.year + 1) - origin) / HOUR)
    return origin, [trace.get(origin + i * HOUR) for i in range(length)]


def forecasts_of(trace: dict[datetime, float], seed: int) -> dict[str, _Looped]:
    """The true series and each forecast of it, as signals the planner reads."""
    origin, truth = _year(trace)
    rng = np.random.default_rng(seed)
    out = {"truth": _Looped(tuple(truth), origin, "truth")}
    out["perfect"] = out["truth"]
    out["persistence"] = _Looped(tuple(truth[-24:] + truth[:-24]), origin, "persistence")
    out["profile"] = _Looped(_profile(truth, PROFILE_DAYS), origin, "profile")
    for label, sigma in (("noisy10", 0.10), ("noisy20", 0.20)):
        errors = rng.normal(0.0, sigma, len(truth))
        noisy = tuple(
            None if v is None else max(0.0, v * (1 + e)) for v, e in zip(truth, errors, strict=True)
        )
        out[label] = _Looped(noisy, origin, label)
    return out


def _profile(truth: list[float | None], days: int) -> tuple[float | None, ...]:
    """Each hour's mean over the same hour of the ``days`` days before (known values only)."""
    n = len(truth)
    out: list[float | None] = []
    for i in range(n):
        known = [v for k in range(1, days + 1) if (v := truth[(i - 24 * k) % n]) is not None]
        out.append(sum(known) / len(known) if known else None)
    return tuple(out)


@dataclass(frozen=True)
class _Leveled:
    """The profile at submission ``now``: shifted by the last observed hour's deviation."""

    profile: _Looped
    truth: _Looped
    now: datetime
    name: str = "profile"
    unit: str = CARBON_UNIT

    def hours(self, start_utc: datetime, end_utc: datetime) -> list[HourValue]:
        last = floor_hour(self.now) - HOUR  # the latest hour fully observed at submission
        seen, usual = self.truth.at(last), self.profile.at(last)
        shift = seen - usual if seen is not None and usual is not None else 0.0
        out = []
        for v in self.profile.hours(start_utc, end_utc):
            fade = math.exp(-((v.start_utc - last) / HOUR) / LEVEL_FADE_H)
            out.append(HourValue(v.start_utc, max(0.0, v.value + shift * fade)))
        return out


def _forecast(signals: dict[str, _Looped], name: str, now: datetime) -> Signal:
    if name == "profile":
        return _Leveled(signals["profile"], signals["truth"], now)
    return signals[name]


def _true_g(p: Plan, truth: _Looped, a: Assumptions) -> float | None:
    total = 0.0
    for hour, used in zip(p.hours, p.used_s, strict=True):
        value = truth.at(hour)
        if value is None:
            return None
        total += a.energy_wh * used / a.work_s * value / 1000
    return total


def simulate(
    trace: dict[datetime, float],
    *,
    days: int,
    batches_per_day: float,
    assumptions: Assumptions,
    seed: int = 0,
    name: str = "trace",
    forecasts: Sequence[str] = FORECASTS,
    progress: Callable[[int, int], None] | None = None,
) -> Simulation:
    """Submit ``days × batches_per_day`` batches at uniformly random moments and plan each."""
    a = assumptions
    signals = forecasts_of(trace, seed)
    truth = signals["truth"]
    rng = np.random.default_rng(seed + 1)
    count = max(1, round(days * batches_per_day))
    offsets = np.sort(rng.uniform(0, days * 86400, count))
    window = timedelta(hours=a.window_h)
    baseline, oracle, skipped = [], [], 0
    saved: dict[str, list[float]] = {f: [] for f in forecasts}
    for i, offset in enumerate(offsets):
        if progress is not None and i % 64 == 0:
            progress(i, count)
        now = truth.origin + timedelta(seconds=float(offset))
        best = plan(now, now + window, a.work_s, a.energy_wh, truth, margin_s=0)
        if best.at_submission_g is None or best.expected_g is None:
            skipped += 1
            continue
        runs = {}
        for f in forecasts:
            forecast = _forecast(signals, f, now)
            p = plan(now, now + window, a.work_s, a.energy_wh, forecast, margin_s=a.margin_s)
            runs[f] = _true_g(p, truth, a)
        if any(g is None for g in runs.values()):
            skipped += 1
            continue
        baseline.append(best.at_submission_g)
        oracle.append(best.at_submission_g - best.expected_g)
        for f, g in runs.items():
            saved[f].append(best.at_submission_g - (g or 0.0))
    if progress is not None:
        progress(count, count)
    if not baseline:
        raise ConfigError(f"{name}: no submission could be charged (the trace has too few hours)")
    base = np.array(baseline)
    oracle_saved = np.array(oracle)
    return Simulation(
        signal=name,
        days=days,
        submitted=count,
        skipped=skipped,
        seed=seed,
        assumptions=a,
        at_submission_mean_g=float(base.mean()) if len(base) else 0.0,
        oracle=Stats.of(oracle_saved, base, float(oracle_saved.sum())),
        by_forecast={
            f: Stats.of(np.array(s), base, float(oracle_saved.sum())) for f, s in saved.items()
        },
        saved_g={"oracle": oracle, **saved},
    )
