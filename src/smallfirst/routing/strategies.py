"""The routing strategies that run per request: fixed, random, predictive and cascade.

Each is an immutable object with ``name`` and ``decide(messages, candidates)`` (the
:class:`~smallfirst.routing.base.Router` contract). The tunable ones (random, predictive,
cascade) reduce to *acceptance scores*, one per request and candidate but the reference,
and one threshold: :func:`choose` routes a request to the first candidate whose running
maximum of scores reaches the threshold. Offline, :mod:`smallfirst.routing.training.scores`
computes the same scores for a whole table of evaluation results (from the same
:meth:`PredictiveRouter.acceptance` and :func:`uniform_draw`), and the sweep and the
calibration apply the same :func:`choose`; so ``decide`` does for one request exactly what
calibration measured.

predictive / predictive:bar
    For each model, a logistic regression on prompt features (:mod:`.features`,
    :mod:`.predictors`) predicting P(correct | prompt). ``predictive`` picks the candidate that
    maximises ``w * P - (1 - w) * spend`` (expected quality minus a price on energy, ``w``
    the threshold); ``predictive:bar`` the cheapest candidate whose P reaches the threshold.
    See :class:`PredictiveRouter`.

cascade
    The cheapest model answers first; its answer is accepted when a confidence signal
    reaches the threshold, otherwise the next tier is tried. Offline (what stored results
    allow) the signal is a trained scorer: with ``signal="prompt"`` (``cascade``) the
    predictive router's P(correct) for that model, with ``signal="output"``
    (``cascade:output``) a logistic regression on the prompt's features *and the model's
    answer's* (:func:`~smallfirst.routing.features.output_features`: empty, cut off,
    repeating itself, in the expected shape). Every attempt is paid for: the cost of a
    cascade is the sum over the models it tried. With the prompt signal the cascade makes
    ``predictive:bar``'s choices and also pays for the rejected attempts, so it can only
    lose to it; it becomes useful with signals that look at the answer. Online signals the
    server can add later, which stored results cannot replay: the answer's token
    log-probabilities, and verifiers such as "the code compiles" or "the JSON parses".

    Online use: :meth:`CascadeRouter.decide` names the first model to try; after it has
    answered, :meth:`CascadeRouter.escalate` says whether to accept (``None``) or which model
    to try next.

random
    The reference with probability ``p``, else the cheapest candidate. The draw is a hash
    of the seed and the prompt (:func:`~smallfirst.types.prompt_hash`), not a
    generator's state: the same prompt always goes the same way, any process agrees, and
    nothing mutable is shared between requests.

fixed
    Always one model.

The oracle, which needs every model's stored answer to the item, is evaluation only and
lives in :mod:`smallfirst.routing.training.oracle`. This module decides; it does not fit
models, score tables or run models.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from smallfirst.errors import RoutingError
from smallfirst.routing.base import Candidate, Decision, check_candidates
from smallfirst.routing.features import (
    N_OUTPUT_FEATURES,
    N_PROMPT_FEATURES,
    FloatArray,
    IntArray,
    output_features,
    prompt_features,
)
from smallfirst.routing.predictors import LogisticModel, SpendModel
from smallfirst.types import Message, prompt_hash

__all__ = [
    "RULES",
    "SIGNALS",
    "CascadeRouter",
    "FixedRouter",
    "PredictiveRouter",
    "RandomRouter",
    "Rule",
    "Signal",
    "choose",
    "relative_spend",
    "uniform_draw",
    "utility_breakpoints",
]

Signal = Literal["prompt", "output"]
SIGNALS: tuple[Signal, ...] = ("prompt", "output")


def choose(scores: FloatArray, threshold: float) -> IntArray:
    """The candidate index each row of acceptance ``scores`` (n, m - 1) is routed to at
    ``threshold``: the first ``j`` with ``max(scores[i, :j + 1]) >= threshold``, else the
    reference (``m - 1``). Non-decreasing in ``threshold`` for every row, which is what lets
    one threshold be calibrated for a policy."""
    reach = np.maximum.accumulate(scores, axis=1)
    return np.asarray((reach < threshold).sum(axis=1), dtype=np.intp)


# --- fixed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixedRouter:
    model: str

    @property
    def name(self) -> str:
        return f"fixed:{self.model}"

    def decide(self, messages: Sequence[Message], candidates: Sequence[Candidate]) -> Decision:
        check_candidates(candidates)
        if self.model not in {c.name for c in candidates}:
            raise RoutingError(
                f"fixed model {self.model!r} is not a candidate "
                f"({', '.join(c.name for c in candidates)})"
            )
        return Decision(self.model, None, f"fixed: always {self.model}", {})


# --- random -------------------------------------------------------------------------------


def uniform_draw(seed: int, digest: str) -> float:
    """A number in [0, 1) from the seed and a prompt hash: stable, stateless."""
    return zlib.crc32(f"{seed}\0{digest}".encode()) / 2**32


@dataclass(frozen=True)
class RandomRouter:
    p: float = 0.5  # probability of the reference (the larger tier)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise RoutingError(f"random: p must be in [0, 1], got {self.p}")

    @property
    def name(self) -> str:
        return f"random:{self.p:g}"

    @property
    def threshold(self) -> float:
        return self.p

    def with_threshold(self, threshold: float) -> RandomRouter:
        return replace(self, p=min(max(threshold, 0.0), 1.0))

    def decide(self, messages: Sequence[Message], candidates: Sequence[Candidate]) -> Decision:
        check_candidates(candidates)
        u = uniform_draw(self.seed, prompt_hash(messages))
        # u < p: the larger tier; training.scores.random_scores with threshold p
        chosen = candidates[-1] if u < self.p else candidates[0]
        return Decision(
            chosen.name,
            None,
            f"random: draw {u:.3f} {'<' if u < self.p else '>='} p={self.p:g}",
            {},
        )


# --- predictive ---------------------------------------------------------------------------


def _check_width(models: Mapping[str, LogisticModel], width: int, what: str) -> None:
    for name, model in models.items():
        if model.n_features != width:
            raise RoutingError(
                f"{what} model for {name} expects {model.n_features} features, "
                f"the feature spec gives {width}"
            )


Rule = Literal["utility", "bar"]
RULES: tuple[Rule, ...] = ("utility", "bar")


def relative_spend(candidates: Sequence[Candidate]) -> FloatArray:
    """Each candidate's spend per item as a fraction of the last one's, non-decreasing.

    Energy when every candidate has a figure, else cost, else evenly spaced ranks (the order
    alone). The running maximum keeps a misordered list from breaking monotonicity.
    """
    m = len(candidates)
    for values in (
        [c.energy_j_per_item for c in candidates],
        [c.cost_usd_per_item for c in candidates],
    ):
        known = [v for v in values if v is not None]
        if len(known) == m and known[-1] > 0:
            spend = np.asarray(known, dtype=np.float64) / known[-1]
            return np.maximum.accumulate(spend)
    return np.linspace(1.0 / m, 1.0, m)


def utility_breakpoints(p: FloatArray, spend: FloatArray) -> FloatArray:
    """Acceptance scores (n, m - 1) of the utility rule, for :func:`choose`.

    With weight ``w`` in [0, 1], item ``i`` goes to ``argmax_j w p[i, j] - (1 - w) s[i, j]``
    (ties to the cheaper), where ``spend`` is ``(m,)`` (the same for every item) or
    ``(n, m)`` (per item), non-decreasing along each row. Each model's utility is a line in
    ``w`` with intercept ``-s[i, j]`` and slope ``p[i, j] + s[i, j]``; a dearer model has a
    lower intercept, so once it beats a cheaper one it keeps beating it as ``w`` grows: the
    choice only moves up the ladder. ``B[i, j]`` is the weight past which item ``i`` leaves
    models ``<= j``: ``min over k > j of max over j' <= j`` of the weight where line ``k``
    overtakes line ``j'``. Capped at 1, so a threshold above 1 sends every item to the
    reference.
    """
    n, m = p.shape
    s = np.broadcast_to(spend, (n, m))
    slope = p + s
    out = np.empty((n, m - 1), dtype=np.float64)
    for j in range(m - 1):
        best = np.full(n, np.inf)
        for k in range(j + 1, m):
            worst = np.zeros(n)
            for lower in range(j + 1):
                rise = slope[:, k] - slope[:, lower]
                gap = s[:, k] - s[:, lower]  # >= 0: spend is non-decreasing
                with np.errstate(divide="ignore", invalid="ignore"):
                    overtake = np.where(rise > 0, gap / rise, np.inf)
                worst = np.maximum(worst, overtake)
            best = np.minimum(best, worst)
        out[:, j] = np.minimum(best, 1.0)
    return out


@dataclass(frozen=True)
class PredictiveRouter:
    """Per-model P(correct | prompt), and one of two rules with one threshold.

    ``utility`` (the default): the candidate that maximises ``w * P - (1 - w) * spend``,
    with ``w = threshold``; ``w`` near 0 favours the cheapest model, ``w = 1`` the likeliest
    to be right, above 1 the reference. This is "expected quality minus lambda times
    energy" with ``lambda = (1 - w) / w``. ``spend`` is each model's energy *predicted for
    this prompt* (:mod:`.spend`) over ``spend_scale_j`` (the reference's mean per item),
    when spend models are given for every candidate; else each model's average
    (:func:`relative_spend`).

    ``bar``: the cheapest candidate whose P reaches ``threshold``, else the reference.

    Both route every item monotonically in the threshold. On structured data the utility
    rule recovers far more of the gap for the same energy: it weighs how much better a
    dearer model is against how much dearer it is, where the bar only asks "good enough?".
    Candidates without a fitted model are skipped; a reference without one counts as
    always right (the conservative guess).
    """

    models: Mapping[str, LogisticModel]
    threshold: float
    rule: Rule = "utility"
    spend_models: Mapping[str, SpendModel] | None = None
    spend_scale_j: float | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise RoutingError(f"predictive rule must be one of {', '.join(RULES)}")
        _check_width(self.models, N_PROMPT_FEATURES, "predictive")

    @property
    def name(self) -> str:
        return "predictive" if self.rule == "utility" else f"predictive:{self.rule}"

    def with_threshold(self, threshold: float) -> PredictiveRouter:
        return replace(self, threshold=threshold)

    def acceptance(self, p: FloatArray, spend: FloatArray) -> FloatArray:
        """Acceptance scores (n, m - 1) from probabilities (n, m) and spend ((m,) or (n, m))."""
        if self.rule == "bar":
            return np.asarray(p[:, :-1], dtype=np.float64)
        return utility_breakpoints(p, spend)

    def spend(self, x: FloatArray, candidates: Sequence[Candidate]) -> FloatArray:
        """Relative spend of each candidate on each row of ``x``: (n, m) predicted per item,
        or (m,) averages when some candidate has no spend model."""
        models = self.spend_models or {}
        scale = self.spend_scale_j
        if scale and scale > 0 and all(c.name in models for c in candidates):
            per_item = np.stack([models[c.name].predict(x) for c in candidates], axis=1) / scale
            return np.asarray(np.maximum.accumulate(per_item, axis=1), dtype=np.float64)
        return relative_spend(candidates)

    def decide(self, messages: Sequence[Message], candidates: Sequence[Candidate]) -> Decision:
        check_candidates(candidates)
        usable = [c for c in candidates[:-1] if c.name in self.models] + [candidates[-1]]
        x = prompt_features(messages)
        scores = {
            c.name: self.models[c.name].predict_one(x) for c in usable if c.name in self.models
        }
        p = np.asarray([[scores.get(c.name, 1.0) for c in usable]], dtype=np.float64)
        accept = self.acceptance(p, self.spend(x[np.newaxis, :], usable))
        chosen = usable[int(choose(accept, self.threshold)[0])]
        if self.rule == "utility":
            why = (
                f"predictive: {chosen.name} maximises w*P(correct) - (1-w)*spend "
                f"at w={self.threshold:.3f}"
            )
        else:
            why = (
                f"predictive: {chosen.name} is the cheapest with P(correct) >= {self.threshold:.3f}"
            )
        return Decision(chosen.name, scores.get(chosen.name), why, scores)


# --- cascade ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CascadeRouter:
    """Try the cheapest first; accept an answer whose confidence >= ``threshold``."""

    models: Mapping[str, LogisticModel]
    threshold: float
    signal: Signal = "prompt"

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise RoutingError(f"cascade signal must be one of {', '.join(SIGNALS)}")
        width = N_PROMPT_FEATURES + (N_OUTPUT_FEATURES if self.signal == "output" else 0)
        _check_width(self.models, width, f"cascade ({self.signal})")

    @property
    def name(self) -> str:
        return "cascade" if self.signal == "prompt" else "cascade:output"

    def with_threshold(self, threshold: float) -> CascadeRouter:
        return replace(self, threshold=threshold)

    def _features(self, messages: Sequence[Message], output: str | None) -> FloatArray:
        x = prompt_features(messages)
        if self.signal == "output":
            x = np.concatenate([x, output_features(output or "")])
        return x

    def decide(self, messages: Sequence[Message], candidates: Sequence[Candidate]) -> Decision:
        """The first model to try: the cheapest candidate (the cascade's first rung)."""
        check_candidates(candidates)
        first = candidates[0].name
        scores: dict[str, float] = {}
        if self.signal == "prompt":
            x = prompt_features(messages)
            scores = {
                c.name: self.models[c.name].predict_one(x)
                for c in candidates
                if c.name in self.models
            }
        return Decision(
            first,
            scores.get(first),
            f"cascade: try {first} first, escalate below confidence {self.threshold:.3f}",
            scores,
        )

    def confidence(self, messages: Sequence[Message], model: str, output: str | None) -> float:
        """The signal for ``model``'s answer ``output`` (ignored with the prompt signal)."""
        scorer = self.models.get(model)
        if scorer is None:
            return 0.0  # no scorer: never trust it blindly, escalate
        return scorer.predict_one(self._features(messages, output))

    def escalate(
        self,
        messages: Sequence[Message],
        candidates: Sequence[Candidate],
        answered_by: str,
        output: str | None = None,
    ) -> Decision | None:
        """After ``answered_by`` answered ``output``: ``None`` to accept it, or the Decision
        to try the next candidate. The last candidate's answer is always accepted."""
        check_candidates(candidates)
        names = [c.name for c in candidates]
        if answered_by not in names:
            raise RoutingError(f"{answered_by!r} is not a candidate ({', '.join(names)})")
        position = names.index(answered_by)
        if position == len(names) - 1:
            return None
        confidence = self.confidence(messages, answered_by, output)
        if confidence >= self.threshold:
            return None
        following = names[position + 1]
        return Decision(
            following,
            None,
            f"cascade: {answered_by}'s confidence {confidence:.2f} < {self.threshold:.3f}, "
            f"escalating to {following}",
            {answered_by: confidence},
        )
