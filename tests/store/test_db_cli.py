"""``smallfirst db status``, ``db migrate`` and ``db copy`` through the real command line,
on both backends: status changes nothing, migrate brings a new database up to date once,
copy moves a SQLite installation to PostgreSQL and a second copy adds nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smallfirst.cli import main
from smallfirst.metering.receipts import Overhead
from smallfirst.pg_cluster import Cluster
from smallfirst.store.batches import BatchStore, LineRef
from smallfirst.store.budgets import Amounts
from smallfirst.store.database import open_backend, schema_status
from smallfirst.store.eval_results import EvalStore
from smallfirst.store.files import FileStore
from smallfirst.store.keys import KeySpec, KeyStore
from smallfirst.store.sqlite import SqliteStore
from smallfirst.testing import free_port
from tests.store.conftest import fresh_database
from tests.store.test_eval_results import _result
from tests.store.test_sqlite import receipt

pytestmark = pytest.mark.fast


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_status_then_migrate_then_status(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ("--data-dir", str(tmp_path), "--database-url", db_url)
    latest = schema_status(db_url).latest
    assert latest > 0
    before = json.loads(run(capsys, "db", "status", *flags, "--json"))
    assert (before["version"], before["pending"]) == (0, latest)
    assert schema_status(db_url).version == 0  # status changed nothing
    text = run(capsys, "db", "status", *flags)
    assert f"schema 0 of {latest}, {latest} migration(s) pending" in text
    assert "smallfirst db migrate" in text
    migrated = run(capsys, "db", "migrate", *flags)
    assert f"applied {latest} migration(s)" in migrated and "up to date" in migrated
    again = json.loads(run(capsys, "db", "migrate", *flags, "--json"))
    assert (again["applied"], again["version"], again["pending"]) == (0, latest, 0)
    open_backend(db_url).close()  # a migrated database opens as it is


def test_the_url_shown_has_its_password_masked(
    pg_cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg_cluster.url().replace("postgres@", "postgres:s3cret@")  # trust: any password
    out = run(capsys, "db", "status", "--data-dir", str(tmp_path), "--database-url", url)
    assert "postgres:***@127.0.0.1" in out and "s3cret" not in out


def test_an_unknown_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="use sqlite:PATH or postgresql://"):
        main(["db", "status", "--data-dir", str(tmp_path), "--database-url", "mysql://x/y"])


def test_copy_moves_an_installation_and_a_second_run_adds_nothing(
    pg_cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "smallfirst.db"
    receipts = SqliteStore(source)
    receipts.add_many([receipt(i, model="a" if i % 2 else "b") for i in range(30)])
    receipts.add_overhead(Overhead(1000.0, "model_load", "a", 0.5, 2.0, "estimated", 0.4, 0, 0))
    receipts.close()
    keys = KeyStore(source, tmp_path)
    key, secret = keys.create(KeySpec(name="team", budget_usd=1.0))
    keys.budgets.settle(key, keys.budgets.reserve(key, Amounts(0.2, 0, 0), 60), Amounts(0.1))
    keys.budgets.reserve(key, Amounts(0.3, 0, 0), 60)  # open when the old gateway stopped
    keys.close()
    evals = EvalStore(source)
    evals.start_run("r", {"models": ["m"]})
    evals.add(_result("1", True))
    evals.close()
    db = open_backend(source)
    files = FileStore(db, tmp_path)
    files.add(b"{}\n", filename="in.jsonl", purpose="batch", key_id=None, lines=1, file_id="file-1")
    BatchStore(db).create(
        {
            "id": "batch_1", "key_id": None, "endpoint": "/v1/chat/completions",
            "input_file_id": "file-1", "completion_window": "24h", "status": "in_progress",
            "created_at": 1.0, "expires_at": 2.0,
        },
        [LineRef(1, "c1", 0, 2), LineRef(2, "c2", 3, 2)],
    )  # fmt: skip
    db.close()

    target = fresh_database(pg_cluster)
    argv = ("db", "copy", "--from", f"sqlite:{source}", "--to", target, "--json")
    first = json.loads(run(capsys, *argv))
    assert {t: c["added"] for t, c in first.items()} == {
        "receipts": 30, "overhead": 1, "eval_runs": 1, "eval_results": 1, "keys": 1,
        "files": 1, "batches": 1, "batch_lines": 2,
    }  # fmt: skip
    again = json.loads(run(capsys, *argv))  # idempotent: everything read, nothing added
    assert {c["added"] for c in again.values()} == {0} and again["receipts"]["read"] == 30

    moved, before = SqliteStore(target), SqliteStore(source)
    assert moved.get("r7") == receipt(7, model="a")
    assert moved.summary() == before.summary()
    moved.close()
    before.close()
    there = KeyStore(target, tmp_path)  # the same data directory: the same keys.secret
    assert there.authenticate(secret).name == "team"
    copied = there.get("team")
    assert copied.spent.usd == pytest.approx(0.1) and copied.reserved.usd == 0.0
    there.close()
    results = EvalStore(target)
    assert results.results("r") == [_result("1", True)]
    results.close()


def test_any_command_on_a_database_that_is_down_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql://smallfirst:hunter2@127.0.0.1:{free_port()}/smallfirst"
    monkeypatch.setenv("SMALLFIRST_DATABASE_URL", url)
    for argv in (["keys", "list"], ["usage"], ["db", "status"]):
        with pytest.raises(SystemExit) as stopped:
            main([*argv, "--data-dir", str(tmp_path)])
        message = str(stopped.value)
        assert message.startswith("smallfirst: cannot reach PostgreSQL at postgresql://"), argv
        assert "***@127.0.0.1" in message and "hunter2" not in message
