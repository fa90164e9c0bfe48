"""Build a router from a spec string: the registry of the strategies that run per request.

Specs (``name`` or ``name:argument``):

``fixed:<model>``
    Always that model.
``random`` / ``random:<p>``
    The reference with probability ``p`` (default 0.5), else the cheapest candidate;
    a baseline that mixes two tiers at a given rate.
``predictive`` / ``predictive:bar``
    Per-model logistic regression on prompt features. ``predictive`` weighs the predicted
    P(correct) against each candidate's energy (one weight, the threshold);
    ``predictive:bar`` takes the cheapest candidate whose P reaches the threshold.
``cascade`` / ``cascade:output``
    The cheapest model first, escalating while a confidence signal is below the calibrated
    threshold; pays for every attempt.

The tuned strategies (predictive, cascade) need a fitted router, whose threshold for the
context's policy they take. The registry sees it through :class:`Fitted`, the part of a
:class:`~smallfirst.routing.artifact.RouterArtifact` it reads, so that the artifact can
build its own routers (``RouterArtifact.router``) without the two modules importing each
other. The oracle is not here: it needs every model's stored answer to the item, so it
exists only in evaluation (:mod:`smallfirst.routing.training.oracle`).

This module maps names to constructors; the strategies' rules are in :mod:`.strategies`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Protocol

from smallfirst.errors import RoutingError
from smallfirst.routing.base import Candidate, Router
from smallfirst.routing.policy import DEFAULT_POLICY, Policy
from smallfirst.routing.predictors import LogisticModel, SpendModel
from smallfirst.routing.strategies import (
    RULES,
    SIGNALS,
    CascadeRouter,
    FixedRouter,
    PredictiveRouter,
    RandomRouter,
    Rule,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "Fitted",
    "RouterContext",
    "RouterFactory",
    "make_router",
    "strategies",
]

# what `auto` routes with, and what a fitted router builds when no strategy is named
DEFAULT_STRATEGY: Final = "predictive"


class Fitted(Protocol):
    """What the tuned strategies read from a fitted router (a ``RouterArtifact``)."""

    @property
    def candidates(self) -> tuple[Candidate, ...]: ...

    @property
    def predictive(self) -> Mapping[str, LogisticModel]: ...

    @property
    def verifiers(self) -> Mapping[str, LogisticModel]: ...

    @property
    def spend(self) -> Mapping[str, SpendModel]: ...

    def threshold(self, strategy: str, policy: Policy = DEFAULT_POLICY) -> float: ...


@dataclass(frozen=True, slots=True)
class RouterContext:
    """What a strategy may need to be built: a fitted router, a policy, a seed."""

    artifact: Fitted | None = None
    policy: Policy | None = None
    seed: int = 0


RouterFactory = Callable[[str, RouterContext], Router]


def _fitted(context: RouterContext, strategy: str) -> tuple[Fitted, float]:
    """The fitted router and its threshold for ``strategy`` at the context's policy."""
    if context.artifact is None:
        raise RoutingError(f"{strategy} needs a fitted router: run `smallfirst router fit`")
    artifact = context.artifact
    return artifact, artifact.threshold(strategy, context.policy or DEFAULT_POLICY)


def build_fixed(argument: str, context: RouterContext) -> FixedRouter:
    if not argument:
        raise RoutingError("fixed needs a model: fixed:<model>")
    return FixedRouter(argument)


def build_random(argument: str, context: RouterContext) -> RandomRouter:
    if not argument:
        return RandomRouter(seed=context.seed)
    try:
        p = float(argument)
    except ValueError:
        raise RoutingError(f"random:<p> needs a number in [0, 1], got {argument!r}") from None
    return RandomRouter(p=p, seed=context.seed)


def build_predictive(argument: str, context: RouterContext) -> PredictiveRouter:
    rule: Rule
    if argument in ("", "utility"):
        rule = "utility"
    elif argument == "bar":
        rule = "bar"
    else:
        raise RoutingError(f"predictive:<rule> takes one of {', '.join(RULES)}, got {argument!r}")
    artifact, threshold = _fitted(context, "predictive" if rule == "utility" else "predictive:bar")
    return PredictiveRouter(
        artifact.predictive,
        threshold,
        rule=rule,
        spend_models=artifact.spend or None,
        spend_scale_j=artifact.candidates[-1].energy_j_per_item,
    )


def build_cascade(argument: str, context: RouterContext) -> CascadeRouter:
    signal = argument or "prompt"
    if signal not in SIGNALS:
        raise RoutingError(f"cascade:<signal> takes one of {', '.join(SIGNALS)}, got {signal!r}")
    artifact, threshold = _fitted(context, "cascade" if signal == "prompt" else "cascade:output")
    if signal == "prompt":
        return CascadeRouter(artifact.predictive, threshold, signal="prompt")
    return CascadeRouter(artifact.verifiers, threshold, signal="output")


_STRATEGIES: Final[Mapping[str, RouterFactory]] = MappingProxyType(
    {
        "fixed": build_fixed,
        "random": build_random,
        "predictive": build_predictive,
        "cascade": build_cascade,
    }
)


def strategies() -> Mapping[str, RouterFactory]:
    """Strategy name -> constructor taking (the text after ``name:``, a context)."""
    return _STRATEGIES


def make_router(spec: str, context: RouterContext | None = None) -> Router:
    """Build the router a spec names, e.g. ``"fixed:qwen2.5-coder-0.5b-instruct"``,
    ``"random:0.3"``, ``"predictive"``, ``"predictive:bar"``, ``"cascade:output"``.

    Raises :class:`~smallfirst.errors.RoutingError` naming the known strategies when the
    name is unknown, or saying what is missing (a fitted router, a model name).
    """
    name, _, argument = spec.partition(":")
    if name == "oracle":
        raise RoutingError(
            "oracle needs every model's stored answer to the item: it exists only in "
            "evaluation (`smallfirst router eval`)"
        )
    factory = _STRATEGIES.get(name)
    if factory is None:
        raise RoutingError(
            f"unknown routing strategy {name!r}; choose one of {', '.join(sorted(_STRATEGIES))}"
        )
    return factory(argument, context or RouterContext())
