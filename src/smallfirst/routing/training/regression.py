"""Fit the router's predictors: L2-regularised logistic regression and ridge on log joules.

:func:`fit_logistic` fits a :class:`~smallfirst.routing.predictors.LogisticModel`. The
objective is the mean log loss plus ``l2 / 2 * ||w||^2`` (the intercept is not penalised),
on standardised features. It is minimised by Nesterov-accelerated gradient descent with
step ``1 / L``, where ``L`` bounds the gradient's Lipschitz constant,
``sigma_max(X)^2 / (4 n) + l2``, with ``sigma_max`` estimated by power iteration. The
objective is strongly convex for ``l2 > 0``, so a few hundred steps reach a solution that no
longer moves the probabilities that matter.

:func:`fit_spend` fits a :class:`~smallfirst.routing.predictors.SpendModel` in closed form
per model: ridge regression of ``log(joules)`` on standardised features. Items with an
unknown or non-positive figure are left out of the fit.

Deliberately small: no solver choice, no class weights, no feature selection; numpy only,
never scikit-learn or torch. Arguments out of range raise ValueError: they are programming
errors, never a user's input.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from smallfirst.routing.features import FloatArray
from smallfirst.routing.predictors import LogisticModel, SpendModel, sigmoid

__all__ = [
    "DEFAULT_ITERATIONS",
    "DEFAULT_L2",
    "DEFAULT_SPEND_L2",
    "fit_logistic",
    "fit_spend",
    "log_loss",
]

# Weak penalties memorise the training prompts (hundreds of hashed features, a few hundred
# items per model) and give 0/1 probabilities on anything new; bench/README.md has the sweep.
DEFAULT_L2: Final = 1.0
DEFAULT_ITERATIONS: Final = 300
# strong: weak penalties give absurd spends to prompts unlike any seen (bench/README.md)
DEFAULT_SPEND_L2: Final = 100.0


def _top_singular_value_sq(x: FloatArray, iterations: int = 30) -> float:
    """Largest eigenvalue of ``x.T @ x`` by power iteration (a fixed start: deterministic)."""
    v = np.ones(x.shape[1], dtype=np.float64) / np.sqrt(x.shape[1])
    value = 0.0
    for _ in range(iterations):
        w = x.T @ (x @ v)
        value = float(np.sqrt(w @ w))
        if value == 0.0:
            return 0.0
        v = w / value
    # power iteration approaches from below: leave headroom so 1/L stays a safe step
    return 1.1 * value


def fit_logistic(
    x: FloatArray,
    y: npt.NDArray[np.bool_] | FloatArray,
    *,
    l2: float = DEFAULT_L2,
    iterations: int = DEFAULT_ITERATIONS,
) -> LogisticModel:
    """Fit P(y | x) on rows ``x`` (shape ``(n, d)``) and labels ``y`` (``n`` booleans)."""
    if x.ndim != 2 or x.shape[0] != len(y) or x.shape[0] == 0:
        raise ValueError(f"fit_logistic: need n > 0 rows matching n labels, got {x.shape}")
    if l2 <= 0:
        raise ValueError("fit_logistic: l2 must be positive (it keeps the problem well posed)")
    n, d = x.shape
    target = np.asarray(y, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    # constant columns (a cue absent from every training prompt) keep weight 0
    scale[scale < 1e-12] = 1.0
    xs = (x - mean) / scale
    rate = float(target.mean())
    # start from the base rate: with every weight at 0 the model already says the average
    clipped = min(max(rate, 1e-4), 1 - 1e-4)
    bias = float(np.log(clipped / (1 - clipped)))
    w = np.zeros(d, dtype=np.float64)
    lipschitz = _top_singular_value_sq(xs) / (4 * n) + l2
    # the intercept's own curvature is at most 1/4
    step = 1.0 / max(lipschitz, 0.25 + l2)
    w_prev, b_prev = w.copy(), bias
    for k in range(1, iterations + 1):
        momentum = (k - 1) / (k + 2)
        w_look = w + momentum * (w - w_prev)
        b_look = bias + momentum * (bias - b_prev)
        residual = sigmoid(xs @ w_look + b_look) - target
        grad_w = xs.T @ residual / n + l2 * w_look
        grad_b = float(residual.mean())
        w_prev, b_prev = w, bias
        w = w_look - step * grad_w
        bias = b_look - step * grad_b
    return LogisticModel(
        mean=mean,
        scale=scale,
        weights=w,
        bias=float(bias),
        l2=l2,
        n_train=n,
        positive_rate=rate,
    )


def log_loss(p: FloatArray, y: npt.NDArray[np.bool_] | FloatArray) -> float:
    """Mean negative log-likelihood of labels ``y`` under probabilities ``p``."""
    q = np.clip(p, 1e-12, 1 - 1e-12)
    t = np.asarray(y, dtype=np.float64)
    return float(-(t * np.log(q) + (1 - t) * np.log(1 - q)).mean())


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
