"""The router's fitted predictors, applied to prompt features: P(correct) and joules.

:class:`LogisticModel` is P(correct | prompt) for one model:
``p = sigmoid(((x - mean) / scale) @ weights + bias)``, on features standardised with the
training data's mean and standard deviation (kept in the model, so prediction sees exactly
what training saw). The predictive router weighs it per candidate; the cascade's answer
verifiers are the same kind of model on prompt and answer features.

:class:`SpendModel` is how much energy a model will spend on a prompt:
``joules = exp(((x - mean) / scale) @ weights + bias)``, a regression of ``log(joules)``
(spend is multiplicative: answer length times per-token cost, and spans two orders of
magnitude). Spend differs far more between prompts than between models (a code answer is
ten times longer than a letter), so a router that charges every item a model's *average*
spend sends costly long-answer items up the ladder as readily as cheap short-answer ones;
bench/README.md has what each rule achieved on the baseline.

Both serialise to JSON with Python's ``repr`` floats, so a loaded model predicts exactly
what the saved one did. This module predicts; fitting lives in
:mod:`smallfirst.routing.training.regression`. It imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from smallfirst.errors import ArtifactError
from smallfirst.routing.features import FloatArray

__all__ = ["LogisticModel", "SpendModel", "linear_from_json", "linear_to_json", "sigmoid"]

# exp() of a wild extrapolation must stay a number: +-30 in log space is 1e13 either way
_LOG_CLIP: Final = 30.0


def sigmoid(z: FloatArray) -> FloatArray:
    # split by sign so that neither branch overflows in exp
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def linear_to_json(
    mean: FloatArray, scale: FloatArray, weights: FloatArray, bias: float
) -> dict[str, Any]:
    """The JSON of a linear function of standardised features (both predictors)."""
    # float(): numpy scalars are not JSON; repr of a Python float round-trips exactly
    return {
        "mean": [float(v) for v in mean],
        "scale": [float(v) for v in scale],
        "weights": [float(v) for v in weights],
        "bias": float(bias),
    }


def linear_from_json(data: dict[str, Any], what: str) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``mean``, ``scale`` and ``weights`` back from :func:`linear_to_json`, checked."""
    mean = np.asarray(data["mean"], dtype=np.float64)
    scale = np.asarray(data["scale"], dtype=np.float64)
    weights = np.asarray(data["weights"], dtype=np.float64)
    if not (mean.shape == scale.shape == weights.shape) or mean.ndim != 1:
        raise ArtifactError(
            f"malformed router file: {what}: mean, scale and weights must be equal-length lists"
        )
    return mean, scale, weights


def _fitted_to_json(model: LogisticModel | SpendModel) -> dict[str, Any]:
    """What both predictors store: the linear function, its penalty and training size."""
    return {
        **linear_to_json(model.mean, model.scale, model.weights, model.bias),
        "l2": float(model.l2),
        "n_train": int(model.n_train),
    }


def _fitted_from_json(data: dict[str, Any], what: str) -> dict[str, Any]:
    mean, scale, weights = linear_from_json(data, what)
    return {
        "mean": mean,
        "scale": scale,
        "weights": weights,
        "bias": float(data["bias"]),
        "l2": float(data["l2"]),
        "n_train": int(data["n_train"]),
    }


@dataclass(frozen=True, eq=False)
class LogisticModel:
    """A fitted model: ``p = sigmoid(((x - mean) / scale) @ weights + bias)``."""

    mean: FloatArray
    scale: FloatArray
    weights: FloatArray
    bias: float
    l2: float
    n_train: int
    positive_rate: float  # share of correct answers in the training data

    @property
    def n_features(self) -> int:
        return int(self.weights.shape[0])

    def logit(self, x: FloatArray) -> FloatArray:
        """Log-odds for a single vector (shape ``(d,)``) or a matrix (``(n, d)``)."""
        z = ((x - self.mean) / self.scale) @ self.weights + self.bias
        return np.asarray(z, dtype=np.float64)

    def predict(self, x: FloatArray) -> FloatArray:
        """P(correct) for each row of ``x`` (shape ``(n, d)``)."""
        return sigmoid(np.atleast_1d(self.logit(x)))

    def predict_one(self, x: FloatArray) -> float:
        """P(correct) for one vector, without numpy's array overhead on the result."""
        z = float(((x - self.mean) / self.scale) @ self.weights) + self.bias
        if z >= 0:
            return 1.0 / (1.0 + float(np.exp(-z)))
        ez = float(np.exp(z))
        return ez / (1.0 + ez)

    def to_json(self) -> dict[str, Any]:
        return {**_fitted_to_json(self), "positive_rate": float(self.positive_rate)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogisticModel:
        return cls(
            **_fitted_from_json(data, "logistic model"),
            positive_rate=float(data["positive_rate"]),
        )


@dataclass(frozen=True, eq=False)
class SpendModel:
    """``joules = exp(((x - mean) / scale) @ weights + bias)``."""

    mean: FloatArray
    scale: FloatArray
    weights: FloatArray
    bias: float
    l2: float
    n_train: int

    def predict(self, x: FloatArray) -> FloatArray:
        """Predicted joules for each row of ``x`` (shape ``(n, d)``)."""
        z = ((np.atleast_2d(x) - self.mean) / self.scale) @ self.weights + self.bias
        return np.asarray(np.exp(np.clip(z, -_LOG_CLIP, _LOG_CLIP)), dtype=np.float64)

    def predict_one(self, x: FloatArray) -> float:
        z = float(((x - self.mean) / self.scale) @ self.weights) + self.bias
        return float(np.exp(min(max(z, -_LOG_CLIP), _LOG_CLIP)))

    def to_json(self) -> dict[str, Any]:
        return _fitted_to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpendModel:
        return cls(**_fitted_from_json(data, "spend model"))
