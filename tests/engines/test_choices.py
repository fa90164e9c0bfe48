"""The arrangement of ``n`` > 1 choices into groups (logic only; the real engines run them in
tests/engines/test_batched.py and tests/server/test_choices.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from smallfirst.engines.base import Chunk, GenerationRequest, Sampling
from smallfirst.engines.choices import combined, in_groups, seeded
from smallfirst.types import Message, Usage

pytestmark = pytest.mark.fast


def test_seeded_moves_only_a_seed_on() -> None:
    assert seeded(Sampling(seed=5), 2).seed == 7
    assert seeded(Sampling(), 2).seed is None


def test_combined_counts_the_prompt_once() -> None:
    usage = combined([Usage(10, 3, cached_tokens=4), Usage(10, 5, cached_tokens=0)])
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (10, 8, 4)


async def _collect(group: int, n: int) -> tuple[list[Chunk], list[GenerationRequest]]:
    seen: list[GenerationRequest] = []

    async def generate(req: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        seen.append(req)
        for i in range(req.n):  # each choice: a text chunk, then its finish
            yield Chunk(text=f"s{req.sampling.seed}", index=i)
        for i in range(req.n):
            last = i == req.n - 1
            usage = Usage(7, 2 * req.n) if last else None
            yield Chunk(finish_reason="stop", index=i, usage=usage)

    req = GenerationRequest(Sampling(seed=10), messages=(Message("user", "hi"),), n=n)
    return [c async for c in in_groups(generate, req, group)], seen


@pytest.mark.asyncio
async def test_groups_are_reindexed_reseeded_and_summed() -> None:
    chunks, seen = await _collect(group=2, n=5)
    assert [r.n for r in seen] == [2, 2, 1]
    assert [r.sampling.seed for r in seen] == [10, 12, 14]
    texts = {c.index: c.text for c in chunks if c.text}
    # each group starts at seed + the index of its first choice
    assert texts == {0: "s10", 1: "s10", 2: "s12", 3: "s12", 4: "s14"}
    finished = [c.index for c in chunks if c.finish_reason]
    assert sorted(finished) == [0, 1, 2, 3, 4]
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
    assert with_usage[0].usage == Usage(7, 10)
