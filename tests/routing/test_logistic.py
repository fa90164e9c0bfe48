"""The numpy logistic regression: it learns a known signal, and it serialises exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smallfirst.errors import ArtifactError
from smallfirst.routing.predictors import LogisticModel, sigmoid
from smallfirst.routing.training.regression import fit_logistic, log_loss

pytestmark = pytest.mark.fast


def test_recovers_a_known_direction() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5)) * [1.0, 3.0, 0.1, 1.0, 1.0] + 10.0
    true_logit = 2.0 * (x[:, 0] - 10.0) - 1.0 * (x[:, 3] - 10.0)
    y = rng.random(2000) < sigmoid(true_logit)
    model = fit_logistic(x, y, l2=1e-3, iterations=500)
    p = model.predict(x)
    assert log_loss(p, y) < log_loss(np.full(len(y), y.mean()), y) - 0.2
    w = model.weights / model.scale  # back to raw feature units
    assert w[0] == pytest.approx(2.0, rel=0.15)
    assert w[3] == pytest.approx(-1.0, rel=0.15)
    assert abs(w[1]) < 0.1 and abs(w[4]) < 0.15


def test_one_class_and_constant_columns() -> None:
    x = np.ones((20, 3))
    model = fit_logistic(x, np.ones(20, dtype=bool))
    assert np.all(model.predict(x) > 0.99)
    assert np.all(model.weights == 0)


def test_predict_one_matches_predict_and_json_round_trip() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    model = fit_logistic(x, x[:, 0] > 0, iterations=50)
    again = LogisticModel.from_json(json.loads(json.dumps(model.to_json())))
    for row in x:
        assert model.predict_one(row) == pytest.approx(float(model.predict(row[None, :])[0]))
        assert again.predict_one(row) == model.predict_one(row)  # bit for bit


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        fit_logistic(np.zeros((0, 2)), np.zeros(0, dtype=bool))
    with pytest.raises(ValueError):
        fit_logistic(np.zeros((3, 2)), np.zeros(3, dtype=bool), l2=0)
    with pytest.raises(ArtifactError, match="malformed"):
        LogisticModel.from_json({**fit_logistic(np.eye(2), [True, False]).to_json(), "mean": [0]})


def test_sigmoid_is_stable_at_extremes() -> None:
    out = sigmoid(np.asarray([-1000.0, 0.0, 1000.0]))
    assert out.tolist() == [0.0, 0.5, 1.0]
