"""The response cache's keys and bounds: what is cacheable, what tells two requests apart,
and eviction by count, bytes and age (a fake clock; the live tests are in test_cache_hits)."""

from __future__ import annotations

import dataclasses

import pytest

from smallfirst.engines.base import GenerationRequest, Sampling, TokenLogprob
from smallfirst.server.response_cache import ResponseCache, cache_key
from smallfirst.types import Message, Usage

pytestmark = pytest.mark.fast

GREEDY = GenerationRequest(
    sampling=Sampling(temperature=0.0, max_tokens=8), messages=(Message("user", "Hello!"),)
)


def test_only_greedy_or_seeded_requests_have_a_key() -> None:
    assert cache_key("chat", "m", GREEDY) is not None
    sampled = dataclasses.replace(GREEDY, sampling=Sampling(temperature=0.7))
    assert cache_key("chat", "m", sampled) is None
    seeded = dataclasses.replace(GREEDY, sampling=Sampling(temperature=0.7, seed=3))
    assert cache_key("chat", "m", seeded) is not None


def test_everything_that_changes_the_answer_changes_the_key() -> None:
    base = cache_key("chat", "m", GREEDY)
    variants = [
        cache_key("text", "m", GREEDY),
        cache_key("chat", "auto:quality=0.9", GREEDY),
        cache_key("chat", "m", GREEDY, scope="key-1"),
        cache_key("chat", "m", dataclasses.replace(GREEDY, messages=(Message("user", "Hi"),))),
        cache_key(
            "chat", "m", dataclasses.replace(GREEDY, messages=(Message("system", "Hello!"),))
        ),
        cache_key("chat", "m", dataclasses.replace(GREEDY, echo=True)),
    ]
    for field, value in [
        ("max_tokens", 9),
        ("stop", ("\n",)),
        ("seed", 1),
        ("top_p", 0.5),
        ("presence_penalty", 0.1),
        ("frequency_penalty", 0.1),
        ("logprobs", True),
        ("top_logprobs", 2),
        ("grammar", "root ::= object"),
        ("logit_bias", ((10, 5.0),)),
        # same grammar, another response_format (a json_schema's name, say)
        ("response_format", '{"type": "json_object"}'),
    ]:
        sampling = dataclasses.replace(GREEDY.sampling, **{field: value})
        variants.append(cache_key("chat", "m", dataclasses.replace(GREEDY, sampling=sampling)))
    assert base not in variants and len(set(variants)) == len(variants)
    # streaming or not is how the answer is framed, not what it is
    assert cache_key("chat", "m", dataclasses.replace(GREEDY, stream=False)) == base


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def put(cache: ResponseCache, key: str, text: str = "an answer") -> bool:
    return cache.put(key, "m", text, "stop", Usage(3, 2), (), None)


def test_least_recently_used_goes_first_past_the_entry_bound() -> None:
    cache = ResponseCache(max_entries=2, max_bytes=1 << 20, ttl_s=60)
    put(cache, "a")
    put(cache, "b")
    assert cache.get("a") is not None  # a is now the most recently used
    put(cache, "c")
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2 and cache.evictions == 1


def test_the_byte_bound_evicts_and_refuses_what_cannot_fit() -> None:
    one = ResponseCache(max_entries=100, max_bytes=1 << 20, ttl_s=60)
    put(one, "x", "y" * 1000)
    size = one.bytes
    cache = ResponseCache(max_entries=100, max_bytes=2 * size + size // 2, ttl_s=60)
    for key in "abc":
        assert put(cache, key, "y" * 1000)
    assert len(cache) == 2 and cache.get("a") is None and cache.bytes == 2 * size
    assert not put(cache, "huge", "z" * (3 * size))
    assert cache.get("huge") is None and len(cache) == 2


def test_logprobs_count_toward_the_size() -> None:
    cache = ResponseCache(max_entries=10, max_bytes=1 << 20, ttl_s=60)
    put(cache, "plain")
    plain = cache.bytes
    token = TokenLogprob("a", -0.1, (97,))
    cache.put("with", "m", "an answer", "stop", None, (token,) * 10, None)
    assert cache.bytes - plain > plain // 2


def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache = ResponseCache(max_entries=10, max_bytes=1 << 20, ttl_s=5, clock=clock)
    put(cache, "a")
    clock.now += 4.9
    assert cache.get("a") is not None
    clock.now += 0.2
    assert cache.get("a") is None and len(cache) == 0 and cache.bytes == 0
    assert (cache.hits, cache.misses) == (1, 1)
