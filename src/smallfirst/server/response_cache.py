"""The exact response cache: a deterministic request asked again is answered from memory.

Only deterministic requests have a key (:func:`cache_key`): greedy (``temperature`` 0) or
seeded. The key is the SHA-256 of the canonical request: the endpoint, the model or policy
name exactly as the client wrote it (``auto:quality=0.9`` is a policy, not the model it
chose), the messages or prompt, every sampling parameter (max tokens, stop, seed, penalties,
logprobs, JSON mode), ``echo``, and an optional ``scope``. Whether the client streams is
not part of it: a streamed answer can be replayed as a body and the other way round.

``scope`` is the hook for per-key caches: once API keys exist, the caller passes the key's
id and two keys never share an answer. Today every caller passes None (one scope).

An :class:`Entry` holds the answer (text, finish reason, usage, logprobs), the model that
gave it and the receipt it was billed on (a hit's receipt names it). The cache is bounded
twice, least recently used out first: at most ``max_entries`` answers and ``max_bytes``
(an estimate of their size); and each answer lives ``ttl_s`` seconds. An answer bigger
than the whole byte budget is not kept.

It lives in memory, not in SQLite. A hit must cost microseconds, not a query; and the
receipts database stores no prompt or answer text, which a cache on disk would change.
A restart empties it. It is used from the event loop only, so it takes no lock.

Only complete answers get here: the serving step calls :meth:`ResponseCache.put` when a
request ends ``ok`` with a finish reason; errors, cancelled and cut-off streams never do.

This module keys, stores and evicts; it does not answer hits (:mod:`.cache_hits`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smallfirst.engines.base import GenerationRequest, Sampling, TokenLogprob
from smallfirst.metering.receipts import Receipt
from smallfirst.types import FinishReason, Message, Usage

__all__ = ["Entry", "ResponseCache", "cache_key", "cacheable"]

# What an entry costs beyond its text, roughly: the objects around it and its receipt.
ENTRY_OVERHEAD_BYTES = 2048
LOGPROB_BYTES = 120  # one TokenLogprob (or one of its alternatives), objects included


_SAMPLING_FIELDS = dataclasses.fields(Sampling)


def cacheable(request: GenerationRequest) -> bool:
    """Whether the answer is the same every time: greedy, or sampled with a seed. One
    choice only: an entry holds one answer (``n`` > 1 is generated every time)."""
    if request.n != 1 or request.tools is not None:
        # an entry holds text only: tool calls (with their ids) are generated every time
        return False
    return request.sampling.temperature == 0 or request.sampling.seed is not None


def cache_key(
    kind: str, model: str, request: GenerationRequest, scope: str | None = None
) -> str | None:
    """The request's key, or None when its answer may differ next time (not cacheable)."""
    if not cacheable(request):
        return None
    sampling = request.sampling
    messages = request.messages
    canonical = {
        "v": 1,
        "scope": scope,
        "kind": kind,
        "model": model,
        "messages": None if messages is None else [_turn(m) for m in messages],
        "prompt": request.prompt,
        "assistant_prefix": request.assistant_prefix,
        "echo": request.echo,
        # every field of Sampling is a plain value (or a tuple of strings): no asdict() copy
        "sampling": {f.name: getattr(sampling, f.name) for f in _SAMPLING_FIELDS},
    }
    payload = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _turn(m: Message) -> list[Any]:
    if not (m.tool_calls or m.tool_call_id):
        return [m.role, m.content]  # the keys made before tool calls existed
    return [m.role, m.content, [[c.id, c.name, c.arguments] for c in m.tool_calls], m.tool_call_id]


@dataclass(frozen=True, slots=True)
class Entry:
    """One complete answer, as it was served the first time."""

    model: str  # the model that answered
    text: str
    finish_reason: FinishReason
    usage: Usage | None
    logprobs: tuple[TokenLogprob, ...]
    receipt: Receipt | None  # what the answer was billed on (None when receipts are off)
    expires_at: float  # on the cache's clock
    size_bytes: int


def _size(text: str, logprobs: tuple[TokenLogprob, ...]) -> int:
    alternatives = sum(len(t.top) for t in logprobs)
    return (
        ENTRY_OVERHEAD_BYTES
        + len(text.encode("utf-8"))
        + LOGPROB_BYTES * (len(logprobs) + alternatives)
    )


class ResponseCache:
    """Answers by key, bounded by count, bytes and age (see the module)."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Entry | None:
        """The live entry for ``key`` (now the most recently used), or None."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= self._clock():
            self._drop(key)
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(
        self,
        key: str,
        model: str,
        text: str,
        finish_reason: FinishReason,
        usage: Usage | None,
        logprobs: tuple[TokenLogprob, ...],
        receipt: Receipt | None,
    ) -> bool:
        """Keep a complete answer; False when it is too big to keep at all."""
        size = _size(text, logprobs)
        if size > self.max_bytes:
            return False
        if key in self._entries:
            self._drop(key)
        entry = Entry(
            model=model,
            text=text,
            finish_reason=finish_reason,
            usage=usage,
            logprobs=logprobs,
            receipt=receipt,
            expires_at=self._clock() + self.ttl_s,
            size_bytes=size,
        )
        self._entries[key] = entry
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1
        return True

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size_bytes
