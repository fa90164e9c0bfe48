"""How much energy a model will spend on a prompt, predicted from the prompt's features.

The predictive router weighs P(correct) against spend. Spend differs far more between
prompts than between models: on the committed baseline a HumanEval item cost SmolLM2-135M
about 90 J while an ARC question cost Qwen-1.5B about 45 J, because a code answer is ten
times longer than a letter. A router that charges every item a model's *average* spend sends
costly long-answer items up the ladder as readily as cheap short-answer ones; on the mixed
baseline (HumanEval, ARC, part of GSM8K) that rule did worse than random on held-out items
(APGR 0.45-0.48 where random is 0.5), and charging each item its predicted spend gave about
0.7 on the same split.

:class:`SpendModel` is a ridge regression of ``log(joules)`` on standardised prompt features,
fitted in closed form per model: a log because spend is multiplicative (answer length times
per-token cost) and spans two orders of magnitude. Predictions are ``exp`` of the fit, so
always positive. Items with an unknown or non-positive figure are left out of the fit.

This module fits and predicts spend; it does not route.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from smallfirst.routing.logistic import linear_from_json, linear_to_json

FloatArray = npt.NDArray[np.float64]

# held-out APGR on the baseline: 0.681 at 1, 0.691 at 10, 0.705 at 100, 0.700 at 1000; weak
# penalties also gave absurd spends to prompts unlike any seen (small talk above GSM8K)
DEFAULT_SPEND_L2: Final = 100.0
# exp() of a wild extrapolation must stay a number: +-30 in log space is 1e13 either way
_LOG_CLIP: Final = 30.0


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
        return {
            **linear_to_json(self.mean, self.scale, self.weights, self.bias),
            "l2": float(self.l2),
            "n_train": int(self.n_train),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpendModel:
        mean, scale, weights = linear_from_json(data, "spend model")
        return cls(
            mean=mean,
            scale=scale,
            weights=weights,
            bias=float(data["bias"]),
            l2=float(data["l2"]),
            n_train=int(data["n_train"]),
        )


def fit_spend(
    x: FloatArray, joules: FloatArray, *, l2: float = DEFAULT_SPEND_L2
) -> SpendModel | None:
    """Ridge fit of ``log(joules)`` on ``x``; ``None`` when no row has a positive figure."""
    if l2 <= 0:
        raise ValueError("fit_spend: l2 must be positive")
    known = np.isfinite(joules) & (joules > 0)
    if not known.any():
        return None
    xs, y = x[known], np.log(joules[known])
    mean = xs.mean(axis=0)
    scale = xs.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a constant feature: weight stays ~0
    z = (xs - mean) / scale
    bias = float(y.mean())
    # centred target and features: the bias is the mean, the ridge acts on weights only
    weights = np.linalg.solve(z.T @ z + l2 * np.eye(z.shape[1]), z.T @ (y - bias))
    return SpendModel(mean, scale, np.asarray(weights, np.float64), bias, l2, int(known.sum()))
