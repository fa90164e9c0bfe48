"""Requests and tokens per minute counted in the database, on both backends: the window,
when a refused request would fit, corrections, and admissions raced over two connections."""

from __future__ import annotations

from pathlib import Path

import pytest

from smallfirst.store.backend import Backend
from smallfirst.store.keys import KeySpec, KeyStore
from smallfirst.store.ratelimits import Admitted, RateBook, Refusal
from tests.store.conftest import at_once

pytestmark = pytest.mark.fast


def test_requests_per_minute_slide_and_say_when_they_fit(backend: Backend, tmp_path: Path) -> None:
    key, _ = KeyStore(backend, tmp_path).create(KeySpec(name="k", rpm=3))
    book = RateBook(backend)
    for at in (100.0, 110.0, 120.0):
        assert isinstance(book.admit(key.id, 3, None, 10, now=at), Admitted)
    refused = book.admit(key.id, 3, None, 10, now=130.0)
    assert isinstance(refused, Refusal) and refused.what == "3 requests per minute"
    assert refused.wait_s == pytest.approx(30.0)  # the one of t=100 leaves at 160
    admitted = book.admit(key.id, 3, None, 10, now=160.5)
    assert isinstance(admitted, Admitted)
    usage = book.usage(key.id, now=161.0)
    assert (usage.requests, usage.tokens, usage.oldest) == (3, 30, 110.0)
    assert admitted.usage == usage  # the window as it was admitted into: the headers' figures


def test_tokens_per_minute_count_corrections(backend: Backend, tmp_path: Path) -> None:
    key, _ = KeyStore(backend, tmp_path).create(KeySpec(name="t", tpm=100))
    book = RateBook(backend)
    first = book.admit(key.id, None, 100, 60, now=10.0)
    assert isinstance(first, Admitted)
    refused = book.admit(key.id, None, 100, 60, now=20.0)
    assert isinstance(refused, Refusal) and refused.wait_s == pytest.approx(50.0)
    book.correct(first.id, 25)  # the receipt said 25 tokens, not 60
    assert isinstance(book.admit(key.id, None, 100, 60, now=21.0), Admitted)
    alone = book.admit(key.id, None, 100, 101, now=22.0)
    assert isinstance(alone, Refusal) and "alone may need 101" in alone.what


def test_admissions_raced_over_two_connections_never_pass_the_limit(
    backend: Backend, db_url: str, tmp_path: Path
) -> None:
    k = 9
    key, _ = KeyStore(backend, tmp_path).create(KeySpec(name="race", rpm=k))
    other = KeyStore(db_url, tmp_path)  # a second gateway's connection(s)
    books = [RateBook(backend), other.rates]
    got = at_once(30, lambda i: books[i % 2].admit(key.id, k, None, 1))
    other.close()
    assert sum(isinstance(g, Admitted) for g in got) == k
    assert RateBook(backend).usage(key.id).requests == k
