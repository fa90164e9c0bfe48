"""Per-prompt energy models and the utility rule that charges each item its own spend."""

from __future__ import annotations

import numpy as np
import pytest

from smallfirst.routing.base import Candidate
from smallfirst.routing.features import prompt_features
from smallfirst.routing.predictors import SpendModel
from smallfirst.routing.strategies import PredictiveRouter, choose, utility_breakpoints
from smallfirst.routing.training.regression import fit_logistic, fit_spend
from smallfirst.types import Message

pytestmark = pytest.mark.fast


def test_fit_recovers_a_log_linear_spend() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    joules = np.exp(3.0 + 1.5 * x[:, 0] - 0.5 * x[:, 2])
    joules[:10] = np.nan  # unknown figures are left out
    joules[10:20] = 0.0
    model = fit_spend(x, joules, l2=1e-3)
    assert model is not None and model.n_train == 380
    new = rng.normal(size=(50, 5))
    truth = np.exp(3.0 + 1.5 * new[:, 0] - 0.5 * new[:, 2])
    assert np.allclose(model.predict(new), truth, rtol=0.02)
    assert model.predict_one(new[0]) == pytest.approx(float(model.predict(new[:1])[0]))
    back = SpendModel.from_json(model.to_json())
    assert np.array_equal(back.predict(new), model.predict(new))
    assert fit_spend(x, np.full(400, np.nan)) is None
    with pytest.raises(ValueError):
        fit_spend(x, joules, l2=0.0)


def test_utility_breakpoints_with_per_item_spend_match_the_argmax() -> None:
    rng = np.random.default_rng(5)
    p = rng.random((300, 3))
    spend = np.maximum.accumulate(rng.random((300, 3)) * [0.2, 0.6, 1.5], axis=1)
    b = utility_breakpoints(p, spend)
    for w in np.linspace(0.01, 0.99, 25):
        expected = np.argmax(w * p - (1 - w) * spend, axis=1)
        assert np.array_equal(choose(b, w), expected)
    # one row equals the same row computed alone with a 1-D spend
    assert np.allclose(b[7], utility_breakpoints(p[7:8], spend[7])[0])


def test_an_item_cheap_for_the_dearer_model_goes_up_sooner() -> None:
    # Same P(correct) for both prompts; the long-answer prompt costs far more energy on the
    # dear model, so at the same weight it stays on the cheap model while the short one moves.
    short = [Message("user", "Answer with a letter. Question: which is a gas? A. ice B. steam")]
    long = [Message("user", "Write a Python program that parses a CSV file " * 6)]
    xs = np.stack([prompt_features(short), prompt_features(long)])
    y = np.array([True, True, True, False] * 5)
    x = np.repeat(xs, 10, axis=0)
    correct = {"small": fit_logistic(x, ~y), "big": fit_logistic(x, y)}  # same P on both
    spend = {
        "small": fit_spend(x, np.repeat([10.0, 80.0], 10), l2=1e-3),
        "big": fit_spend(x, np.repeat([30.0, 400.0], 10), l2=1e-3),
    }
    assert spend["small"] is not None and spend["big"] is not None
    candidates = [Candidate("small", "XS", 45.0, None), Candidate("big", "M", 215.0, None)]
    router = PredictiveRouter(
        correct,
        0.5,
        spend_models={k: v for k, v in spend.items() if v is not None},
        spend_scale_j=215.0,
    )
    scores = router.acceptance(
        np.stack([[m.predict_one(r) for m in correct.values()] for r in xs]),
        router.spend(xs, candidates),
    )
    assert scores[0, 0] < scores[1, 0]  # the short prompt leaves the small model first
    flat = PredictiveRouter(correct, 0.5)  # no spend models: the average for every item
    assert flat.spend(xs, candidates).shape == (2,)
