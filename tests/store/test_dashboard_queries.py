"""The dashboard's aggregates on both backends: buckets, the first receipt, the evaluation
fingerprint and lean results, computed in SQL."""

from __future__ import annotations

import dataclasses

import pytest

from smallfirst.store.backend import Backend
from smallfirst.store.dashboard_queries import DashboardQueries
from smallfirst.store.eval_results import EvalStore
from smallfirst.store.sqlite import SqliteStore
from tests.store.test_eval_results import _result
from tests.store.test_sqlite import receipt

pytestmark = pytest.mark.fast


def test_series_bucket_by_the_floor_of_time_and_split_by_model(backend: Backend) -> None:
    store = SqliteStore(backend)
    # created_at 1000 + i: with 10 s buckets, 1009.x is in [1000, 1010), never rounded up
    store.add_many([receipt(i, model="a" if i < 7 else "b") for i in range(12)])
    store.add(receipt(99, model="a", energy=None, method="unknown"))
    queries = DashboardQueries(backend)
    points = queries.timeseries(since=None, until=None, model=None, bucket_s=10)
    got = [(p.t, p.model, p.requests, p.tokens, p.energy_unknown) for p in points]
    assert got == [
        (1000.0, "a", 7, 105, 0),
        (1000.0, "b", 3, 45, 0),
        (1010.0, "b", 2, 30, 0),
        (1090.0, "a", 1, 15, 1),
    ]
    assert points[0].energy_j == pytest.approx(7.0) and points[-1].energy_j == 0.0
    assert queries.first_receipt_at(since=1005.0, until=None, model="b") == 1007.0
    assert queries.first_receipt_at(since=5000.0, until=None, model=None) is None


def test_the_evaluation_fingerprint_changes_with_the_results(backend: Backend) -> None:
    queries = DashboardQueries(backend)
    empty = queries.eval_fingerprint()
    assert (empty.results, empty.last_created_at, empty.correct) == (0, None, 0.0)
    store = EvalStore(backend)
    store.add(_result("1", True))
    store.add(_result("2", False))
    one = queries.eval_fingerprint("r")
    assert (one.results, one.correct, one.energy_j) == (2, 1.0, pytest.approx(3.0))
    store.add(_result("2", True))  # replaced: same count, another fingerprint
    assert queries.eval_fingerprint("r") != one
    lean = queries.eval_results("r")
    assert {r.item_id: r.correct for r in lean} == {"1": True, "2": True}
    assert all(r.output == "" for r in lean)
    full = {r.item_id: r for r in store.results("r")}
    assert dataclasses.replace(full["1"], output="", extracted=None) == next(
        r for r in lean if r.item_id == "1"
    )
