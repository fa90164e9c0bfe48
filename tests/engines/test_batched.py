"""The batched engine on a real model (SmolLM2-135M): batching, joining, leaving, reuse.

Answers are compared between engines that start with empty KV caches, so that each
comparison is of the same prompt evaluated the same way (a prompt found in a slot's cache
is not re-read, which is the point of prefix reuse but not what these tests compare).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from smallfirst.catalog import Catalog
from smallfirst.engines.base import ComputeMeter, GenerationRequest, Sampling
from smallfirst.engines.batched import BatchedEngine
from smallfirst.engines.grammars import json_object_grammar, schema_grammar
from smallfirst.engines.llama import LlamaEngine
from smallfirst.engines.scheduler import DECODE_TOKEN_WEIGHT
from smallfirst.metering.meter import Accountant, EstimateConstants, local_energy, window_energy_j
from smallfirst.settings import Settings
from smallfirst.types import Message, Usage
from tests.conftest import SMOL

PROMPTS = [
    "Write three sentences about the sea.",
    "What is the capital of France? Explain briefly.",
    "Name five colours and one thing of each colour.",
    "Tell me a short story about a cat and a dog.",
]


def request(text: str, max_tokens: int = 32, **kw: Any) -> GenerationRequest:
    meter = kw.pop("meter", None)
    sampling = Sampling(**{"temperature": 0.0, "max_tokens": max_tokens, **kw})
    return GenerationRequest(sampling=sampling, messages=(Message("user", text),), meter=meter)


async def answer(engine: LlamaEngine, req: GenerationRequest) -> tuple[str, Usage | None, Any]:
    parts, last = [], None
    async for chunk in engine.generate(req):
        parts.append(chunk.text)
        last = chunk
    assert last is not None
    return "".join(parts), last.usage, last


def make(settings: Settings, **over: Any) -> BatchedEngine:
    s = settings.model_copy(update={"engine_batching": True, "parallel": 4, **over})
    spec = Catalog(s).get(SMOL)
    path = Catalog(s).file_path(spec)
    assert path is not None
    return BatchedEngine(spec, path, s)


@pytest.fixture
def engines(settings: Settings) -> Iterator[list[BatchedEngine]]:
    made: list[BatchedEngine] = []
    yield made
    for engine in made:
        engine.unload()


def test_four_concurrent_streams_equal_each_alone(
    settings: Settings, engines: list[BatchedEngine]
) -> None:
    async def main() -> None:
        alone = []
        for text in PROMPTS:  # each on a fresh engine: nothing cached, nothing beside it
            engine = make(settings)
            engines.append(engine)
            alone.append(await answer(engine, request(text)))
            engine.unload()
        together_engine = make(settings)
        engines.append(together_engine)
        together = await asyncio.gather(*(answer(together_engine, request(t)) for t in PROMPTS))
        assert [a[0] for a in together] == [a[0] for a in alone]
        assert [a[1] for a in together] == [a[1] for a in alone]
        assert together_engine.scheduler is not None
        # they shared steps: fewer steps than tokens generated
        generated = sum(a[1].completion_tokens for a in together if a[1])
        assert together_engine.scheduler.steps < generated

    asyncio.run(main())


def test_a_stream_joining_mid_batch_corrupts_none(
    settings: Settings, engines: list[BatchedEngine]
) -> None:
    # a prompt longer than a prefill chunk: it is read over several steps, beside the others
    long_prompt = "Summarise this: " + "the quick brown fox jumps over the lazy dog. " * 30

    async def main() -> None:
        reference = []
        for text, n in ((PROMPTS[0], 48), (PROMPTS[1], 48), (long_prompt, 16)):
            engine = make(settings, prefill_chunk_tokens=32)
            engines.append(engine)
            reference.append((await answer(engine, request(text, n)))[0])
            engine.unload()
        engine = make(settings, prefill_chunk_tokens=32)
        engines.append(engine)
        streams = [engine.generate(request(t, 48)) for t in PROMPTS[:2]]
        heads = [[(await anext(s)).text for _ in range(4)] for s in streams]

        async def rest(stream: Any, head: list[str]) -> str:
            return "".join(head + [c.text async for c in stream])

        running = [asyncio.create_task(rest(s, h)) for s, h in zip(streams, heads, strict=True)]
        joined = await answer(engine, request(long_prompt, 16))
        assert await asyncio.gather(*running) == reference[:2]
        assert joined[0] == reference[2]
        assert joined[1] is not None and joined[1].prompt_tokens > 32 * 3

    asyncio.run(main())


def test_a_body_request_hands_off_its_answer_in_two_chunks(
    settings: Settings, engines: list[BatchedEngine]
) -> None:
    """A client that takes one body (``stream`` False) gets the same answer, logprobs
    included, from the first chunk and one more, not from one hand-off per token."""

    async def chunks(engine: BatchedEngine, req: GenerationRequest) -> list[Any]:
        return [c async for c in engine.generate(req)]

    async def main() -> None:
        engine = make(settings)
        engines.append(engine)
        for text in PROMPTS[:2]:
            streamed_req = request(text, 40, logprobs=True, top_logprobs=2)
            streamed = await chunks(engine, streamed_req)
            engine.forget_prefixes()
            body = await chunks(engine, dataclasses.replace(streamed_req, stream=False))
            engine.forget_prefixes()
            assert "".join(c.text for c in body) == "".join(c.text for c in streamed)
            assert [lp for c in body for lp in c.logprobs] == [
                lp for c in streamed for lp in c.logprobs
            ]
            assert body[-1].usage == streamed[-1].usage
            assert len(streamed) > 10 and len(body) <= 3  # first, the rest, the end
            assert body[0].text == streamed[0].text  # the first token is not held back

    asyncio.run(main())


def test_a_disconnect_frees_its_slot(settings: Settings, engines: list[BatchedEngine]) -> None:
    async def main() -> None:
        engine = make(settings, parallel=1)
        engines.append(engine)
        stream = engine.generate(request(PROMPTS[0], 200))
        for _ in range(3):
            await anext(stream)
        await stream.aclose()  # the client went away
        assert engine.admission.running == 0
        # the only slot serves the next request, and the gone one's KV is cleared
        text, usage, _ = await answer(engine, request(PROMPTS[1], 8))
        assert text and usage is not None and usage.cached_tokens == 0
        assert engine.scheduler is not None and engine.scheduler.steps < 200

    asyncio.run(main())


class CountingMeter:
    """A ComputeMeter that counts the tokens each step charged it."""

    def __init__(self) -> None:
        self.tokens = 0
        self.active: list[bool] = []

    def set_active(self, active: bool) -> None:
        self.active.append(active)

    def split_step(self, shares: Any) -> None:
        for meter, n in shares:
            if isinstance(meter, CountingMeter):
                meter.tokens += n


def test_second_turn_reuses_the_first_turns_kv(
    settings: Settings, engines: list[BatchedEngine]
) -> None:
    async def main() -> None:
        engine = make(settings)
        engines.append(engine)
        turn1 = [Message("system", "You are terse."), Message("user", PROMPTS[0])]
        first = GenerationRequest(Sampling(temperature=0.0, max_tokens=24), tuple(turn1))
        reply, usage1, _ = await answer(engine, first)
        assert usage1 is not None and usage1.cached_tokens == 0
        turn2 = (*turn1, Message("assistant", reply), Message("user", "And about rivers?"))
        meter = CountingMeter()
        second = GenerationRequest(Sampling(temperature=0.0, max_tokens=8), turn2, meter=meter)
        _, usage2, last = await answer(engine, second)
        assert usage2 is not None and usage2.cached_tokens is not None
        assert usage2.cached_tokens >= usage1.prompt_tokens
        # only the new tokens were evaluated: the rest of the prompt, then each output
        # token fed back (the last one is never decoded when max_tokens ends it), each of
        # those weighing DECODE_TOKEN_WEIGHT prompt tokens in the step's split
        fed_back = usage2.completion_tokens - (1 if last.finish_reason == "length" else 0)
        read = usage2.prompt_tokens - usage2.cached_tokens
        assert meter.tokens == read + DECODE_TOKEN_WEIGHT * fed_back
        assert meter.active == [True, False]

    asyncio.run(main())


SCHEMA_GRAMMAR = schema_grammar(
    {
        "type": "object",
        "properties": {"colour": {"enum": ["red", "blue"]}, "waves": {"type": "integer"}},
        "required": ["colour", "waves"],
    },
    param="response_format",
)


@pytest.mark.parametrize(
    "sampling",
    [
        {"stop": ("sea",)},
        {"logprobs": True, "top_logprobs": 3},
        {"grammar": json_object_grammar()},
        {"grammar": SCHEMA_GRAMMAR},
        {"logit_bias": ((28, 4.0), (30, -100.0), (1100, 2.5))},
        {"temperature": 0.8, "seed": 7, "top_p": 0.9},
        {"presence_penalty": 1.5, "frequency_penalty": 0.5},
    ],
)
def test_same_answers_as_the_one_at_a_time_engine(
    settings: Settings, engines: list[BatchedEngine], sampling: dict[str, Any]
) -> None:
    async def main() -> None:
        batched = make(settings)
        engines.append(batched)
        spec, path = batched.spec, batched.path
        single = LlamaEngine(spec, path, settings)
        try:
            want = await answer(single, request(PROMPTS[0], 24, **sampling))
        finally:
            single.unload()
        got = await answer(batched, request(PROMPTS[0], 24, **sampling))
        assert got[0] == want[0]
        assert got[2].finish_reason == want[2].finish_reason
        if sampling.get("logprobs"):
            assert got[1] is not None and want[1] is not None
        await batched_logprobs_match(batched, single, sampling)

    asyncio.run(main())


async def batched_logprobs_match(
    batched: BatchedEngine, single: LlamaEngine, sampling: dict[str, Any]
) -> None:
    if not sampling.get("logprobs"):
        return
    single.load()
    try:
        mine = [c async for c in batched.generate(request(PROMPTS[1], 6, **sampling))]
        theirs = [c async for c in single.generate(request(PROMPTS[1], 6, **sampling))]
    finally:
        single.unload()
    ours = [lp for c in mine for lp in c.logprobs]
    ref = [lp for c in theirs for lp in c.logprobs]
    assert [lp.token for lp in ours] == [lp.token for lp in ref]
    assert [lp.logprob for lp in ours] == pytest.approx([lp.logprob for lp in ref], abs=1e-3)
    assert all(len(lp.top) == 3 for lp in ours)


def test_shares_of_concurrent_generations_add_up_to_the_window(
    settings: Settings, engines: list[BatchedEngine]
) -> None:
    constants = EstimateConstants(watts_per_thread=5.0, ram_w=3.0, source="test")
    accountant = Accountant()

    async def main() -> None:
        engine = make(settings)
        engines.append(engine)
        await answer(engine, request("Hi", 2))  # load outside the window
        slots = [accountant.slot() for _ in PROMPTS]
        meters: list[ComputeMeter] = list(slots)
        await asyncio.gather(
            *(answer(engine, request(t, 24, meter=m)) for t, m in zip(PROMPTS, meters, strict=True))
        )
        energies = [local_energy(accountant, s, constants).energy_j or 0.0 for s in slots]
        assert all(e > 0 for e in energies)
        assert sum(energies) == pytest.approx(window_energy_j(accountant, constants), rel=1e-9)
        assert sum(s.cpu_s for s in slots) == pytest.approx(accountant.active_cpu_s, rel=1e-9)

    asyncio.run(main())


def test_the_memory_budget_counts_the_kv_of_every_slot(
    settings: Settings, engines: list[BatchedEngine]
) -> None:
    batched = make(settings, parallel=4)
    engines.append(batched)
    single = LlamaEngine(batched.spec, batched.path, settings)
    batched.load()
    single.load()
    try:
        weights = batched.path.stat().st_size
        assert batched.n_ctx == single.n_ctx  # each request gets the context it had
        assert batched.memory_bytes - weights == 4 * (single.memory_bytes - weights) > 0
    finally:
        single.unload()


def test_choices_read_the_prompt_once_and_decode_together(
    settings: Settings, engines: list[BatchedEngine]
) -> None:
    async def main() -> None:
        engine = make(settings)
        engines.append(engine)
        req = dataclasses.replace(request(PROMPTS[0], 8), n=3)
        texts = ["", "", ""]
        finishes: dict[int, str | None] = {}
        usage: Usage | None = None
        async for chunk in engine.generate(req):
            texts[chunk.index] += chunk.text
            if chunk.finish_reason is not None:
                finishes[chunk.index] = chunk.finish_reason
            usage = chunk.usage or usage
        alone, alone_usage, _ = await answer(make_fresh(), request(PROMPTS[0], 8))
        assert texts == [alone] * 3
        assert finishes == {0: "length", 1: "length", 2: "length"}
        assert usage is not None and alone_usage is not None
        assert usage.prompt_tokens == alone_usage.prompt_tokens
        assert usage.completion_tokens == 3 * 8
        assert engine.scheduler is not None
        # the prompt once, then each choice's tokens but its last (length: never decoded),
        # three to a step
        assert engine.scheduler.tokens == usage.prompt_tokens + 3 * 7
        assert engine.scheduler.steps == 1 + 7

    def make_fresh() -> BatchedEngine:
        fresh = make(settings)
        engines.append(fresh)
        return fresh

    asyncio.run(main())


def test_flash_attention_reaches_both_engines(
    settings: Settings, engines: list[BatchedEngine]
) -> None:
    """The setting (on by default) turns flash attention on in both in-process engines, and
    they still answer alike (both then compute attention the same way); off turns it off."""
    import llama_cpp

    from smallfirst.engines.batched import context_params

    assert Settings.model_fields["flash_attention"].default is True
    on = settings.model_copy(update={"flash_attention": True})
    off = settings.model_copy(update={"flash_attention": False})
    enabled = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    assert context_params(llama_cpp, 512, 2, on).flash_attn_type == enabled
    assert context_params(llama_cpp, 512, 2, off).flash_attn_type == (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )

    async def main() -> None:
        batched = make(on)
        engines.append(batched)
        single = LlamaEngine(batched.spec, batched.path, on)
        try:
            want = await answer(single, request(PROMPTS[2], 24))
            assert single._llm is not None
            assert single._llm.context_params.flash_attn_type == enabled
        finally:
            single.unload()
        got = await answer(batched, request(PROMPTS[2], 24))
        assert got[0] == want[0] and got[0]

    asyncio.run(main())


def test_background_sequences_wait_while_a_live_prompt_is_read(
    settings: Settings, engines: list[BatchedEngine]
) -> None:
    """Batch lines (BACKGROUND) sit out the steps in which a live request reads its prompt:
    between the live request's arrival and its first token they emit at most the token of
    the step already running (without the rule, one per prompt chunk: seven here)."""
    from smallfirst.engines.base import BACKGROUND

    engine = make(settings, prefill_chunk_tokens=16)
    engines.append(engine)
    emitted: list[tuple[int, float]] = []
    started = asyncio.Event()

    async def background(i: int) -> str:
        BACKGROUND.set(True)  # this task only, as the batch runner does
        parts = []
        async for chunk in engine.generate(request(PROMPTS[i], max_tokens=64)):
            if chunk.text:
                emitted.append((i, time.monotonic()))
                if len(emitted) >= 6:
                    started.set()
            parts.append(chunk.text)
        return "".join(parts)

    async def live() -> tuple[float, float]:
        await started.wait()
        long_prompt = " ".join(["Here is a long question about the weather today."] * 12)
        arrived = time.monotonic()
        async for chunk in engine.generate(request(long_prompt, max_tokens=4)):
            if chunk.text:
                return arrived, time.monotonic()
        raise AssertionError("no token")

    async def main() -> None:
        *answers, (arrived, first) = await asyncio.gather(
            *(background(i) for i in range(3)), live()
        )
        during = [i for i, at in emitted if arrived < at < first]
        assert all(during.count(i) <= 2 for i in range(3)), during
        alone = make(settings)
        engines.append(alone)
        for i, text in enumerate(answers):  # paused, not changed
            assert text == (await answer(alone, request(PROMPTS[i], max_tokens=64)))[0]

    asyncio.run(main())


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "one-at-a-time"])
def test_steps_follow_the_free_cores_and_answer_the_same(
    settings: Settings,
    engines: list[BatchedEngine],
    monkeypatch: pytest.MonkeyPatch,
    batching: bool,
) -> None:
    """When other processes take a core mid-generation, the next steps decode with one thread
    fewer (llama.cpp's own count changes), and the answers stay those of a fixed count; in
    both in-process engines."""
    import llama_cpp

    from smallfirst.engines import llama as llama_module
    from smallfirst.engines.cores import CpuTimes, FreeCores

    readings = 0

    def machine(cpus: object) -> CpuTimes:
        # after the first ten steps, others use 1.5 of the two cores
        nonlocal readings
        readings += 1
        return CpuTimes(1.5 * max(0, readings - 10), 0.0, float(readings))

    def watched(most: int, name: str) -> FreeCores:
        return FreeCores(most, name=name, interval_s=0.0, cpus=[0, 1], read=machine)

    monkeypatch.setattr(llama_module, "FreeCores", watched)  # both engines make theirs there
    two = {"n_threads": 2}

    def build(adaptive: bool) -> LlamaEngine:
        if batching:
            made = make(settings, adaptive_threads=adaptive, **two)
            engines.append(made)
            return made
        s = settings.model_copy(update={"adaptive_threads": adaptive, **two})
        spec = Catalog(s).get(SMOL)
        path = Catalog(s).file_path(spec)
        assert path is not None
        return LlamaEngine(spec, path, s)

    async def main() -> None:
        fixed = build(False)
        want = [await answer(fixed, request(t, 24)) for t in PROMPTS[:2]]
        fixed.unload()
        following = build(True)
        try:
            got = [await answer(following, request(t, 24)) for t in PROMPTS[:2]]
            assert [g[0] for g in got] == [w[0] for w in want]
            assert readings > 11
            if isinstance(following, BatchedEngine):
                assert following.scheduler is not None
                ctx = following.scheduler._ctx
            else:
                assert following._llm is not None
                ctx = following._llm.ctx
            assert llama_cpp.llama_n_threads(ctx) == 1
        finally:
            following.unload()

    asyncio.run(main())
