"""The routing contract: candidates in, one decision out.

A router sees the chat messages of a request and the candidate models, *cheapest first*
(the last candidate is the reference: the largest, most expensive model, which is also where
every router falls back when it cannot decide), and returns a :class:`Decision`: the model to
answer with, the quality it predicts for it (``None`` where it predicts nothing), a
one-line reason for logs and receipts, and its per-model scores.

Routers that can be tuned follow RouteLLM's contract (Ong et al. 2024, "RouteLLM: Learning
to Route LLMs with Preference Data"): scores per request and candidate, one threshold
calibrated on data for a policy (:mod:`.policy`), and a higher threshold never sends a
request to a cheaper model.

This module holds only the contract's types; the strategies are in :mod:`.strategies` and
the registry that builds them from a spec string in :mod:`.registry`. It imports nothing
from the rest of routing and no numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from smallfirst.errors import RoutingError
from smallfirst.types import Message

__all__ = ["Candidate", "Decision", "Router", "RoutingError", "check_candidates"]


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
