"""``n`` > 1: several choices of one request as one stream of indexed chunks.

OpenAI's ``n`` asks for several answers to one prompt. An engine that can generate only
some of them at once (the one-at-a-time engine: one; the batched engine: ``parallel``)
runs them in groups, one group after another, through :func:`in_groups`: each group is
the same request with a smaller ``n`` and the seed moved on, so choice ``i`` of a seeded
request is sampled with ``seed + i`` whichever way it ran (a greedy request gives ``n``
identical choices, as OpenAI's does). Chunks are re-indexed into the whole request, and
the usage of every group is summed into the one the stream ends with (:func:`combined`).

This module only arranges choices; it generates nothing itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Callable, Iterable

from smallfirst.engines.base import Chunk, GenerationRequest, Sampling
from smallfirst.types import Usage

__all__ = ["MAX_CHOICES", "combined", "in_groups", "seeded"]

MAX_CHOICES = 8
"""The most choices one request may ask for (a 400 above it): each is a whole generation."""


def seeded(sampling: Sampling, offset: int) -> Sampling:
    """The sampling of choice ``offset``: the seed moved on by it (unseeded stays unseeded)."""
    if sampling.seed is None or offset == 0:
        return sampling
    return dataclasses.replace(sampling, seed=sampling.seed + offset)


def combined(usages: Iterable[Usage]) -> Usage:
    """The usage of several choices of one prompt: the prompt once (as the first choice read
    it, cached tokens included), the completion tokens summed, as OpenAI counts them."""
    items = list(usages)
    first = items[0]
    return Usage(
        first.prompt_tokens,
        sum(u.completion_tokens for u in items),
        cached_tokens=first.cached_tokens,
    )


async def in_groups(
    generate: Callable[[GenerationRequest], AsyncGenerator[Chunk, None]],
    request: GenerationRequest,
    group: int,
) -> AsyncGenerator[Chunk, None]:
    """``request.n`` choices, ``group`` at a time, as one stream (see the module)."""
    group = max(1, group)
    usages: list[Usage] = []
    for start in range(0, request.n, group):
        size = min(group, request.n - start)
        part = dataclasses.replace(request, n=size, sampling=seeded(request.sampling, start))
        last = start + size >= request.n
        stream = generate(part)
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    usages.append(chunk.usage)
                    usage = combined(usages) if last else None
                    chunk = dataclasses.replace(chunk, index=chunk.index + start, usage=usage)
                elif start:
                    chunk = dataclasses.replace(chunk, index=chunk.index + start)
                yield chunk
        finally:
            await stream.aclose()
