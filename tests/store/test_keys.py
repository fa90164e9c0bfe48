"""API keys and their budgets in the real store, on both backends (SQLite, PostgreSQL):
hashing, lifecycle, windows, and reservations that stay exact under concurrency (threads
and a second connection) and whose leases are reclaimed."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path
from typing import Any

import pytest

from smallfirst.errors import InvalidKeyError, InvalidRequestError, QuotaExceededError
from smallfirst.store.backend import Backend
from smallfirst.store.budgets import Amounts, BudgetBook
from smallfirst.store.keys import SECRET_FILE, KeySpec, KeyStore
from tests.store.conftest import at_once

pytestmark = pytest.mark.fast

TTL = 3600.0


@pytest.fixture
def keys(backend: Backend, tmp_path: Path) -> KeyStore:
    return KeyStore(backend, tmp_path)  # the backend fixture closes the database


def test_the_store_keeps_only_a_keyed_hash_and_the_server_secret_is_private(
    keys: KeyStore, backend: Backend, tmp_path: Path
) -> None:
    assert not keys.any()
    key, secret = keys.create(KeySpec(name="alice"))
    assert secret.startswith("sf-") and key.id.removeprefix("key_") in secret
    assert keys.any()
    with backend.connection() as conn:
        rows = str(conn.execute("SELECT * FROM keys").fetchall())
    db = rows.encode() + b"".join(p.read_bytes() for p in tmp_path.glob("smallfirst.db*"))
    assert "alice" in rows and key.id in rows
    assert secret.encode() not in db and secret.split("-", 2)[2].encode() not in db
    mode = stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode)
    assert mode == 0o600
    assert secret not in repr(key) and secret not in str(key.public())
    assert keys.authenticate(secret).id == key.id


def test_bad_expired_revoked_and_rotated_secrets_are_refused_saying_why(
    keys: KeyStore,
) -> None:
    _, secret = keys.create(KeySpec(name="bob", expires_at=2000.0))
    assert keys.authenticate(secret, now=1999.0).name == "bob"
    with pytest.raises(InvalidKeyError, match="expired"):
        keys.authenticate(secret, now=2001.0)
    for bad in ("", "sk-nothing", secret[:-1] + ("A" if secret[-1] != "A" else "B"), "sf-x-y"):
        with pytest.raises(InvalidKeyError, match="Incorrect API key"):
            keys.authenticate(bad, now=1999.0)
    carol, old = keys.create(KeySpec(name="carol"))
    rotated, new = keys.rotate("carol")
    assert rotated.id == carol.id and new != old
    with pytest.raises(InvalidKeyError):
        keys.authenticate(old)
    assert keys.authenticate(new).id == carol.id
    keys.revoke(carol.id)
    with pytest.raises(InvalidKeyError, match="revoked"):
        keys.authenticate(new)
    with pytest.raises(InvalidRequestError, match="already exists"):
        keys.create(KeySpec(name="carol"))


def test_model_patterns_are_globs(keys: KeyStore) -> None:
    key, _ = keys.create(KeySpec(name="m", models=("smollm2-*", "stub")))
    assert key.allows("smollm2-135m-instruct") and key.allows("stub")
    assert not key.allows("qwen2.5-coder-0.5b-instruct") and not key.allows("stub2")
    assert keys.create(KeySpec(name="any"))[0].allows("anything")


def test_windows_start_on_their_utc_boundaries() -> None:
    t = 1_764_680_400.0 + 1234.5  # 2025-12-02 13:00:00 UTC, a Tuesday, plus 20 min
    assert BudgetBook.window_start("1h", t) == 1_764_680_400.0
    assert BudgetBook.window_start("1d", t) == 1_764_633_600.0  # 2025-12-02 00:00
    assert BudgetBook.window_start("7d", t) == 1_764_547_200.0  # Monday 2025-12-01 00:00
    assert BudgetBook.window_start("total", t) == 0.0
    assert BudgetBook.resets_at("1d", t) == 1_764_633_600.0 + 86400
    assert BudgetBook.resets_at("total", t) is None


def test_a_reservation_that_does_not_fit_names_the_budget_and_the_reset(
    keys: KeyStore,
) -> None:
    key, _ = keys.create(KeySpec(name="w", budget_wh=1.0, window="1h"), now=3600.0)
    book = keys.budgets
    held = book.reserve(key, Amounts(0.0, 0.6, 0.0), TTL, now=3601.0)
    with pytest.raises(QuotaExceededError) as refused:
        book.reserve(key, Amounts(0.0, 0.6, 0.0), TTL, now=3602.0)
    message = refused.value.message
    assert "Wh budget" in message and "0.4 Wh of 1 is left" in message
    assert "resets at 1970-01-01T02:00:00" in message
    book.settle(key, held, Amounts(0.0, 0.25, 0.0), now=3603.0)
    now = keys.get("w")
    assert now.spent.wh == pytest.approx(0.25) and now.reserved.wh == pytest.approx(0.0)
    # the next hour starts from zero: a 0.9 Wh request fits again
    book.reserve(key, Amounts(0.0, 0.9, 0.0), TTL, now=7201.0)
    rolled = keys.get("w")
    assert rolled.spent.wh == 0.0 and rolled.reserved.wh == pytest.approx(0.9)
    assert BudgetBook.report(rolled, now=7202.0)["wh"]["left"] == pytest.approx(0.1)


def test_concurrent_reservations_from_threads_and_two_connections_never_overspend(
    keys: KeyStore, db_url: str, tmp_path: Path
) -> None:
    # one budget of exactly K worst cases, raced by 60 threads over two connections (on
    # PostgreSQL: two pools, as two gateway replicas would have)
    k, worst = 7, 0.1
    key, _ = keys.create(KeySpec(name="race", budget_usd=k * worst, budget_co2_g=1e9))
    other = KeyStore(db_url, tmp_path)

    def one(i: int) -> bool:
        try:
            (keys if i % 2 else other).budgets.reserve(key, Amounts(worst, 0.0, 0.001), TTL)
            return True
        except QuotaExceededError:
            return False

    won = at_once(60, one)
    other.close()
    assert won.count(True) == k and won.count(False) == 60 - k
    assert keys.get("race").reserved.usd == pytest.approx(k * worst)


def test_a_reservation_never_settled_is_given_back_after_its_time_to_live(
    keys: KeyStore,
) -> None:
    # a gateway killed mid-request: its reservation is never settled nor released
    key, _ = keys.create(KeySpec(name="crashed", budget_usd=1.0))
    book = keys.budgets
    book.reserve(key, Amounts(0.8, 0.0, 0.0), ttl_s=60.0, now=1000.0)
    with pytest.raises(QuotaExceededError):
        book.reserve(key, Amounts(0.5, 0.0, 0.0), ttl_s=60.0, now=1059.0)
    later = book.reserve(key, Amounts(0.5, 0.0, 0.0), ttl_s=60.0, now=1061.0)
    assert keys.get("crashed").reserved.usd == pytest.approx(0.5)
    book.settle(key, later, Amounts(0.1, 0.0, 0.0), now=1062.0)
    after = keys.get("crashed")
    assert after.reserved.usd == pytest.approx(0.0) and after.spent.usd == pytest.approx(0.1)
    # settling a reservation that was already given back charges it and takes nothing back
    swept = book.reserve(key, Amounts(0.2, 0.0, 0.0), ttl_s=1.0, now=2000.0)
    book.reserve(key, Amounts(0.1, 0.0, 0.0), ttl_s=60.0, now=2002.0)  # sweeps it
    book.settle(key, swept, Amounts(0.05, 0.0, 0.0), now=2003.0)
    final = keys.get("crashed")
    assert final.reserved.usd == pytest.approx(0.1) and final.spent.usd == pytest.approx(0.15)


def test_reclaim_gives_back_every_expired_lease_of_every_key_once(keys: KeyStore) -> None:
    # what a live replica runs for one that died with reservations open
    book = keys.budgets
    a, _ = keys.create(KeySpec(name="a", budget_usd=1.0))
    b, _ = keys.create(KeySpec(name="b", budget_wh=2.0))
    book.reserve(a, Amounts(0.3, 0.0, 0.0), ttl_s=10.0, now=100.0)
    book.reserve(a, Amounts(0.2, 0.0, 0.0), ttl_s=10.0, now=101.0)
    kept = book.reserve(a, Amounts(0.1, 0.0, 0.0), ttl_s=100.0, now=102.0)
    book.reserve(b, Amounts(0.0, 1.5, 0.0), ttl_s=10.0, now=103.0)
    assert book.reclaim(now=50.0) == 0  # nothing expired yet
    assert book.reclaim(now=120.0) == 2  # both keys had expired leases
    assert keys.get("a").reserved.usd == pytest.approx(0.1)
    assert keys.get("b").reserved.wh == pytest.approx(0.0)
    assert book.reclaim(now=121.0) == 0  # given back once, not twice
    book.settle(a, kept, Amounts(0.05, 0.0, 0.0), now=130.0)
    after = keys.get("a")
    assert after.reserved.usd == pytest.approx(0.0) and after.spent.usd == pytest.approx(0.05)


def _reserve_from_a_process(url: str, data_dir: str, key_id: str, tries: int, start: Any) -> int:
    """One process of the race below: its own connection(s), ``tries`` reservations."""
    store = KeyStore(url, Path(data_dir))
    key = store.get(key_id)
    start.wait()
    won = 0
    for _ in range(tries):
        try:
            store.budgets.reserve(key, Amounts(0.1, 0.0, 0.0), TTL)
            won += 1
        except QuotaExceededError:
            pass
    store.close()
    return won


def test_three_processes_on_one_database_reserve_exactly_the_budget(
    db_url: str, tmp_path: Path
) -> None:
    # three gateways' worth of processes, each its own connection (on PostgreSQL its own
    # pool), 3 x 8 reservations raced on a budget of exactly K = 11 worst cases
    k = 11
    made = KeyStore(db_url, tmp_path)
    key, _ = made.create(KeySpec(name="processes", budget_usd=k * 0.1))
    made.close()
    ctx = multiprocessing.get_context("spawn")  # no threads or pools inherited
    start = ctx.Manager().Barrier(3)
    with ctx.Pool(3) as pool:
        args = [(db_url, str(tmp_path), key.id, 8, start)] * 3
        won = pool.starmap(_reserve_from_a_process, args)
    assert sum(won) == k, won
    after = KeyStore(db_url, tmp_path)
    assert after.get(key.id).reserved.usd == pytest.approx(k * 0.1)
    after.close()
