"""Evaluation results on both backends (SQLite, PostgreSQL): runs, resuming, replacing, an
export's round trip, and files that are not exports."""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from smallfirst.errors import StoreError
from smallfirst.store.backend import Backend
from smallfirst.store.eval_results import EvalResult, EvalStore, read_export

pytestmark = pytest.mark.fast


def _result(item_id: str, correct: bool) -> EvalResult:
    return EvalResult(
        run_id="r",
        benchmark="gsm8k",
        item_id=item_id,
        model="m",
        subject=None,
        prompt_hash="0" * 16,
        correct=correct,
        extracted="4",
        detail=None,
        output="The answer is: 4",
        prompt_tokens=10,
        completion_tokens=5,
        duration_s=0.5,
        energy_j=1.5,
        energy_method="estimated",
        cost_usd=None,
        co2_g=None,
        created_at=1.0,
    )


def _write(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


def test_export_round_trip(tmp_path: Path, backend: Backend) -> None:
    store = EvalStore(tmp_path / "a.db")
    for r in (_result("1", True), _result("2", False)):
        store.add(r)
    assert store.export(tmp_path / "r.jsonl.gz") == 2
    store.close()
    assert read_export(tmp_path / "r.jsonl.gz") == [_result("1", True), _result("2", False)]
    other = EvalStore(backend)
    assert other.import_file(tmp_path / "r.jsonl.gz") == 2
    assert other.results("r") == [_result("1", True), _result("2", False)]
    other.close()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"not gzip at all", "cannot read"),
        (None, ":2: not an exported result"),  # a good line, then a broken one
    ],
)
def test_a_file_that_is_not_an_export_is_a_store_error(
    tmp_path: Path, backend: Backend, content: bytes | None, says: str
) -> None:
    path = tmp_path / "bad.jsonl.gz"
    if content is None:
        _write(path, [json.dumps(asdict(_result("1", True))), "{truncated"])
    else:
        path.write_bytes(content)
    with pytest.raises(StoreError, match=says):
        read_export(path)
    store = EvalStore(backend)
    with pytest.raises(StoreError, match=says):
        store.import_file(path)
    # the good line before the broken one was rolled back with it, and the store still works
    assert store.results() == []
    store.add(_result("3", True))
    assert [r.item_id for r in store.results()] == ["3"]
    store.close()


def test_a_missing_file_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot read"):
        read_export(tmp_path / "nowhere.jsonl.gz")


def test_runs_resume_and_a_rerun_replaces_its_answer(backend: Backend) -> None:
    store = EvalStore(backend)
    store.start_run("r", {"models": ["m"]})
    store.start_run("r", {"models": ["changed"]})  # a resumed run keeps its first config
    store.add(_result("1", False))
    store.add(_result("2", True))
    store.add(_result("1", True))  # the same key again: replaced, not added
    assert store.done("r", "m", "gsm8k") == {"1": "0" * 16, "2": "0" * 16}
    assert [(r.item_id, r.correct) for r in store.results("r")] == [("1", True), ("2", True)]
    assert store.runs() == [
        {"run_id": "r", "created_at": store.runs()[0]["created_at"], "config": {"models": ["m"]},
         "results": 2}
    ]  # fmt: skip
