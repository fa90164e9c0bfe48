"""The batch and file stores on both backends: ownership, claiming under leases, finishing
exactly once, conditional status moves."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from smallfirst.errors import NotFoundError
from smallfirst.store.backend import Backend
from smallfirst.store.batches import BatchStore, LineRef, Tokens
from smallfirst.store.database import open_backend
from smallfirst.store.files import FileStore
from smallfirst.store.schema import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS
from tests.store.conftest import at_once

pytestmark = pytest.mark.fast


def _batch(store: BatchStore, n: int = 5, key_id: str | None = "key_a") -> str:
    store.create(
        {
            "id": "batch_1",
            "key_id": key_id,
            "endpoint": "/v1/chat/completions",
            "input_file_id": "file-x",
            "completion_window": "24h",
            "status": "in_progress",
            "created_at": 100.0,
            "expires_at": 100.0 + 86400,
        },
        [LineRef(i + 1, f"c{i + 1}", i * 10, 10) for i in range(n)],
    )
    return "batch_1"


def test_files_are_scoped_to_their_key_and_kept_on_disk(backend: Backend, tmp_path: Path) -> None:
    files = FileStore(backend, tmp_path)
    mine = files.add(b"abc\n", filename="in.jsonl", purpose="batch", key_id="key_a", lines=1)
    files.add(b"zz\n", filename="other.jsonl", purpose="batch", key_id="key_b", lines=1)
    assert files.path(mine.id).read_bytes() == b"abc\n"
    assert files.read(mine.id, "key_a") == b"abc\n"
    with pytest.raises(NotFoundError):
        files.get(mine.id, "key_b")  # someone else's file is missing, not forbidden
    assert [f.id for f in files.page("key_a")] == [mine.id]
    assert len(files.page(None)) == 2  # the open gateway sees all
    files.delete(mine.id, "key_a")
    assert not files.path(mine.id).exists()
    with pytest.raises(NotFoundError):
        files.get(mine.id, None)


def test_file_pagination_follows_creation_order(backend: Backend, tmp_path: Path) -> None:
    files = FileStore(backend, tmp_path)
    ids = [
        files.add(b"x", filename=f"{i}", purpose="batch", key_id=None, lines=1).id for i in range(5)
    ]
    page = files.page(None, limit=2)
    assert [f.id for f in page] == ids[::-1][:2]
    assert [f.id for f in files.page(None, after=page[-1].id, limit=2)] == ids[::-1][2:4]


def test_claims_never_overlap_and_expired_leases_are_retaken(backend: Backend) -> None:
    store = BatchStore(backend)
    batch = _batch(store, n=5)
    first = store.claim(batch, 3, "r1", lease_s=10, now=1000.0)
    second = store.claim(batch, 3, "r2", lease_s=10, now=1001.0)
    assert [c.line for c in first] == [1, 2, 3]
    assert [c.line for c in second] == [4, 5]
    assert store.claim(batch, 3, "r3", lease_s=10, now=1002.0) == []
    # r1 died: its leases run out and another runner takes its lines
    retaken = store.claim(batch, 5, "r3", lease_s=10, now=1011.0)
    assert [c.line for c in retaken] == [1, 2, 3]
    # the dead runner's late answer is dropped; the live claim's is kept, once
    assert not store.finish(first[0], ok=True, output={"by": "r1"}, now=1012.0)
    assert store.finish(retaken[0], ok=True, output={"by": "r3"}, now=1012.0)
    assert not store.finish(retaken[0], ok=True, output={"by": "again"}, now=1013.0)
    assert store.outputs(batch, ok=True) == ['{"by":"r3"}']
    # a finished line is never claimed again, even after every lease ran out
    later = store.claim(batch, 10, "r4", lease_s=10, now=5000.0)
    assert 1 not in [c.line for c in later]
    counts = store.counts(batch, now=5000.0)
    assert (counts.total, counts.completed, counts.failed, counts.running) == (5, 1, 0, 4)


def test_concurrent_runners_claim_each_line_once(backend: Backend) -> None:
    store = BatchStore(backend)
    batch = _batch(store, n=40)

    def runner(i: int) -> list[int]:
        got: list[int] = []
        while True:
            claimed = store.claim(batch, 3, f"r{i}", lease_s=60)
            if not claimed:
                return got
            got.extend(c.line for c in claimed)

    results = at_once(6, runner)
    lines = [line for r in results for line in r]  # type: ignore[attr-defined]
    assert sorted(lines) == list(range(1, 41))


def test_status_moves_only_from_the_statuses_named(backend: Backend) -> None:
    store = BatchStore(backend)
    batch = _batch(store, n=1, key_id=None)
    assert store.move(batch, "cancelling", since=("in_progress",), now=200.0)
    assert not store.move(batch, "finalizing", since=("in_progress",), now=201.0)
    assert store.move(batch, "cancelled", since=("cancelling",), now=202.0)
    record = store.get(batch, None)
    assert record.status == "cancelled"
    assert record.stamps["cancelling_at"] == 200.0 and record.stamps["cancelled_at"] == 202.0
    with pytest.raises(NotFoundError):
        store.get(batch, "key_other")
    assert store.active() == []


def test_unfinished_lines_fail_when_the_batch_expires(backend: Backend) -> None:
    store = BatchStore(backend)
    batch = _batch(store, n=3)
    (one,) = store.claim(batch, 1, "r1", lease_s=10, now=1000.0)
    store.finish(one, ok=True, output={"ok": 1}, now=1001.0)
    assert store.fail_unfinished(batch, lambda cid: {"expired": cid}, now=1002.0) == 2
    assert store.outputs(batch, ok=False) == ['{"expired":"c2"}', '{"expired":"c3"}']


def test_a_live_runner_renews_its_leases(backend: Backend) -> None:
    store = BatchStore(backend)
    batch = _batch(store, n=2)
    mine = store.claim(batch, 1, "r1", lease_s=10, now=1000.0)
    assert store.renew("r1", lease_s=10, now=1009.0) == 1
    # without the renewal r2 would have taken line 1 at 1015
    assert [c.line for c in store.claim(batch, 2, "r2", lease_s=10, now=1015.0)] == [2]
    assert store.finish(mine[0], ok=True, output={}, now=1016.0)
    assert store.release("r2") == 1  # a stopping runner puts its lines back
    assert [c.line for c in store.claim(batch, 2, "r3", lease_s=10, now=1017.0)] == [2]


def test_a_batch_counts_each_finished_lines_tokens_once(backend: Backend) -> None:
    store = BatchStore(backend)
    batch = _batch(store, n=3)
    assert store.get(batch, None).usage == Tokens(0, 0, 0)  # nothing finished yet
    first = store.claim(batch, 2, "r1", lease_s=10, now=1000.0)
    assert store.finish(first[0], ok=True, output={}, tokens=Tokens(10, 4, 3), now=1001.0)
    # the same line finished again (a second answer) adds nothing
    assert not store.finish(first[0], ok=True, output={}, tokens=Tokens(10, 4, 3), now=1002.0)
    # r1's lease on line 2 ran out and r2 took it: r1's late answer, and its tokens, dropped
    (retaken,) = store.claim(batch, 1, "r2", lease_s=10, now=1020.0)
    assert retaken.line == 2
    assert not store.finish(first[1], ok=True, output={}, tokens=Tokens(99, 0, 99), now=1021.0)
    assert store.finish(retaken, ok=True, output={}, tokens=Tokens(7, 0, 5), now=1021.0)
    (last,) = store.claim(batch, 1, "r2", lease_s=10, now=1022.0)
    assert store.finish(last, ok=False, output={}, tokens=Tokens(), now=1023.0)  # an error
    usage = store.get(batch, None).usage
    assert usage == Tokens(17, 4, 8)
    assert usage.public() == {
        "input_tokens": 17,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 8,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 25,
    }


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_expired_file_is_gone_as_an_unknown_id(backend: Backend, tmp_path: Path) -> None:
    clock = Clock(1000.0)
    files = FileStore(backend, tmp_path, clock=clock)
    brief = files.add(
        b"a\n", filename="a", purpose="batch", key_id=None, lines=1, expires_after_s=3600
    )
    kept = files.add(b"b\n", filename="b", purpose="batch", key_id=None, lines=1)
    assert brief.expires_at == 4600.0 and brief.public()["expires_at"] == 4600
    assert kept.public()["expires_at"] is None  # no lifetime asked: never expires
    clock.now = 4599.0
    assert files.read(brief.id, None) == b"a\n"
    clock.now = 4600.0
    for gone in (files.get, files.read, files.delete):
        with pytest.raises(NotFoundError):
            gone(brief.id, None)
    assert [f.id for f in files.page(None)] == [kept.id]
    assert files.path(brief.id).exists()  # gone to callers; its bytes wait for the sweep


def test_the_sweep_spares_the_input_of_an_unfinished_batch(
    backend: Backend, tmp_path: Path
) -> None:
    files = FileStore(backend, tmp_path, clock=Clock(1000.0))
    store = BatchStore(backend)
    made = [
        files.add(b"x\n", filename=f"{i}", purpose="batch", key_id=None, lines=1,
                  expires_after_s=3600 + i)
        for i in range(4)
    ]  # fmt: skip
    forever = files.add(b"y\n", filename="y", purpose="batch", key_id=None, lines=1)
    store.create(
        {"id": "batch_in", "key_id": None, "endpoint": "/v1/chat/completions",
         "input_file_id": made[0].id, "completion_window": "24h", "status": "in_progress",
         "created_at": 1000.0, "expires_at": 1000.0 + 86400},
        [LineRef(1, "c1", 0, 1)],
    )  # fmt: skip
    assert store.sweep_files(4000.0, 10) == []  # nothing expired yet
    # bounded: two a sweep, soonest expired first; the running batch's input is kept
    assert sorted(store.sweep_files(9000.0, 2)) == sorted([made[1].id, made[2].id])
    assert store.sweep_files(9000.0, 2) == [made[3].id]
    assert store.sweep_files(9000.0, 2) == []
    assert store.move("batch_in", "completed", since=("in_progress",), now=9001.0)
    assert store.sweep_files(9002.0, 2) == [made[0].id]  # its batch ended
    for record in made:
        files.discard(record.id)
        assert not files.path(record.id).exists()
    assert [f.id for f in files.page(None)] == [forever.id]
    files.clock = Clock(1e12)
    assert files.get(forever.id, None).id == forever.id


# a batch and a file stored by a smallfirst from before usage and expiry
_OLD_ROWS = (
    "INSERT INTO files (id, key_id, filename, purpose, bytes, created_at, lines) "
    "VALUES ('file-old', NULL, 'in.jsonl', 'batch', 3, 100.0, 1)",
    "INSERT INTO batches (id, key_id, endpoint, input_file_id, completion_window, status, "
    "created_at, expires_at) VALUES ('batch_old', NULL, '/v1/chat/completions', 'file-old', "
    "'24h', 'in_progress', 100.0, 86500.0)",
    "INSERT INTO batch_lines (batch_id, line, custom_id, byte_offset, byte_length, status) "
    "VALUES ('batch_old', 1, 'c1', 0, 3, 'pending')",
)


def _schema_before_usage_and_expiry(db_url: str) -> None:
    if db_url.startswith("sqlite:"):
        scripts = SQLITE_MIGRATIONS[:-2]
        with sqlite3.connect(db_url.removeprefix("sqlite:")) as conn:
            for script in scripts:
                conn.executescript(script)
            conn.execute(f"PRAGMA user_version={len(scripts)}")
            for row in _OLD_ROWS:
                conn.execute(row)
        return
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as pg:
        pg.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                   "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")  # fmt: skip
        for number, script in enumerate(POSTGRES_MIGRATIONS[:-2], start=1):
            pg.execute(script)
            pg.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
        for row in _OLD_ROWS:
            pg.execute(row)


def test_rows_from_before_usage_and_expiry_migrate(db_url: str, tmp_path: Path) -> None:
    _schema_before_usage_and_expiry(db_url)
    backend = open_backend(db_url)
    try:
        assert backend.schema_version() == backend.migrations()
        store, files = BatchStore(backend), FileStore(backend, tmp_path)
        old = store.get("batch_old", None)
        assert (old.usage, old.output_expires_s) == (Tokens(), None)  # counted from zero
        assert files.get("file-old", None).expires_at is None  # never expires
        (line,) = store.claim("batch_old", 1, "r1", lease_s=10, now=200.0)
        assert store.finish(line, ok=True, output={}, tokens=Tokens(3, 0, 2), now=201.0)
        assert store.get("batch_old", None).usage == Tokens(3, 0, 2)
    finally:
        backend.close()
