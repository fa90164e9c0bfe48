"""The Router contract for every strategy, and each strategy's own behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from smallfirst.errors import RoutingError
from smallfirst.routing.artifact import RouterArtifact
from smallfirst.routing.base import Candidate, Decision, Router
from smallfirst.routing.policy import Policy
from smallfirst.routing.registry import RouterContext, make_router, strategies
from smallfirst.routing.strategies import (
    CascadeRouter,
    PredictiveRouter,
    RandomRouter,
    choose,
    relative_spend,
    utility_breakpoints,
)
from smallfirst.routing.training.oracle import OracleRouter, oracle_choice
from smallfirst.routing.training.scores import predictive_scores, random_scores
from smallfirst.routing.training.table import Table
from smallfirst.types import Message
from tests.routing.synthetic import synthetic

PROMPTS = [
    (Message(role="user", content="What is 2 + 3?"),),
    (Message(role="user", content="Write a python function that sorts a list.\n```python"),),
    (
        Message(role="system", content="You are terse."),
        Message(role="user", content="integral theorem entropy manifold. " * 20),
    ),
    (Message(role="user", content=""),),
]

SPECS = [
    "fixed:small-s",
    "random",
    "random:0.3",
    "predictive",
    "predictive:bar",
    "cascade",
    "cascade:output",
]


@pytest.mark.parametrize("spec", [*SPECS, "oracle"])
def test_every_strategy_honours_the_contract(
    spec: str, artifact: RouterArtifact, table: Table
) -> None:
    router: Router
    if spec == "oracle":  # evaluation only: built from the stored results, not the registry
        router = OracleRouter.from_table(table)
    else:
        router = make_router(spec, RouterContext(artifact=artifact, seed=1))
    assert isinstance(router, Router)
    assert router.name
    candidates = list(artifact.candidates)
    names = {c.name for c in candidates}
    for messages in PROMPTS:
        for subset in (candidates, candidates[1:], candidates[-1:]):
            if spec == "fixed:small-s" and "small-s" not in {c.name for c in subset}:
                continue
            d = router.decide(messages, subset)
            assert isinstance(d, Decision)
            assert d.model in {c.name for c in subset}
            assert d.why
            assert d.predicted_quality is None or 0.0 <= d.predicted_quality <= 1.0
            assert set(d.scores) <= names
            assert all(np.isfinite(v) for v in d.scores.values())
            # deterministic: the same request gets the same answer
            assert router.decide(messages, subset) == d
    with pytest.raises(RoutingError):
        router.decide(PROMPTS[0], [])


def test_registry_knows_the_strategies_and_refuses_others(artifact: RouterArtifact) -> None:
    assert set(strategies()) == {"fixed", "random", "predictive", "cascade"}
    with pytest.raises(RoutingError, match="unknown routing strategy"):
        make_router("smartest")
    with pytest.raises(RoutingError, match="only in evaluation"):
        make_router("oracle", RouterContext(artifact=artifact))
    for bad in ("fixed", "random:x", "random:2", "predictive", "cascade:vibes"):
        with pytest.raises(RoutingError):
            make_router(bad, RouterContext(artifact=artifact if ":" in bad else None))
    with pytest.raises(RoutingError, match="not a candidate"):
        make_router("fixed:nope").decide(PROMPTS[0], list(artifact.candidates))
    dup = [artifact.candidates[0], artifact.candidates[0]]
    with pytest.raises(RoutingError, match="unique"):
        make_router("random").decide(PROMPTS[0], dup)


def test_random_mixes_tiers_at_the_rate(artifact: RouterArtifact) -> None:
    candidates = list(artifact.candidates)
    prompts = [(Message(role="user", content=f"question {i}"),) for i in range(4000)]
    for p in (0.0, 0.3, 1.0):
        router = RandomRouter(p=p, seed=7)
        picks = [router.decide(m, candidates).model for m in prompts]
        assert set(picks) <= {candidates[0].name, candidates[-1].name}
        share = picks.count(candidates[-1].name) / len(picks)
        assert share == pytest.approx(p, abs=0.03)


def test_random_offline_matches_online(artifact: RouterArtifact, table: Table) -> None:
    router = RandomRouter(p=0.4, seed=3)
    chosen = choose(random_scores(router, table), router.p)
    # the table's prompts are not at hand here, but the rule is: draw < p -> the reference
    assert set(np.unique(chosen).tolist()) <= {0, 2}
    assert np.mean(chosen == 2) == pytest.approx(0.4, abs=0.07)


@pytest.mark.fast
def test_oracle_takes_an_item_key_or_the_prompt(table: Table) -> None:
    oracle = OracleRouter.from_table(table)
    candidates = [Candidate(m, "?", None, None) for m in table.models]
    choice = oracle_choice(table.correct)
    for row in range(20):
        key = table.keys[row]
        d = oracle.decide(PROMPTS[0], candidates, item=key)
        assert d.model == table.models[choice[row]]
        right = table.correct[row]
        if right.any():
            assert right[choice[row]] and not right[: choice[row]].any()
        else:
            assert d.model == table.models[0]
    unknown = oracle.decide(PROMPTS[0], candidates)
    assert unknown.model == table.models[-1] and "unknown" in unknown.why


def test_predictive_decide_agrees_with_the_offline_rule(
    artifact: RouterArtifact, heldout: Table
) -> None:
    """What the server will do per request is exactly what calibration measured offline."""
    _, prompts = synthetic(600, seed=0)  # the prompts behind the session's table
    candidates = list(artifact.candidates)
    for rule in ("utility", "bar"):
        router = PredictiveRouter(artifact.predictive, 0.0, rule=rule)  # type: ignore[arg-type]
        scores = predictive_scores(router, heldout, candidates)
        for threshold in (0.0, 0.2, 0.5, 0.8, 1.0, 1.5):
            chosen = choose(scores, threshold)
            online = router.with_threshold(threshold)
            for i, key in enumerate(heldout.keys):
                d = online.decide(prompts[key], candidates)
                assert d.model == heldout.models[chosen[i]]


def test_predictive_decide_end_to_end(artifact: RouterArtifact) -> None:
    candidates = list(artifact.candidates)
    cheap = PredictiveRouter(artifact.predictive, 0.0)
    dear = PredictiveRouter(artifact.predictive, 2.0)
    for messages in PROMPTS:
        assert cheap.decide(messages, candidates).model == candidates[0].name
        assert dear.decide(messages, candidates).model == candidates[-1].name
        d = PredictiveRouter(artifact.predictive, 0.7).decide(messages, candidates)
        assert set(d.scores) == {c.name for c in candidates}
        assert d.predicted_quality == d.scores[d.model]
    # an easy prompt goes cheaper than a hard one at the same threshold
    router = PredictiveRouter(artifact.predictive, 0.6)
    easy = (Message(role="user", content="Explain: cat sun."),)
    hard = (Message(role="user", content="Explain: " + "integral theorem entropy. " * 8),)
    order = [c.name for c in candidates]
    assert order.index(router.decide(easy, candidates).model) <= order.index(
        router.decide(hard, candidates).model
    )


@pytest.mark.fast
def test_utility_breakpoints_match_the_argmax() -> None:
    rng = np.random.default_rng(5)
    p = rng.random((500, 4))
    spend = np.asarray([0.05, 0.2, 0.5, 1.0])
    b = utility_breakpoints(p, spend)
    assert np.all(np.diff(b, axis=1) >= 0)
    for w in np.linspace(0.01, 0.99, 37):
        utility = w * p - (1 - w) * spend
        expected = np.argmax(utility, axis=1)  # ties to the first: the cheaper
        assert np.array_equal(choose(b, w), expected)
    assert np.all(choose(b, 1.0 + 1e-9) == 3)
    assert np.all(choose(b, 0.0) == 0)


@pytest.mark.fast
def test_relative_spend_fallbacks() -> None:
    def c(e: float | None, d: float | None) -> Candidate:
        return Candidate("m", "?", e, d)

    assert relative_spend([c(10, None), c(100, None)]).tolist() == [0.1, 1.0]
    assert relative_spend([c(None, 1), c(5, 4)]).tolist() == [0.25, 1.0]
    assert relative_spend([c(None, None), c(None, None)]).tolist() == [0.5, 1.0]
    assert relative_spend([c(50, None), c(10, None), c(100, None)]).tolist() == [0.5, 0.5, 1.0]


def test_cascade_escalates_below_the_threshold(artifact: RouterArtifact) -> None:
    candidates = list(artifact.candidates)
    names = [c.name for c in candidates]
    messages = PROMPTS[0]
    router = CascadeRouter(artifact.verifiers, 0.5, signal="output")
    assert router.decide(messages, candidates).model == names[0]
    # a degenerate answer is not trusted, a well-formed one more so
    bad = router.confidence(messages, names[0], "blah " * 30)
    good = router.confidence(messages, names[0], "The answer is: 4.")
    assert good > bad
    strict = router.with_threshold(1.5)
    nxt = strict.escalate(messages, candidates, names[0], "The answer is: 4.")
    assert nxt is not None and nxt.model == names[1]
    assert strict.escalate(messages, candidates, names[-1], "anything") is None
    assert router.with_threshold(0.0).escalate(messages, candidates, names[0], "x") is None
    with pytest.raises(RoutingError):
        router.escalate(messages, candidates, "stranger", "x")
    prompt_signal = make_router(
        "cascade", RouterContext(artifact=artifact, policy=Policy("quality", 0.9))
    )
    assert isinstance(prompt_signal, CascadeRouter) and prompt_signal.signal == "prompt"
