"""The backend seam's own logic: SQLite-style SQL rewritten for psycopg, URLs masked, and
which backend a database_url names."""

from __future__ import annotations

from pathlib import Path

import pytest

from smallfirst.errors import ConfigError
from smallfirst.store.backend import Backend, bools_as_ints, mask_url, to_pyformat
from smallfirst.store.database import open_backend, schema_status

pytestmark = pytest.mark.fast


def test_parameters_are_rewritten_outside_quotes_and_casts() -> None:
    sql = "SELECT a::text, '?:x 100%' FROM t WHERE b = ? AND c = :name AND d LIKE 'a%'"
    assert to_pyformat(sql) == (
        "SELECT a::text, '?:x 100%%' FROM t WHERE b = %s AND c = %(name)s AND d LIKE 'a%%'"
    )
    assert to_pyformat("SELECT 5 % 2 WHERE x = :now") == "SELECT 5 %% 2 WHERE x = %(now)s"
    assert bools_as_ints({"a": True, "b": 2, "c": None}) == {"a": 1, "b": 2, "c": None}
    assert bools_as_ints([False, 1.5]) == [0, 1.5]


def test_a_password_never_shows() -> None:
    assert mask_url("postgresql://u:p%40ss@db:5432/x?sslmode=require") == (
        "postgresql://u:***@db:5432/x?sslmode=require"
    )
    assert mask_url("postgresql://u@db/x") == "postgresql://u@db/x"
    assert mask_url("sqlite:/tmp/a.db") == "sqlite:/tmp/a.db"


def test_which_backend_a_url_names(tmp_path: Path) -> None:
    for url in (f"sqlite:{tmp_path}/a.db", f"sqlite://{tmp_path}/b.db", str(tmp_path / "c.db")):
        db = open_backend(url)
        assert db.dialect == "sqlite" and db.schema_version() == db.migrations()
        db.close()
    assert {p.name for p in tmp_path.glob("*.db")} == {"a.db", "b.db", "c.db"}
    assert schema_status(tmp_path / "none.db").version == 0  # and it made no file
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(ConfigError, match="use sqlite:PATH or postgresql://"):
        open_backend("mysql://u:secret@h/db")
    with pytest.raises(ConfigError) as refused:
        open_backend("mysql://u:secret@h/db")
    assert "secret" not in refused.value.message


def test_literals_reach_the_database_as_written(backend: Backend) -> None:
    with backend.connection() as conn:
        row = conn.execute("SELECT '50% ?:x' AS text, 7 % 4 AS mod, ? AS p", (True,)).fetchone()
        bare = conn.execute("SELECT 'a%b' AS text").fetchone()
    assert (row["text"], row["mod"], row["p"], bare["text"]) == ("50% ?:x", 3, 1, "a%b")
