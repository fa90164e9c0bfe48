"""Run models over benchmarks with the production engines and meter; store every item.

For each benchmark: load the items, take the seeded subset, skip the (item, model) pairs
this run already has with the same prompt (that is what makes a run resumable: stop it any
time, start it again with the same ``run_id``; an item whose prompt changed since is asked
again), and answer the rest greedily through the gateway's own serving step
(:mod:`smallfirst.server.serving`: the same engine pool, metering slots and receipts,
minus the client). Every model answers an item before the next item starts
(item-major), so a run stopped part-way leaves results paired across models. Each answer
is scored (code in the sandbox, in a worker thread, never in this process) and stored
with its tokens, time, energy (with method), cost and CO2.
An item the model refuses (an error whose HTTP status, in :mod:`smallfirst.server.errors`,
is below 500: a prompt longer than its context) is stored as wrong with the reason; a
failure of the engine or upstream stops the run.

``concurrency`` items are in flight at once: on an in-process model generations still take
turns, but scoring overlaps the next generation; a remote endpoint gets real parallelism.

This module neither loads data files nor scores by itself (:mod:`.benchmarks`,
:mod:`.scorers`), and prints nothing: progress goes to a callback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from smallfirst.catalog import Catalog
from smallfirst.engines.base import GenerationRequest, Sampling
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import SmallfirstError
from smallfirst.evals.items import Item, without_prefill
from smallfirst.metering.service import Metering
from smallfirst.server.choosing import Choice
from smallfirst.server.errors import WireError, describe
from smallfirst.server.generation import Metered
from smallfirst.server.serving import Ledger
from smallfirst.settings import Settings
from smallfirst.store.eval_results import EvalResult, EvalStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunConfig:
    run_id: str
    models: tuple[str, ...]
    benchmarks: tuple[str, ...]
    limit: int | None = None
    seed: int = 0
    concurrency: int = 1


@dataclass(frozen=True, slots=True)
class Progress:
    """What a progress callback gets: one per planned batch and one per finished item."""

    model: str
    benchmark: str
    done: int  # items finished in this (model, benchmark), including earlier sessions
    total: int
    skipped: int  # already in the store when this session started
    last: EvalResult | None = None


ProgressFn = Callable[[Progress], None]


def plan(settings: Settings, config: RunConfig) -> dict[str, list[Item]]:
    """The items of each benchmark for this run (seeded subset, stable order)."""
    from smallfirst.evals.benchmarks import load, subset

    return {b: subset(load(b, settings), config.limit, config.seed) for b in config.benchmarks}


async def _answer(
    pool: EnginePool, metering: Metering, model: str, item: Item, run_id: str
) -> EvalResult:
    from smallfirst.evals.scorers import score

    engine = await pool.get(model)
    request = GenerationRequest(
        Sampling(temperature=0.0, max_tokens=item.max_tokens, stop=item.stop),
        messages=item.messages,
        assistant_prefix=item.assistant_prefix,
        stream=False,
    )
    # the gateway's serving step, minus the client: the receipt's figures go into the row
    ledger = Ledger(metering, None, f"eval-{run_id}-{item.item_id}", "chat", False, Choice(model))
    metered = Metered(engine, metering, request)
    answer = await metered.drain()
    receipt = await ledger.settle_generation("ok", metered, answer.usage)
    assert receipt is not None  # an evaluation always meters
    duration_s = metered.duration_s
    created_at = ledger.created_at
    output = (item.assistant_prefix or "") + answer.text
    verdict = await asyncio.to_thread(score, item, output)
    return EvalResult(
        run_id=run_id,
        benchmark=item.benchmark,
        item_id=item.item_id,
        model=model,
        subject=item.subject,
        prompt_hash=item.prompt_hash(),
        correct=verdict.correct,
        extracted=verdict.extracted,
        detail=verdict.detail,
        output=output,
        prompt_tokens=receipt.prompt_tokens,
        completion_tokens=receipt.completion_tokens,
        duration_s=duration_s,
        energy_j=receipt.energy_j,
        energy_method=receipt.energy_method,
        cost_usd=receipt.cost_usd,
        co2_g=receipt.co2_g,
        created_at=created_at,
    )


async def _result(
    pool: EnginePool, metering: Metering, model: str, item: Item, run_id: str
) -> EvalResult:
    """The model's scored answer, or its refusal: a request impossible for this model (a
    prompt longer than its context; below 500 in the error table) is a wrong answer with
    the reason, while a failing engine or upstream stops the run, to be resumed later."""
    try:
        return await _answer(pool, metering, model, item, run_id)
    except SmallfirstError as exc:
        wire = describe(exc)
        if wire is None or wire.status >= 500 or wire.status == 429:
            raise
        return _refused(item, model, run_id, wire)


def _refused(item: Item, model: str, run_id: str, exc: WireError) -> EvalResult:
    return EvalResult(
        run_id=run_id,
        benchmark=item.benchmark,
        item_id=item.item_id,
        model=model,
        subject=item.subject,
        prompt_hash=item.prompt_hash(),
        correct=False,
        extracted=None,
        detail=f"refused: {exc.code or exc.status}: {exc.message}"[:500],
        output="",
        prompt_tokens=None,
        completion_tokens=None,
        duration_s=0.0,
        energy_j=None,
        energy_method="unknown",
        cost_usd=None,
        co2_g=None,
        created_at=time.time(),
    )


async def run(
    settings: Settings,
    config: RunConfig,
    store: EvalStore,
    progress: ProgressFn | None = None,
    items: dict[str, list[Item]] | None = None,
) -> int:
    """Answer every planned item not yet stored; return how many were answered now."""
    catalog = Catalog(settings)
    for model in config.models:
        catalog.get(model)  # unknown names fail before any work
    items = items if items is not None else plan(settings, config)
    store.start_run(
        config.run_id,
        {**dataclasses.asdict(config), "planned": {b: len(v) for b, v in items.items()}},
    )
    pool = EnginePool(catalog, settings)
    metering = Metering(settings, catalog)
    answered = 0
    try:
        for benchmark, planned in items.items():
            # Item-major: every model answers an item before the next item starts, so a run
            # stopped part-way leaves *paired* results (what the router learns from). All
            # the run's models stay loaded; the ladder fits the default memory budget.
            asked = {m: _as_asked(catalog, m, planned) for m in config.models}
            stored = {m: store.done(config.run_id, m, benchmark) for m in config.models}
            # An item counts as done only if it was asked with today's prompt: one whose
            # prompt changed since (a new convention) is asked again and its row replaced.
            finished = {
                m: {i.item_id for i in asked[m] if stored[m].get(i.item_id) == i.prompt_hash()}
                for m in config.models
            }
            for m in config.models:
                stale = sum(1 for i in asked[m] if i.item_id in stored[m]) - len(finished[m])
                if stale:
                    log.info(
                        "%s on %s: %d items were asked with an older prompt, asking again",
                        m,
                        benchmark,
                        stale,
                    )
            done = {m: len(finished[m]) for m in config.models}
            if progress:
                for model in config.models:
                    progress(Progress(model, benchmark, done[model], len(planned), done[model]))
            skipped = dict(done)  # already in the store when this session started
            queue: asyncio.Queue[tuple[Item, str]] = asyncio.Queue()
            for index in range(len(planned)):
                for model in config.models:
                    item = asked[model][index]
                    if item.item_id not in finished[model]:
                        queue.put_nowait((item, model))

            async def worker(
                benchmark: str = benchmark,
                total: int = len(planned),
                queue: asyncio.Queue[tuple[Item, str]] = queue,
                done: dict[str, int] = done,
                skipped: dict[str, int] = skipped,
            ) -> None:
                nonlocal answered
                while not queue.empty():
                    item, model = queue.get_nowait()
                    result = await _result(pool, metering, model, item, config.run_id)
                    store.add(result)
                    done[model] += 1
                    answered += 1
                    if progress:
                        progress(
                            Progress(model, benchmark, done[model], total, skipped[model], result)
                        )

            await asyncio.gather(*(worker() for _ in range(max(1, config.concurrency))))
    finally:
        await pool.aclose()
    return answered


def _as_asked(catalog: Catalog, model: str, items: Sequence[Item]) -> list[Item]:
    """The items as ``model`` is asked them: a remote endpoint cannot be pre-filled."""
    if catalog.get(model).is_remote:
        return [without_prefill(i) for i in items]
    return list(items)


@dataclass(frozen=True, slots=True)
class Rescored:
    checked: int
    changed: int  # verdict, extracted answer or detail differ from the stored ones
    flipped: int  # of those, how many changed correct <-> wrong
    skipped: int  # refusals, items no longer in the benchmark, or prompts changed since


def rescore(
    settings: Settings,
    store: EvalStore,
    run_id: str,
    benchmarks: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Rescored:
    """Score a run's stored outputs again with the current scorers; store what changed.

    For a fixed extractor or scorer, without asking any model again. A refusal (the model
    never answered), an item the benchmark no longer has, or an item whose prompt changed
    since the run (the output answers another prompt) is left as it is.
    """
    from smallfirst.evals.benchmarks import load
    from smallfirst.evals.scorers import score

    results = [r for r in store.results(run_id) if benchmarks is None or r.benchmark in benchmarks]
    items = {
        b: {i.item_id: i for i in load(b, settings)} for b in sorted({r.benchmark for r in results})
    }
    changed = flipped = skipped = 0
    for n, old in enumerate(results, 1):
        item = items[old.benchmark].get(old.item_id)
        if item is not None and item.prompt_hash() != old.prompt_hash:
            item = without_prefill(item)  # a remote endpoint's result, asked un-prefilled
        if old.completion_tokens is None or item is None or item.prompt_hash() != old.prompt_hash:
            skipped += 1
        else:
            verdict = score(item, old.output)
            new = dataclasses.replace(
                old,
                correct=verdict.correct,
                extracted=verdict.extracted,
                detail=verdict.detail,
            )
            if new != old:
                store.add(new)
                changed += 1
                flipped += new.correct != old.correct
        if progress:
            progress(n, len(results))
    return Rescored(len(results), changed, flipped, skipped)
