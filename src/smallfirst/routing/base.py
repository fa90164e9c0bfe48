"""The routing contract: candidates in, one decision out, and the registry of strategies.

A router sees the chat messages of a request and the candidate models, *cheapest first*
(the last candidate is the reference: the largest, most expensive model, which is also where
every router falls back when it cannot decide), and returns a :class:`Decision`: the model to
answer with, the quality it predicts for it (``None`` where it predicts nothing), a
one-line reason for logs and receipts, and its per-model scores.

Routers that can be tuned follow RouteLLM's contract (Ong et al. 2024, "RouteLLM: Learning
to Route LLMs with Preference Data"): scores per request and candidate, one threshold
calibrated on data for a policy (:mod:`.policy`), and a higher threshold never sends a
request to a cheaper model.

Strategies (built by :func:`make_router` from a spec string; see :mod:`.strategies`):

``fixed:<model>``
    Always that model.
``random`` / ``random:<p>``
    The reference with probability ``p`` (default 0.5), else the cheapest candidate;
    a baseline that mixes two tiers at a given rate.
``oracle``
    Evaluation only: the cheapest candidate that was right on that item in the stored
    results. Needs the item's results, so it takes an item key.
``predictive`` / ``predictive:bar``
    Per-model logistic regression on prompt features. ``predictive`` weighs the predicted
    P(correct) against each candidate's energy (one weight, the threshold);
    ``predictive:bar`` takes the cheapest candidate whose P reaches the threshold.
``cascade`` / ``cascade:output``
    The cheapest model first, escalating while a confidence signal is below the calibrated
    threshold; pays for every attempt.

This module holds data types, the protocol and the registry; it imports no numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from smallfirst.errors import RoutingError
from smallfirst.types import Message

if TYPE_CHECKING:
    from smallfirst.routing.artifact import RouterArtifact
    from smallfirst.routing.data import Table
    from smallfirst.routing.policy import Policy


@dataclass(frozen=True, slots=True)
class Candidate:
    """A model a router may choose, with what one answer costs on average."""

    name: str
    tier: str
    energy_j_per_item: float | None
    cost_usd_per_item: float | None


@dataclass(frozen=True, slots=True)
class Decision:
    """Which model answers, and why.

    ``predicted_quality`` is the router's P(correct) for the chosen model, or ``None`` for
    strategies that predict nothing (fixed, random). ``scores`` maps every candidate the
    router scored to its score (a probability for predictive and cascade).
    """

    model: str
    predicted_quality: float | None
    why: str
    scores: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Router(Protocol):
    """Chooses a model for a request. Implementations are immutable and thread-safe."""

    @property
    def name(self) -> str: ...

    def decide(self, messages: Sequence[Message], candidates: Sequence[Candidate]) -> Decision: ...


def check_candidates(candidates: Sequence[Candidate]) -> None:
    """Every router's precondition: at least one candidate, names unique."""
    if not candidates:
        raise RoutingError("no candidate models to route between")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise RoutingError(f"candidate names must be unique, got {names}")


@dataclass(frozen=True, slots=True)
class RouterContext:
    """What a strategy may need to be built: a fitted artifact, a policy, stored results."""

    artifact: RouterArtifact | None = None
    policy: Policy | None = None
    table: Table | None = None  # the oracle's answer key
    seed: int = 0


RouterFactory = Callable[[str, RouterContext], Router]


def strategies() -> Mapping[str, RouterFactory]:
    """Strategy name -> constructor taking (the text after ``name:``, a context)."""
    # imported here: strategies need numpy and this module must stay light
    from smallfirst.routing import strategies as s

    return MappingProxyType(
        {
            "fixed": s.build_fixed,
            "random": s.build_random,
            "oracle": s.build_oracle,
            "predictive": s.build_predictive,
            "cascade": s.build_cascade,
        }
    )


def make_router(spec: str, context: RouterContext | None = None) -> Router:
    """Build the router a spec names, e.g. ``"fixed:qwen2.5-coder-0.5b-instruct"``,
    ``"random:0.3"``, ``"predictive"``, ``"predictive:bar"``, ``"cascade:output"``.

    Raises :class:`RoutingError` (a ValueError) naming the known strategies when the name is
    unknown, or saying what is missing (an artifact, a model name, results for the oracle).
    """
    name, _, argument = spec.partition(":")
    table = strategies()
    factory = table.get(name)
    if factory is None:
        raise RoutingError(
            f"unknown routing strategy {name!r}; choose one of {', '.join(sorted(table))}"
        )
    return factory(argument, context or RouterContext())
