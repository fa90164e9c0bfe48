"""Seeded train/held-out splits and cross-validation folds of a routing table.

Splits (:func:`split`, :func:`group_folds`) are seeded, stratified by benchmark, and grouped
by ``prompt_hash``: identical prompts (MMLU repeats some questions under different ids) are
always on the same side, so a held-out score never rewards memorising a training prompt.
Each benchmark's groups are shuffled by a generator keyed on the benchmark's name, so adding
a benchmark leaves the others' splits unchanged.

This module only chooses rows; it reads no results and fits nothing.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smallfirst.errors import RoutingError
from smallfirst.routing.features import IntArray
from smallfirst.routing.training.table import Table

__all__ = ["Split", "group_folds", "split"]


def _groups_by_benchmark(
    benchmarks: Sequence[str], prompt_hashes: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
    """Prompt groups per benchmark (a group belongs to the benchmark of its first row)."""
    rows_of: dict[str, list[int]] = defaultdict(list)
    owner: dict[str, str] = {}
    for i, (benchmark, digest) in enumerate(zip(benchmarks, prompt_hashes, strict=True)):
        rows_of[digest].append(i)
        owner.setdefault(digest, benchmark)
    groups: dict[str, list[str]] = defaultdict(list)
    for digest, benchmark in owner.items():
        groups[benchmark].append(digest)
    return groups, rows_of


def _shuffled(groups: list[str], seed: int, benchmark: str) -> list[str]:
    # a generator per benchmark, keyed by a stable hash of its name: adding a benchmark
    # leaves the others' splits unchanged
    rng = np.random.default_rng([seed, zlib.crc32(benchmark.encode())])
    ordered = sorted(groups)
    return [ordered[i] for i in rng.permutation(len(ordered))]


@dataclass(frozen=True, eq=False)
class Split:
    train: IntArray
    heldout: IntArray


def split(table: Table, heldout_fraction: float = 0.25, seed: int = 0) -> Split:
    """Rows for training and for held-out evaluation (stratified, grouped, seeded).

    In each benchmark, ``round(heldout_fraction * groups)`` prompt groups are held out, at
    least one and never all of them when the benchmark has two or more groups.
    """
    if not 0 < heldout_fraction < 1:
        raise RoutingError(f"the held-out fraction must be in (0, 1), got {heldout_fraction}")
    groups, rows_of = _groups_by_benchmark(table.benchmarks, table.prompt_hashes)
    held: list[int] = []
    for benchmark in sorted(groups):
        members = _shuffled(groups[benchmark], seed, benchmark)
        count = round(heldout_fraction * len(members))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        for digest in members[:count]:
            held.extend(rows_of[digest])
    mask = np.zeros(len(table), dtype=np.bool_)
    mask[np.asarray(held, dtype=np.intp)] = True
    return Split(train=np.flatnonzero(~mask), heldout=np.flatnonzero(mask))


def group_folds(table: Table, k: int, seed: int = 0) -> IntArray:
    """A fold number in ``[0, k)`` for each row: groups dealt round-robin per benchmark."""
    if k < 2:
        raise RoutingError(f"need at least 2 folds, got {k}")
    groups, rows_of = _groups_by_benchmark(table.benchmarks, table.prompt_hashes)
    fold = np.zeros(len(table), dtype=np.intp)
    for benchmark in sorted(groups):
        # a benchmark-dependent offset, so that small benchmarks do not all fill fold 0
        offset = zlib.crc32(f"{seed}/{benchmark}".encode()) % k
        for position, digest in enumerate(_shuffled(groups[benchmark], seed + 1, benchmark)):
            fold[np.asarray(rows_of[digest], dtype=np.intp)] = (position + offset) % k
    return fold
