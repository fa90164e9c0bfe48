"""The batched in-process engine: one llama.cpp context serving ``parallel`` requests at once.

Where :class:`~smallfirst.engines.llama.LlamaEngine` runs one generation at a time behind a
lock, :class:`BatchedEngine` loads the model with one context of ``parallel`` sequence slots
(each slot the per-request context, so the memory budget counts the KV cache of all of
them) and hands every admitted request to its :class:`~smallfirst.engines.scheduler.Scheduler`,
which decodes all running requests in one batch per step, lets new ones join at the next
step and reuses the KV of a finished request's prompt prefix. Prompts are built as the
one-at-a-time engine builds them (:mod:`.prompting`), and the admission queue is the same,
with ``parallel`` requests running instead of one.

Chosen with the ``engine_batching`` setting; the pool creates one or the other. This module
does not decide what stays loaded (:mod:`.pool`) and does not decode (:mod:`.scheduler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

from smallfirst.catalog import ModelSpec
from smallfirst.engines.admission import Admission, AdmissionObserver, Ticket
from smallfirst.engines.base import BACKGROUND, Chunk, GenerationRequest
from smallfirst.engines.choices import combined, in_groups, seeded
from smallfirst.engines.llama import LlamaEngine, kv_cache_bytes
from smallfirst.engines.openmp import tame_openmp
from smallfirst.engines.prompting import Prompter
from smallfirst.engines.scheduler import Scheduler
from smallfirst.engines.sequence import DONE, Sequence
from smallfirst.errors import GenerationError, ShuttingDownError
from smallfirst.settings import Settings
from smallfirst.types import Usage

__all__ = ["BatchedEngine", "context_params"]

log = logging.getLogger(__name__)


class BatchedEngine(LlamaEngine):
    """A local GGUF model decoding up to ``settings.parallel`` requests together.

    It keeps the one-at-a-time engine's bookkeeping (admission, ``in_flight``,
    ``memory_bytes``, prompts) so the pool and the server treat both alike.
    """

    def __init__(
        self,
        spec: ModelSpec,
        path: Path,
        settings: Settings,
        observer: AdmissionObserver | None = None,
    ) -> None:
        super().__init__(spec, path, settings, observer)
        self.parallel = settings.parallel
        self.admission = Admission(
            spec.name, self.parallel, settings.max_queue, settings.queue_timeout_s, observer
        )
        self._model: Any = None
        self._ctx: Any = None
        self._scheduler: Scheduler | None = None
        self._n_ctx_seq = 0

    @property
    def loaded(self) -> bool:
        return self._scheduler is not None

    @property
    def n_ctx(self) -> int:
        """The context of one request (each slot's share of the whole)."""
        return self._n_ctx_seq or self._want_ctx()

    @property
    def scheduler(self) -> Scheduler | None:
        return self._scheduler

    def load(self) -> None:
        """Load weights, create the context and start the scheduler (blocking)."""
        with self._load_lock:
            if self._scheduler is not None:
                return
            tame_openmp(
                self._settings.openmp_spin_count
            )  # before llama_cpp's first import: see engines/openmp.py
            import llama_cpp  # heavy: imported only when a model is actually loaded
            from llama_cpp import _internals
            from llama_cpp._logger import set_verbose

            # what Llama(verbose=False) does for the one-at-a-time engine: llama.cpp's log
            # (a line per graph input at every step otherwise) goes nowhere
            set_verbose(False)
            llama_cpp.llama_backend_init()  # as Llama() does; idempotent
            started = time.perf_counter()
            model: Any = _internals.LlamaModel(
                path_model=str(self.path),
                params=llama_cpp.llama_model_default_params(),
                verbose=False,
            )
            try:
                ctx = _internals.LlamaContext(
                    model=model, params=self._context_params(llama_cpp), verbose=False
                )
                metadata = model.metadata()
                prompter = Prompter(self.spec, model, metadata)
                scheduler = Scheduler(
                    self.spec.name,
                    model,
                    ctx.ctx,
                    parallel=self.parallel,
                    n_batch=self._settings.n_batch,
                    chunk_tokens=self._settings.prefill_chunk_tokens,
                    reuse_prefixes=self._settings.prefix_reuse,
                    cores=self._free_cores(),
                )
            except BaseException:
                model.close()
                raise
            n_ctx = int(llama_cpp.llama_n_ctx(ctx.ctx))
            self._n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(ctx.ctx))
            self.memory_bytes = self.path.stat().st_size + kv_cache_bytes(metadata, n_ctx)
            self._model, self._ctx, self._prompter = model, ctx, prompter
            self._scheduler = scheduler
            log.info(
                "loaded %s batched (%d slots of n_ctx=%d, threads=%d) in %.2f s",
                self.spec.name,
                self.parallel,
                self._n_ctx_seq,
                self._settings.threads,
                time.perf_counter() - started,
            )

    def _context_params(self, llama_cpp: Any) -> Any:
        # a method so that bench/one_stream.py can vary one parameter
        return context_params(llama_cpp, self._want_ctx(), self.parallel, self._settings)

    def unload(self) -> None:
        """Stop the scheduler and free the context and the weights (blocking)."""
        with self._load_lock:
            if self._scheduler is None:
                return
            self._scheduler.close()
            self._ctx.close()
            self._model.close()
            self._scheduler = self._ctx = self._model = self._prompter = None
            self._n_ctx_seq = 0
            log.info("unloaded %s", self.spec.name)

    def forget_prefixes(self) -> None:
        """Drop the KV that finished requests left for prefix reuse (none when unloaded)."""
        if self._scheduler is not None:
            self._scheduler.forget()

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """The request's chunks; ``n`` > 1 choices decode together, ``parallel`` at a time."""
        if request.n > 1:
            return in_groups(self._generate_group, request, self.parallel)
        return self._generate_group(request)

    async def _generate_group(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """``request.n`` (at most ``parallel``) choices of one prompt, decoded in one batch:
        the first reads the prompt and the others copy its KV (see the scheduler)."""
        self.in_flight += 1
        self.last_used = time.monotonic()
        ticket: Ticket | None = None
        seqs: list[Sequence] = []
        scheduler: Scheduler | None = None
        try:
            prompt, tokens = await self.prepare(request)
            ticket = await self.admission.acquire()
            scheduler = self._scheduler
            if scheduler is None:
                raise GenerationError(f"{self.spec.name} was unloaded")
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
            window = [0]  # the choices' sequences open and close one metering window

            def emitter(index: int) -> Callable[[Any], None]:
                def emit(item: Any) -> None:
                    # The loop may be gone if the server shut down mid-generation.
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(queue.put_nowait, (index, item))

                return emit

            seqs = [
                Sequence(
                    tokens,
                    seeded(request.sampling, i),
                    emitter(i),
                    self.n_ctx,
                    meter=request.meter,
                    on_compute=request.on_compute,
                    window=window,
                    background=BACKGROUND.get(),
                    # a client that takes one body needs no token before the last
                    coalesce=not request.stream,
                )
                for i in range(request.n)
            ]
            running = seqs

            def abort() -> None:
                for seq in running:
                    seq.cancel.set()
                error = ShuttingDownError(self.admission.shutdown_message(ended=True))
                queue.put_nowait((0, error))
                if scheduler is not None:
                    scheduler.wake()

            ticket.on_abort = abort
            scheduler.submit(seqs)
            if request.echo:
                for i in range(request.n):
                    yield Chunk(text=prompt, index=i)
            async for chunk in _gather(seqs, queue):
                yield chunk
        finally:
            for seq in seqs:
                seq.cancel.set()
            if seqs and scheduler is not None:
                scheduler.wake()
            if ticket is not None:
                self.admission.release(ticket)
            self.in_flight -= 1
            self.last_used = time.monotonic()


def context_params(llama_cpp: Any, n_ctx_seq: int, parallel: int, settings: Settings) -> Any:
    """The llama.cpp context parameters of a batched engine: ``parallel`` slots of
    ``n_ctx_seq`` cells each (also what bench/step_weights.py measures on)."""
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx_seq * parallel
    params.n_batch = settings.n_batch
    params.n_ubatch = settings.n_batch
    params.n_seq_max = parallel
    # one KV stream per slot: attention reads only its own sequence's cells
    params.kv_unified = False
    params.n_threads = params.n_threads_batch = settings.threads
    # as the one-at-a-time engine, so both give the same numerics
    params.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if settings.flash_attention
        else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    params.no_perf = True
    return params


async def _gather(
    seqs: list[Sequence], queue: asyncio.Queue[tuple[int, Any]]
) -> AsyncGenerator[Chunk, None]:
    """The chunks of a group's sequences in the order they come, indexed by choice; the
    chunk that ends the last choice carries the usage of all of them."""
    running = len(seqs)
    usages: list[Usage] = []
    while running:
        for seq in seqs:
            seq.wanted.set()
        index, item = await queue.get()
        if item is DONE:
            running -= 1
            continue
        if isinstance(item, BaseException):
            raise item
        if len(seqs) > 1:
            if item.usage is not None:
                usages.append(item.usage)
                usage = combined(usages) if len(usages) == len(seqs) else None
                item = dataclasses.replace(item, usage=usage)
            item = dataclasses.replace(item, index=index)
        yield item
