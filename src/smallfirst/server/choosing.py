"""Which model answers a request: the named one, or the router's choice for ``auto``.

``model: "auto"`` and ``auto:<policy>`` (``auto:quality=0.95``, ``auto:energy=0.3``) go to
the predictive router of the latest fitted artifact (``smallfirst router fit``), else of the
default artifact shipped in the package (fitted on the committed evaluation baseline; off
with ``default_router = false``), calibrated for that policy, over the installed models the
artifact knows. ``cascade`` and ``cascade:<policy>`` run the artifact's ``cascade:output``
strategy instead (served by :mod:`.cascading`). Without an artifact, or when none of its
models is installed, these names mean the configured default model and the route says so.
A malformed policy is the request's fault (400, param ``model``).

Every route carries the policy's calibration: the threshold, and what it achieved on the
calibration data (accuracy, the worst benchmark's share of the reference's, energy and cost
fractions) with ``feasible: false`` where the target could not be met there (a budget below
the cheapest model's own spend is served by the cheapest model).

Routers are built per policy string and the most recently used :data:`ROUTER_CACHE_SIZE`
are kept (clients choose the strings, and ``auto:quality=Q`` takes any float, so the cache
must not grow with them); deciding is pure CPU on cheap features.
A choice also says what to try when its model fails before answering: a named model's
configured ``fallbacks``; for ``auto``, the chosen model's configured fallbacks and then the
router's other candidates by its predicted quality (the default model's fallbacks when there
is no router). The chooser holds the :class:`~smallfirst.engines.health.Health` of every
model, which the fallback loop (:mod:`.fallbacks`) feeds.
This module chooses; it does not generate.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smallfirst.engines.health import Health
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import PolicyError, RoutingError
from smallfirst.settings import Settings
from smallfirst.types import Message

if TYPE_CHECKING:
    from smallfirst.routing.policy import Calibration

log = logging.getLogger(__name__)

STRATEGY = "predictive"
ROUTER_CACHE_SIZE = 16  # policies kept built; a few are in use at once, a rebuild is milliseconds


@dataclass(frozen=True, slots=True)
class Choice:
    model: str
    policy: str | None = None  # the auto policy asked for, None for a named model
    predicted_quality: float | None = None
    route: dict[str, Any] | None = None  # strategy, router, why, scores, calibration
    # a cascade: its router and candidates (cheapest first); ``model`` is the first rung
    cascade: tuple[Any, list[Any]] | None = None
    # tried in order when ``model`` fails before its first byte (see .fallbacks)
    fallbacks: tuple[str, ...] = ()
    # (id, name) of the API key that asked, for the receipt (issue #15); None without keys
    caller: tuple[str, str] | None = None


Exclude = Callable[[str], str | None]
"""Why a model may not answer this request (None: it may)."""

CASCADE = "cascade:output"  # the strategy behind model "cascade[:<policy>]"


def is_auto(name: str) -> bool:
    return name in ("auto", "cascade") or name.startswith(("auto:", "cascade:"))


def _strategy(name: str) -> tuple[str, str]:
    """(strategy, policy text) of an auto or cascade model name."""
    if name == "cascade" or name.startswith("cascade:"):
        return CASCADE, "auto" + name[len("cascade") :]
    return STRATEGY, name


class Chooser:
    def __init__(self, settings: Settings, pool: EnginePool) -> None:
        from smallfirst.routing import artifact as ra

        self.settings = settings
        self.pool = pool
        # which models are failing lately: shared by every request, shown by /health
        self.health = Health(
            settings.cooldown_failures, settings.cooldown_window_s, settings.cooldown_s
        )
        self.source: str | None = None  # where the artifact came from, for the route
        try:
            self.artifact = ra.load_latest(settings.data_dir)
            if self.artifact is not None:
                self.source = str(ra.routers_dir(settings.data_dir) / ra.LATEST)
            elif settings.default_router:
                self.artifact = ra.load_default()
                self.source = f"package:{ra.DEFAULT_RESOURCE}"
        except RoutingError as exc:
            log.warning("ignoring the router artifact: %s", exc)
            self.artifact = None
        # per policy string: its router, and the calibration record every route carries
        self._routers: OrderedDict[str, tuple[Any, dict[str, Any]]] = OrderedDict()
        if self.artifact is None:
            self.source = None
            log.info("no router artifact: 'auto' means %s", settings.default_model)
        else:
            log.info("'auto' routes with %s", self.source)

    def policies(self) -> list[str]:
        """The auto policies to advertise in /v1/models."""
        return [
            "auto",
            "auto:quality=0.95",
            "auto:quality=0.9",
            "auto:energy=0.5",
            "auto:energy=0.3",
            "cascade",
            "cascade:quality=0.95",
        ]

    def cached_policies(self) -> list[str]:
        """The policy strings whose routers are built, least recently used first."""
        return list(self._routers)

    def router_for(self, name: str) -> tuple[Any, dict[str, Any]]:
        """The router of an auto or cascade name and its calibration record, built or kept;
        :class:`~smallfirst.errors.PolicyError` for a malformed policy."""
        built = self._routers.get(name)
        if built is not None:
            self._routers.move_to_end(name)
        else:
            from smallfirst.routing.policy import parse_policy

            assert self.artifact is not None
            strategy, text = _strategy(name)
            try:
                policy = parse_policy(text)
                router = self.artifact.router(strategy, policy)
                calibration = self.artifact.calibrate(strategy, policy)
            except RoutingError as exc:
                raise _bad_policy(name, exc) from None
            if not calibration.feasible:
                # e.g. a budget below what the cheapest model alone spends: served as close
                # as it gets (everything to the cheapest), and every route says so
                log.warning("%s cannot be met on the router's calibration data", name)
            built = self._routers[name] = (router, _calibration_record(calibration))
            while len(self._routers) > ROUTER_CACHE_SIZE:
                self._routers.popitem(last=False)
        return built

    def choose(
        self, name: str, messages: Sequence[Message], exclude: Exclude | None = None
    ) -> Choice:
        """``exclude`` (an API key's models and budget) takes candidates out of ``auto``'s
        reach, each with its reason in the route; with none left, the cheapest is chosen
        and the caller's own check refuses it."""
        if not is_auto(name):
            return Choice(model=name, fallbacks=self.settings.fallbacks_for(name))
        if self.artifact is None:
            from smallfirst.routing.policy import parse_policy

            try:
                parse_policy(_strategy(name)[1])  # still refuse a malformed policy
            except RoutingError as exc:
                raise _bad_policy(name, exc) from None
            return self._default(
                name, "no router fitted yet (smallfirst router fit): the default model", exclude
            )
        from smallfirst.routing.artifact import candidates_for

        router, calibration = self.router_for(name)
        candidates = candidates_for(self.artifact, self.pool.available())
        excluded: dict[str, str] = {}
        if exclude is not None and candidates:
            excluded = {c.name: r for c in candidates if (r := exclude(c.name)) is not None}
            kept = [c for c in candidates if c.name not in excluded]
            candidates = kept or candidates[:1]
        if not candidates:
            return self._default(
                name, "none of the router's models is installed: the default model", exclude
            )
        decision = router.decide(messages, candidates)
        strategy = _strategy(name)[0]
        return Choice(
            decision.model,
            name,
            decision.predicted_quality,
            {
                "strategy": strategy,
                "router": self.source,
                "why": decision.why,
                "scores": {k: round(v, 4) for k, v in decision.scores.items()},
                "calibration": calibration,
                **({"excluded": excluded} if excluded else {}),
            },
            (router, candidates) if strategy == CASCADE else None,
            self._next_best(decision.model, decision.scores, [c.name for c in candidates]),
        )

    def _default(self, name: str, why: str, exclude: Exclude | None) -> Choice:
        """The default model, or when ``exclude`` leaves it out, the first installed model
        it does not."""
        model = self.settings.default_model
        route: dict[str, Any] = {"strategy": "default", "why": why}
        reason = exclude(model) if exclude is not None else None
        if exclude is not None and reason is not None:
            able = [m for m in self.pool.available() if exclude(m) is None]
            if able:
                route["why"] = f"{why} is excluded; the first installed model that is not"
                route["excluded"] = {model: reason}
                model = able[0]
        return Choice(model, name, None, route, fallbacks=self.settings.fallbacks_for(model))

    def _next_best(
        self, chosen: str, scores: dict[str, float], names: list[str]
    ) -> tuple[str, ...]:
        """What ``auto`` tries after ``chosen``: its configured fallbacks, then the other
        candidates, the router's likeliest to answer well first (candidate order on ties)."""
        rest = sorted(
            (n for n in names if n != chosen), key=lambda n: (-scores.get(n, 0.0), names.index(n))
        )
        ordered = [*self.settings.fallbacks_for(chosen), *rest]
        return tuple(n for i, n in enumerate(ordered) if n != chosen and n not in ordered[:i])


def _bad_policy(name: str, exc: RoutingError) -> PolicyError:
    return PolicyError(f"Invalid model policy {name!r}: {exc}", param="model")


def _calibration_record(calibration: Calibration) -> dict[str, Any]:
    """What the policy's threshold achieved on the calibration data, for the route: so a
    receipt shows whether its target could be met at all, and at what expected price."""

    def rounded(v: float | None) -> float | None:
        return None if v is None else round(v, 4)

    return {
        "threshold": rounded(calibration.threshold),
        "feasible": calibration.feasible,
        "accuracy": rounded(calibration.accuracy),
        "worst_benchmark_ratio": rounded(calibration.worst_benchmark_ratio),
        "energy_fraction": rounded(calibration.energy_fraction),
        "cost_fraction": rounded(calibration.cost_fraction),
    }
