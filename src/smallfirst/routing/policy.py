"""Routing policies (``auto``, ``auto:quality=0.95``, ``auto:energy=0.3``) and calibration.

A policy is a target relative to the reference model (the largest candidate), measured on
calibration data:

``auto:quality=Q``
    keep at least ``Q`` times the reference's accuracy, as cheaply as possible
    (``0 < Q <= 1``);
``auto:energy=E`` / ``auto:cost=C``
    spend at most ``E`` times the reference's energy (``C`` times its cost), as accurately
    as possible (``0 < E <= 1``);
``auto``
    :data:`DEFAULT_POLICY`, ``quality=0.95``.

Calibration is RouteLLM's (Ong et al. 2024): sweep the router's one threshold over the
calibration data (:mod:`smallfirst.routing.training.sweep` computes the sweep, stored in
the artifact as a :class:`Sweep`) and pick the threshold that meets the target. The sweep is
ordered by threshold, and a higher threshold never routes any item to a cheaper model, so:

- quality: the *lowest* threshold at which every benchmark of the calibration data keeps
  ``Q`` x the reference's accuracy on that benchmark (the sweep's worst-benchmark ratio),
  and the whole mix does too. Per benchmark, because the data's mix of benchmarks is an
  accident: a target met only on average can be met by trading one kind of task away for
  another (bench/README.md shows it happening on the baseline), and a user whose traffic
  is mostly that kind would not get the quality asked for. A
  sweep without per-benchmark figures (one benchmark, or an artifact from before they
  existed) is calibrated on the mix alone. A stricter ``Q`` only removes
  thresholds from the feasible set, so the choice never moves down: a stricter quality
  target never chooses cheaper models on the same data. ``Q <= 1`` is always feasible
  (the highest threshold sends everything to the reference).
- energy/cost: among the thresholds up to the last one whose *running maximum* of spend is
  within the budget (a prefix of the sweep, even where spend is not monotone because a
  bigger model was terser on some item), the most accurate, ties to the lowest. A larger
  budget only extends the prefix, so the choice never moves down either. A budget below
  the all-cheapest routing is infeasible: the lowest threshold is returned, marked
  ``feasible=False``.

This module parses policies, holds the stored sweep and looks thresholds up in it; it does not
score requests or compute sweeps. A policy that cannot be parsed or met raises
:class:`~smallfirst.errors.PolicyError`, whose message is fit for an API client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal, cast, get_args

import numpy as np

from smallfirst.errors import ArtifactError, PolicyError
from smallfirst.routing.features import FloatArray

__all__ = [
    "AXES",
    "BUDGET_GRID",
    "DEFAULT_POLICY",
    "POLICY_KINDS",
    "QUALITY_GRID",
    "Axis",
    "Calibration",
    "Policy",
    "PolicyError",
    "PolicyKind",
    "Sweep",
    "calibrate",
    "calibration_grid",
    "parse_policy",
]

PolicyKind = Literal["quality", "energy", "cost"]
POLICY_KINDS: Final[tuple[str, ...]] = get_args(PolicyKind)
# the spend axes a budget policy and a sweep's fractions are measured on
Axis = Literal["energy", "cost"]
AXES: Final[tuple[Axis, ...]] = ("energy", "cost")

# Calibrated thresholds are tabulated for these targets in the artifact (for people and
# dashboards); the router itself calibrates any target exactly from the stored sweep.
QUALITY_GRID: Final[tuple[float, ...]] = tuple(round(0.50 + 0.01 * k, 2) for k in range(51))
BUDGET_GRID: Final[tuple[float, ...]] = tuple(round(0.01 * k, 2) for k in range(1, 101))

_TOLERANCE = 1e-12
_POLICY = re.compile(r"auto(?::(?P<kind>[a-z]+)=(?P<value>[^=]*))?")


@dataclass(frozen=True, slots=True)
class Policy:
    kind: PolicyKind
    target: float

    def __str__(self) -> str:
        return f"auto:{self.kind}={self.target:g}"


DEFAULT_POLICY: Final = Policy("quality", 0.95)


def parse_policy(text: str) -> Policy:
    """``auto`` | ``auto:quality=Q`` | ``auto:energy=E`` | ``auto:cost=C``.

    Raises :class:`PolicyError` with a message fit for an API client (the server answers
    400).
    """
    match = _POLICY.fullmatch(text.strip())
    usage = "use auto, auto:quality=Q, auto:energy=E or auto:cost=C with a number in (0, 1]"
    if match is None:
        raise PolicyError(f"invalid routing policy {text!r}: {usage}")
    if match["kind"] is None:
        return DEFAULT_POLICY
    kind = match["kind"]
    if kind not in POLICY_KINDS:
        raise PolicyError(f"invalid routing policy {text!r}: unknown target {kind!r}; {usage}")
    try:
        value = float(match["value"])
    except ValueError:
        raise PolicyError(
            f"invalid routing policy {text!r}: {match['value']!r} is not a number; {usage}"
        ) from None
    if not 0 < value <= 1:  # also rejects NaN
        what = "share of the reference's accuracy" if kind == "quality" else "budget"
        raise PolicyError(
            f"invalid routing policy {text!r}: the {what} must be in (0, 1], got {value:g}"
        )
    return Policy(cast(PolicyKind, kind), value)


@dataclass(frozen=True, eq=False)
class Sweep:
    """Accuracy, spend and model shares of one router at each of ``K`` thresholds: the
    calibration curve an artifact stores per tuned strategy (computed offline by
    :func:`smallfirst.routing.training.sweep.sweep`).

    Fractions are relative to the reference model (the last column) on the same items;
    ``None`` where the table has no usable values on that axis.
    """

    thresholds: FloatArray  # (K,), ascending
    accuracy: FloatArray  # (K,)
    energy_fraction: FloatArray | None  # (K,)
    cost_fraction: FloatArray | None  # (K,)
    shares: FloatArray  # (K, m): share of items answered (finally) by each model
    reference_accuracy: float
    cumulative: bool
    # (K,): min over benchmarks of routed / reference accuracy; None for one benchmark
    worst_benchmark_ratio: FloatArray | None = None

    def fraction(self, axis: Axis) -> FloatArray | None:
        return self.energy_fraction if axis == "energy" else self.cost_fraction

    def __len__(self) -> int:
        return len(self.thresholds)

    def to_json(self) -> dict[str, Any]:
        def floats(a: FloatArray | None) -> list[float] | None:
            return None if a is None else [float(v) for v in a]

        return {
            "thresholds": floats(self.thresholds),
            "accuracy": floats(self.accuracy),
            "energy_fraction": floats(self.energy_fraction),
            "cost_fraction": floats(self.cost_fraction),
            "shares": [[float(v) for v in row] for row in self.shares],
            "reference_accuracy": float(self.reference_accuracy),
            "cumulative": self.cumulative,
            "worst_benchmark_ratio": floats(self.worst_benchmark_ratio),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sweep:
        def array(key: str) -> FloatArray | None:
            value = data.get(key)
            return None if value is None else np.asarray(value, dtype=np.float64)

        thresholds = np.asarray(data["thresholds"], dtype=np.float64)
        accuracy = np.asarray(data["accuracy"], dtype=np.float64)
        if thresholds.shape != accuracy.shape or thresholds.ndim != 1 or not len(thresholds):
            raise ArtifactError(
                "malformed router file: a sweep's thresholds and accuracy must be "
                "equal-length and non-empty"
            )
        if np.any(np.diff(thresholds) < 0):
            raise ArtifactError("malformed router file: a sweep's thresholds must be ascending")
        return cls(
            thresholds=thresholds,
            accuracy=accuracy,
            energy_fraction=array("energy_fraction"),
            cost_fraction=array("cost_fraction"),
            shares=np.asarray(data["shares"], dtype=np.float64),
            reference_accuracy=float(data["reference_accuracy"]),
            cumulative=bool(data["cumulative"]),
            # absent from artifacts written before it existed: calibrate on the mix then
            worst_benchmark_ratio=array("worst_benchmark_ratio"),
        )


@dataclass(frozen=True, slots=True)
class Calibration:
    """The threshold chosen for a policy, and what it achieved on the calibration data."""

    policy: Policy
    threshold: float
    index: int  # position in the sweep
    accuracy: float
    energy_fraction: float | None
    cost_fraction: float | None
    feasible: bool
    worst_benchmark_ratio: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": str(self.policy),
            "kind": self.policy.kind,
            "target": self.policy.target,
            "threshold": self.threshold,
            "accuracy": self.accuracy,
            "energy_fraction": self.energy_fraction,
            "cost_fraction": self.cost_fraction,
            "feasible": self.feasible,
            "worst_benchmark_ratio": self.worst_benchmark_ratio,
        }


def _at(values: np.ndarray[Any, Any] | None, k: int) -> float | None:
    return None if values is None else float(values[k])


def calibrate(curve: Sweep, policy: Policy) -> Calibration:
    """The threshold of ``curve`` that meets ``policy`` (see the module docstring)."""
    if policy.kind == "quality":
        bar = policy.target * curve.reference_accuracy - _TOLERANCE
        meets = curve.accuracy >= bar
        if curve.worst_benchmark_ratio is not None:
            meets &= curve.worst_benchmark_ratio >= policy.target - _TOLERANCE
        feasible_at = np.flatnonzero(meets)
        # the highest threshold is the all-reference routing, feasible for any target <= 1
        k = int(feasible_at[0]) if len(feasible_at) else len(curve) - 1
        feasible = bool(len(feasible_at))
    else:
        spend = curve.fraction(policy.kind)
        if spend is None:
            raise PolicyError(
                f"cannot calibrate {policy}: the calibration data has no {policy.kind} figures"
            )
        within = np.maximum.accumulate(spend) <= policy.target + _TOLERANCE
        # a prefix of the sweep, because the running maximum is non-decreasing
        prefix = int(within.sum())
        feasible = prefix > 0
        k = int(np.argmax(curve.accuracy[:prefix])) if feasible else 0
    return Calibration(
        policy=policy,
        threshold=float(curve.thresholds[k]),
        index=k,
        accuracy=float(curve.accuracy[k]),
        energy_fraction=_at(curve.energy_fraction, k),
        cost_fraction=_at(curve.cost_fraction, k),
        feasible=feasible,
        worst_benchmark_ratio=_at(curve.worst_benchmark_ratio, k),
    )


def calibration_grid(curve: Sweep) -> list[Calibration]:
    """Calibrations for :data:`QUALITY_GRID` and, where the axis is known, :data:`BUDGET_GRID`."""
    out = [calibrate(curve, Policy("quality", q)) for q in QUALITY_GRID]
    for kind in ("energy", "cost"):
        if curve.fraction(kind) is not None:
            out += [calibrate(curve, Policy(kind, b)) for b in BUDGET_GRID]
    return out
