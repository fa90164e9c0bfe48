"""``smallfirst db status`` and ``db migrate`` through the real command line, on both
backends: status changes nothing, migrate brings a new database up to date once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smallfirst.cli import main
from smallfirst.store.database import open_backend, schema_status
from tests.store.pg_cluster import Cluster

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
