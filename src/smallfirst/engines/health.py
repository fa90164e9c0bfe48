"""Which models are failing: a circuit breaker per model (ok, cooling down, probing).

A model that fails ``cooldown_failures`` times within ``cooldown_window_s`` (an upstream
that refuses connections or answers 5xx, a local file that will not load) is *cooling
down*: requests skip it, to their fallbacks or a fast error, for ``cooldown_s``. Then it is
half-open: the next request that asks for it is let through as the one *probe*, and others
keep skipping it while the probe runs. The probe's success closes the breaker (``ok``, the
failure count cleared); its failure starts a new cooldown. A probe that ends neither way (its
client went away) gives the next request the chance to probe.

The serving side reports outcomes (:meth:`Health.succeeded`, :meth:`Health.failed`,
:meth:`Health.abandoned`); this module does not generate, retry or decide what counts as a
failure. State is kept only for models that have failed, so it is bounded by the catalog
(callers pass model names the catalog knows), not by client input.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Health", "State", "UpstreamState"]

State = Literal["ok", "cooling_down", "probing"]


@dataclass(slots=True)
class _Breaker:
    failures: deque[float] = field(default_factory=deque)  # monotonic times, in the window
    cooling_until: float | None = None
    probing: bool = False


@dataclass(frozen=True, slots=True)
class UpstreamState:
    """One model's state as /health and /metrics show it."""

    model: str
    state: State
    recent_failures: int
    until: float | None  # wall-clock (epoch seconds) end of the cooldown, while cooling down

    def public(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "recent_failures": self.recent_failures,
            "until": None if self.until is None else round(self.until, 3),
        }


class Health:
    """The breakers of every model that failed lately; safe to use from any thread."""

    def __init__(
        self,
        failures: int,
        window_s: float,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._breakers: dict[str, _Breaker] = {}
        self._lock = threading.Lock()

    def admit(self, model: str) -> bool:
        """Whether a request may try ``model`` now; True makes it the probe once cooled."""
        with self._lock:
            b = self._breakers.get(model)
            if b is None or b.cooling_until is None:
                return True
            if b.probing or self.clock() < b.cooling_until:
                return False
            b.probing = True
            return True

    def succeeded(self, model: str) -> None:
        with self._lock:
            self._breakers.pop(model, None)

    def failed(self, model: str) -> None:
        now = self.clock()
        with self._lock:
            b = self._breakers.setdefault(model, _Breaker())
            if b.probing:  # the probe failed: cool down again at once
                b.probing = False
                b.cooling_until = now + self.cooldown_s
                return
            b.failures.append(now)
            while b.failures and b.failures[0] <= now - self.window_s:
                b.failures.popleft()
            if len(b.failures) >= self.threshold:
                b.cooling_until = now + self.cooldown_s
                b.failures.clear()

    def abandoned(self, model: str) -> None:
        """A try that ended with neither verdict: a probe slot it held is freed."""
        with self._lock:
            b = self._breakers.get(model)
            if b is not None:
                b.probing = False

    def cooling_until(self, model: str) -> float | None:
        """The wall-clock end of ``model``'s cooldown, when it is cooling down."""
        state = self.state(model)
        return state.until if state.state == "cooling_down" else None

    def state(self, model: str) -> UpstreamState:
        with self._lock:
            b = self._breakers.get(model)
            return self._state(model, b) if b else UpstreamState(model, "ok", 0, None)

    def states(self) -> list[UpstreamState]:
        """Every model with a recent failure, by name (models not listed are ok)."""
        with self._lock:
            return [self._state(m, b) for m, b in sorted(self._breakers.items())]

    def _state(self, model: str, b: _Breaker) -> UpstreamState:
        now = self.clock()
        recent = sum(1 for t in b.failures if t > now - self.window_s)
        if b.probing:
            return UpstreamState(model, "probing", recent, None)
        if b.cooling_until is not None and now < b.cooling_until:
            until = time.time() + (b.cooling_until - now)
            return UpstreamState(model, "cooling_down", recent, until)
        return UpstreamState(model, "ok", recent, None)
