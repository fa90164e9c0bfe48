"""When a batch's lines run: its estimate, its plan over the carbon (or price) signal, and
the grid intensity of the hour a line runs in.

At creation a batch is *estimated* from its input file (:func:`estimate_lines`): the model
its lines name (``auto``: the default model) and their tokens, about four characters a
token for the prompt and the line's ``max_tokens`` (else :data:`OUTPUT_TOKENS_GUESS`) for
the answer. :class:`Planner` turns that into work seconds (``batch_*_tokens_per_s``) and
watt-hours (the model's per-token profile; without one, :data:`FALLBACK_W` over the work)
and asks :func:`smallfirst.scheduling.planner.plan` which hours before the batch's
deadline are best, for the work still left. The runner calls it every tick, so a changed
forecast revises the plan. Once this gateway has finished a few of the batch's lines
(:data:`MEASURED_AFTER_LINES`), the work left is estimated from them instead: seconds per
line from the time it had the batch's lines in flight (:class:`BusyTime`), joules per line
from their receipts; the plan says which (``estimate_basis``). With the default
``constant`` signal the plan is "at once".

What the batch object shows (:func:`carbon_view`): grams of CO2 as run (the lines'
receipts, each priced at its own hour's intensity), against the same measured energy at
the intensity of the hours it would have run in at submission, and in the window's worst
hours; the intensities of those two come from the first plan, made at submission.

This module does not claim or run lines.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from smallfirst.errors import SignalError
from smallfirst.metering.pricing import Profile
from smallfirst.scheduling.estimate import Throughput, estimate
from smallfirst.scheduling.hourly import HOUR, floor_hour
from smallfirst.scheduling.planner import Objective, plan
from smallfirst.scheduling.signal import signals_from
from smallfirst.settings import Settings
from smallfirst.store.batches import BatchRecord, Counts, LineRef

__all__ = ["BusyTime", "Planner", "RunPlan", "carbon_view", "estimate_lines"]

log = logging.getLogger(__name__)

OUTPUT_TOKENS_GUESS = 256  # a line without max_tokens: what it is assumed to write
CHARS_PER_TOKEN = 4.0
FALLBACK_W = 10.0  # a model without a profile: its work at this power, for planning only
J_PER_KWH = 3.6e6
MEASURED_AFTER_LINES = 3  # lines finished here before their measured rate replaces the guess


class BusyTime:
    """Per batch, the seconds this gateway had at least one of its lines in flight, and how
    many it finished: the batch's measured pace. Entries live while a batch runs here (the
    runner forgets a batch once it is finished), so the map is bounded by the open batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # started on the event loop, read in the tick's thread
        self._state: dict[str, tuple[int, float, float, int]] = {}  # active, since, busy, done

    def start(self, batch_id: str, now: float) -> None:
        with self._lock:
            active, since, busy, done = self._state.get(batch_id, (0, now, 0.0, 0))
            self._state[batch_id] = (active + 1, now if active == 0 else since, busy, done)

    def stop(self, batch_id: str, now: float, *, finished: bool) -> None:
        with self._lock:
            active, since, busy, done = self._state.get(batch_id, (1, now, 0.0, 0))
            if active <= 1:
                busy, active = busy + max(0.0, now - since), 0
            else:
                active -= 1
            self._state[batch_id] = (active, since, busy, done + int(finished))

    def measured(self, batch_id: str, now: float) -> tuple[float, int]:
        """(busy seconds, lines finished) so far; a line in flight counts its time."""
        with self._lock:
            active, since, busy, done = self._state.get(batch_id, (0, now, 0.0, 0))
        return busy + (max(0.0, now - since) if active else 0.0), done

    def forget(self, batch_id: str) -> None:
        with self._lock:
            self._state.pop(batch_id, None)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """When a batch's lines may run: at once, or only in the hours chosen."""

    at_once: bool
    reason: str
    hours: tuple[float, ...] = ()  # chosen hour starts, Unix seconds, ascending

    def runs_at(self, now: float) -> bool:
        return self.at_once or any(h <= now < h + 3600.0 for h in self.hours)


def estimate_lines(content: bytes, refs: Sequence[LineRef], default_model: str) -> dict[str, Any]:
    """A batch's model and token counts, from its input file (planning only)."""
    tokens_in = tokens_out = 0
    model = default_model
    for ref in refs:
        body = json.loads(content[ref.offset : ref.offset + ref.length]).get("body", {})
        if isinstance(body.get("model"), str) and not body["model"].startswith("auto"):
            model = body["model"]
        text = json.dumps(body.get("messages") or body.get("prompt") or body.get("input") or "")
        tokens_in += math.ceil(len(text) / CHARS_PER_TOKEN)
        out = body.get("max_completion_tokens") or body.get("max_tokens")
        tokens_out += 0 if "input" in body else int(out or OUTPUT_TOKENS_GUESS)
    return {"model": model, "tokens_in": tokens_in, "tokens_out": tokens_out}


class Planner:
    """The settings' signals and objective, applied to batches."""

    def __init__(self, settings: Settings, profile_of: Callable[[str], Profile | None]) -> None:
        self.settings = settings
        self.carbon, self.price = signals_from(settings)
        self.profile_of = profile_of
        self.throughput = Throughput(
            settings.batch_input_tokens_per_s, settings.batch_output_tokens_per_s
        )

    def plan(
        self,
        batch: BatchRecord,
        counts: Counts,
        now: float,
        measured: tuple[float, int] = (0.0, 0),
    ) -> tuple[RunPlan, dict[str, Any]]:
        """The plan for the work ``batch`` has left at ``now``, and its public form (kept in
        the batch's row; the first plan's submission figures are kept as they were);
        ``measured``: this gateway's busy seconds and lines finished for it (:class:`BusyTime`)."""
        stored = dict(batch.plan or {})
        est = stored.get("estimate") or {"model": "", "tokens_in": 0, "tokens_out": 0}
        left = (counts.pending + counts.running) / counts.total if counts.total else 0.0
        if left <= 0 and "reason" in stored:  # all run: the plan they ran under stands
            hours = tuple(datetime.fromisoformat(h).timestamp() for h in stored["hours"])
            return RunPlan(bool(stored["at_once"]), str(stored["reason"]), hours), stored
        pace = _measured_pace(counts, measured)
        if pace is None:
            work_s, energy_wh = self._work(est, left)
            basis = "assumed: ~4 characters a token, batch_*_tokens_per_s, the model's profile"
        else:
            lines_left = counts.pending + counts.running
            work_s, energy_wh = pace[0] * lines_left, pace[1] * lines_left
            basis = f"measured: the {measured[1]} lines this gateway finished"
        chosen = plan(
            datetime.fromtimestamp(now, UTC),
            datetime.fromtimestamp(batch.expires_at, UTC),
            work_s,
            energy_wh,
            self.carbon,
            price=self.price,
            objective=Objective(self.settings.schedule_objective),
            cost_cap_usd=self.settings.schedule_cost_cap_usd,
            margin_s=self.settings.schedule_margin_s,
        )
        hours = tuple(h.timestamp() for h in chosen.hours)
        first = "submission_g_per_kwh" not in stored  # the first plan: made at submission
        public: dict[str, Any] = {
            **stored,
            **chosen.to_json(),  # hours (ISO), used_s, at_once, reason, expected_g, ...
            "signal": self.carbon.name,
            "objective": self.settings.schedule_objective,
            "work_s": work_s,
            "energy_wh": energy_wh,
            "estimate_basis": basis,
        }
        if first:
            public["submission_g_per_kwh"] = _per_kwh(chosen.at_submission_g, energy_wh)
            public["worst_g_per_kwh"] = _per_kwh(chosen.worst_g, energy_wh)
        else:  # what running at submission would have emitted stays the first plan's
            public["at_submission_g"] = stored.get("at_submission_g")
            public["worst_g"] = stored.get("worst_g")
        return RunPlan(chosen.at_once, chosen.reason, hours), public

    def _work(self, est: dict[str, Any], left: float) -> tuple[float, float]:
        lines = [(int(est["tokens_in"] * left), int(est["tokens_out"] * left))]
        profile = self.profile_of(str(est["model"]))
        if profile is None:
            flat = Profile(str(est["model"]), 0.0, 0.0, "estimated", "none")
            work_s, _ = estimate(lines, flat, self.throughput)
            return work_s, work_s * FALLBACK_W / 3600.0
        return estimate(lines, profile, self.throughput)

    def hour(self, now: float) -> tuple[float, str] | None:
        """The grid intensity of the hour ``now`` is in and its source; None: the signal has
        no figure for it (the receipt then keeps the configured grid's)."""
        start = floor_hour(datetime.fromtimestamp(now, UTC))
        if self.carbon.name.startswith("constant"):
            return None  # the receipts' own figure already
        try:
            values = self.carbon.hours(start, start + HOUR)
        except SignalError as exc:  # a forecast API down: the line runs, at the usual figure
            log.warning("no grid intensity for %s: %s", start, exc.message)
            return None
        if not values:
            return None
        return values[0].value, f"{self.carbon.name} at {start:%Y-%m-%dT%H:00Z} (hourly)"


def _measured_pace(counts: Counts, measured: tuple[float, int]) -> tuple[float, float] | None:
    """(seconds, watt-hours) per line from the lines finished so far, once there are enough;
    None before (or without their receipts' energy)."""
    busy_s, finished_here = measured
    enough = finished_here >= MEASURED_AFTER_LINES and busy_s > 0 and counts.completed > 0
    if not enough or counts.energy_j is None:
        return None
    return busy_s / finished_here, counts.energy_j / counts.completed / 3600.0


def _per_kwh(grams: float | None, energy_wh: float) -> float | None:
    if grams is None or energy_wh <= 0:
        return None
    return grams * 1000.0 / energy_wh


def carbon_view(plan: dict[str, Any] | None, counts: Counts, pue: float) -> dict[str, Any]:
    """gCO2 as run, at submission and in the worst hours, for the energy the lines used."""
    plan = plan or {}

    def at(g_per_kwh: float | None) -> float | None:
        if g_per_kwh is None or counts.energy_j is None:
            return None
        return counts.energy_j / J_PER_KWH * g_per_kwh * pue

    return {
        "co2_g_as_run": counts.co2_g,
        "co2_g_at_submission": at(plan.get("submission_g_per_kwh")),
        "co2_g_worst_hours": at(plan.get("worst_g_per_kwh")),
        "hours_chosen": plan.get("hours", []),
        "lines_with_co2": counts.with_co2,
    }
