"""The oracle: routing in hindsight, from every model's stored answer to each item.

No router can do better than one that knows which models answer an item correctly, so the
oracle bounds what routing can save. It needs the item's stored results, so it exists only
in evaluation, never per request. Items split into *solved* (some model was right) and
*unsolved* (none was); on a solved item every oracle picks the cheapest model that was right.
Where the three ceilings differ is the rest:

``oracle``
    Unsolved items go to the cheapest model (nothing is lost there, whoever answers). This is
    the literature's oracle (RouteLLM, RouterBench) and the one drawn as a curve; it spends
    least, but its saving on unsolved items is one no router can foresee: it would have to
    know in advance that even the reference will fail.
``oracle-as-reference``
    Keeps exactly the reference's right answers: an item the reference answers correctly
    goes to the cheapest model also right on it, every other item to the reference. Its
    accuracy is the reference's, item for item; its spend is the least a router can spend
    without changing a single answer the reference gets right (and without gambling on a
    smaller model where the reference fails).
``oracle-unsolved-to-reference``
    Solved items to the cheapest right model, unsolved ones to the reference: an
    accuracy above the reference's where smaller models are right on items the reference
    misses, at a spend that pays the reference for every item nobody solves.

:func:`ceilings` measures the three on a table, each with the share of its saving that a
router's point (``auto``) captures: ``(1 - router's energy) / (1 - ceiling's energy)``.
This module computes routings in hindsight; it does not sweep or draw them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import numpy as np

from smallfirst.routing.artifact import ItemKey
from smallfirst.routing.base import Candidate, Decision, check_candidates
from smallfirst.routing.features import BoolArray, IntArray
from smallfirst.routing.policy import AXES, Axis
from smallfirst.routing.training.sweep import spent
from smallfirst.routing.training.table import Table
from smallfirst.types import Message, prompt_hash

__all__ = [
    "CEILINGS",
    "Ceiling",
    "OracleRouter",
    "ceilings",
    "oracle_choice",
    "same_as_reference_choice",
    "unsolved_to_reference_choice",
]


def _cheapest_right(correct: BoolArray) -> IntArray:
    """Per item, the cheapest model that was right; -1 where none was."""
    first = np.argmax(correct, axis=1)
    return np.where(correct.any(axis=1), first, -1).astype(np.intp)


def oracle_choice(correct: BoolArray) -> IntArray:
    """``oracle``: the cheapest right model, else the cheapest model."""
    chosen = _cheapest_right(correct)
    return np.where(chosen >= 0, chosen, 0).astype(np.intp)


def same_as_reference_choice(correct: BoolArray) -> IntArray:
    """``oracle-as-reference``: where the reference is right the cheapest right model (which
    may be the reference), elsewhere the reference."""
    reference = correct.shape[1] - 1
    chosen = _cheapest_right(correct)
    return np.where(correct[:, reference], chosen, reference).astype(np.intp)


def unsolved_to_reference_choice(correct: BoolArray) -> IntArray:
    """``oracle-unsolved-to-reference``: the cheapest right model, else the reference."""
    chosen = _cheapest_right(correct)
    return np.where(chosen >= 0, chosen, correct.shape[1] - 1).astype(np.intp)


Rule = Callable[[BoolArray], IntArray]

CEILINGS: Final[Mapping[str, tuple[str, Rule]]] = MappingProxyType(
    {
        "oracle": ("cheapest right, else cheapest", oracle_choice),
        "oracle-as-reference": (
            "reference right: cheapest right, else reference",
            same_as_reference_choice,
        ),
        "oracle-unsolved-to-reference": (
            "cheapest right, else reference",
            unsolved_to_reference_choice,
        ),
    }
)


@dataclass(frozen=True, slots=True)
class Ceiling:
    """One oracle's routing of a table, and how much of its saving a router captures."""

    name: str
    rule: str
    accuracy: float
    quality_ratio: float | None  # accuracy / the reference's accuracy
    energy_fraction: float | None
    cost_fraction: float | None
    shares: dict[str, float]  # share of items answered by each model
    # (1 - router's energy fraction) / (1 - this ceiling's); None when either is unknown or
    # the ceiling saves nothing
    captured: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rule": self.rule,
            "accuracy": self.accuracy,
            "quality_ratio": self.quality_ratio,
            "energy_fraction": self.energy_fraction,
            "cost_fraction": self.cost_fraction,
            "shares": self.shares,
            "captured_by_auto": self.captured,
        }


def _fraction(table: Table, chosen: IntArray, axis: Axis) -> float | None:
    spend = table.axis(axis)
    if spend is None or spend[:, -1].sum() <= 0:
        return None
    return float(spent(chosen, spend, False).sum() / spend[:, -1].sum())


def ceilings(table: Table, router_energy_fraction: float | None) -> list[Ceiling]:
    """Every oracle of :data:`CEILINGS` on ``table``, beside a router's energy fraction."""
    n = len(table)
    reference_accuracy = float(table.correct[:, -1].mean())
    out = []
    for name, (rule, choice) in CEILINGS.items():
        chosen = choice(table.correct)
        accuracy = float(table.correct[np.arange(n), chosen].mean())
        fractions = {axis: _fraction(table, chosen, axis) for axis in AXES}
        energy = fractions["energy"]
        captured = None
        if router_energy_fraction is not None and energy is not None and energy < 1:
            captured = (1 - router_energy_fraction) / (1 - energy)
        out.append(
            Ceiling(
                name=name,
                rule=rule,
                accuracy=accuracy,
                quality_ratio=accuracy / reference_accuracy if reference_accuracy else None,
                energy_fraction=energy,
                cost_fraction=fractions["cost"],
                shares={m: float(np.mean(chosen == j)) for j, m in enumerate(table.models)},
                captured=captured,
            )
        )
    return out


@dataclass(frozen=True)
class OracleRouter:
    """The ``oracle`` as a router: knows, for every stored item, which models were right.

    Pass the item key ``(benchmark, item_id)`` to :meth:`decide`; without one it looks the
    prompt up by its hash, and for an unknown prompt it answers with the reference.
    """

    answers: Mapping[ItemKey, Mapping[str, bool]]
    by_prompt: Mapping[str, ItemKey]

    @classmethod
    def from_table(cls, table: Table) -> OracleRouter:
        answers = {
            key: dict(zip(table.models, (bool(v) for v in row), strict=True))
            for key, row in zip(table.keys, table.correct, strict=True)
        }
        by_prompt = dict(zip(table.prompt_hashes, table.keys, strict=True))
        return cls(answers=answers, by_prompt=by_prompt)

    @property
    def name(self) -> str:
        return "oracle"

    def decide(
        self,
        messages: Sequence[Message],
        candidates: Sequence[Candidate],
        item: ItemKey | None = None,
    ) -> Decision:
        check_candidates(candidates)
        key = item if item is not None else self.by_prompt.get(prompt_hash(messages))
        answers = self.answers.get(key) if key is not None else None
        if answers is None:
            reference = candidates[-1].name
            return Decision(reference, None, "oracle: unknown item, the reference answers", {})
        scores = {c.name: float(answers[c.name]) for c in candidates if c.name in answers}
        for c in candidates:
            if answers.get(c.name):
                return Decision(c.name, 1.0, f"oracle: {c.name} was right", scores)
        return Decision(candidates[0].name, 0.0, "oracle: no model was right", scores)
