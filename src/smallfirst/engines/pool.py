"""Which engines exist and which local models stay loaded.

The pool creates one engine per model on first use. In-process models count against a
memory budget (weights plus KV cache, estimated from the GGUF); before a model is loaded,
idle models are unloaded least-recently-used first until it fits. A model in use is never
unloaded; if the busy models alone exceed the budget, the new one is loaded anyway and a
warning logged, because refusing a request would be worse than using more memory than the
operator hoped.

Loading runs inside the pool's ``load_meter`` (when given one): the server meters it as
overhead, billed to no request, so the request that happened to trigger a load does not pay
for it. A load ends with one token generated from "Hello" (the warm-up; through the chat
template when there is one, except on the batched engine): a model's first request does
one-time work (measured on SmolLM2-135M,
one thread: 0.45 CPU-s for the first 12-token chat answer, 0.20 s for each one after it,
0.25 s to map the weights), and that work belongs to the load, not to whichever request
comes first.

A model that embeds gets a second engine for ``/v1/embeddings`` on first use
(:meth:`EnginePool.embedder`, named ``<model> (embeddings)``): its own llama.cpp context in
embedding mode, loaded, budgeted and unloaded like any local model, and warmed up with one
short input.

The pool also opens and closes the gate for a graceful shutdown: it tells every engine's
admission to refuse new requests, and at the drain deadline to end the rest.

The pool does not run generations and does not decide which model answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from smallfirst.catalog import Catalog, ModelSpec
from smallfirst.engines.admission import AdmissionObserver
from smallfirst.engines.base import Engine, GenerationRequest, Sampling
from smallfirst.engines.batched import BatchedEngine
from smallfirst.engines.embedding import EMBEDDING_SUFFIX, EmbeddingEngine
from smallfirst.engines.llama import LlamaEngine
from smallfirst.engines.openmp import tame_openmp
from smallfirst.engines.remote import RemoteEngine
from smallfirst.errors import ShuttingDownError, UnknownModelError, UnsupportedError
from smallfirst.settings import Settings
from smallfirst.types import Message

log = logging.getLogger(__name__)

E = TypeVar("E", bound=LlamaEngine)

LoadMeter = Callable[[ModelSpec], contextlib.AbstractContextManager[object]]
"""Wraps the loading of one model's weights (the server's: metered as overhead)."""


class EnginePool:
    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        observer: AdmissionObserver | None = None,
        load_meter: LoadMeter | None = None,
    ) -> None:
        self.catalog = catalog
        self.load_meter = load_meter
        self.settings = settings
        # before anything loads llama.cpp (a grammar checked at the edge may come first)
        tame_openmp(settings.openmp_spin_count)
        self.observer = observer
        self.closing = False
        self.budget_bytes = settings.memory_budget_mb * 1024 * 1024
        self._engines: dict[str, LlamaEngine | RemoteEngine] = {}
        self._lock = asyncio.Lock()

    def available(self) -> list[str]:
        """Names of the models that can answer here: installed local ones and remote ones."""
        return [s.name for s in self.catalog if self.catalog.is_installed(s)]

    async def get(self, name: str) -> Engine:
        """The engine for ``name``, loaded and ready; UnknownModelError if it cannot run here."""
        engine = self._engines.get(name)
        if engine is None:
            spec = self._runnable(name)
            if spec.remote is not None:
                engine = RemoteEngine(spec, self.settings, self.observer)
            else:
                path = self.catalog.file_path(spec)
                assert path is not None
                # the batched engine is a LlamaEngine too: the budget treats both alike
                local = BatchedEngine if self.settings.engine_batching else LlamaEngine
                engine = local(spec, path, self.settings, self.observer)
            engine = self._engines.setdefault(name, engine)
        if isinstance(engine, LlamaEngine) and not engine.loaded:
            await self._load(engine, _warm_up)
        return engine

    def _runnable(self, name: str) -> ModelSpec:
        """``name``'s spec when a new engine may start for it: refused while shutting down,
        UnknownModelError when the model is not known or not installed here."""
        if self.closing:
            raise ShuttingDownError("The server is shutting down; it takes no new requests.")
        if name not in self.catalog or not self.catalog.is_installed(self.catalog.get(name)):
            raise UnknownModelError(name, f"model {name!r} is not known or not installed here")
        return self.catalog.get(name)

    async def embedder(self, name: str) -> EmbeddingEngine:
        """``name``'s embedding context, loaded and ready (its own engine, apart from the
        model's chat one); UnknownModelError if the model cannot run here, UnsupportedError
        if it does not embed."""
        key = name + EMBEDDING_SUFFIX
        engine = self._engines.get(key)
        if engine is None:
            spec = self._runnable(name)
            path = self.catalog.file_path(spec)
            if not spec.embeds or path is None:
                raise UnsupportedError(f"{name} does not embed", param="model")
            engine = EmbeddingEngine(spec, path, self.settings, self.observer)
            engine = self._engines.setdefault(key, engine)
        assert isinstance(engine, EmbeddingEngine)
        if not engine.loaded:
            await self._load(engine, _warm_up_embedding)
        return engine

    async def _load(self, engine: E, warm_up: Callable[[E], Awaitable[None]]) -> None:
        """Load ``engine`` within the memory budget, metered as overhead, then warm it up."""
        async with self._lock:
            if not engine.loaded:
                await self._make_room(engine)
                meter = self.load_meter or _unmetered
                with meter(engine.spec):
                    await asyncio.to_thread(engine.load)
                    await warm_up(engine)

    def loaded_bytes(self) -> int:
        return sum(
            e.memory_bytes
            for e in self._engines.values()
            if isinstance(e, LlamaEngine) and e.loaded
        )

    async def _make_room(self, incoming: LlamaEngine) -> None:
        idle = sorted(
            (
                e
                for e in self._engines.values()
                if isinstance(e, LlamaEngine)
                and e.loaded
                and e.in_flight == 0
                and e is not incoming
            ),
            key=lambda e: e.last_used,
        )
        while idle and self.loaded_bytes() + incoming.memory_bytes > self.budget_bytes:
            victim = idle.pop(0)
            log.info("memory budget: unloading idle %s", victim.spec.name)
            await asyncio.to_thread(victim.unload)
        if self.loaded_bytes() + incoming.memory_bytes > self.budget_bytes:
            log.warning(
                "loading %s exceeds the memory budget of %d MB (models in use cannot be unloaded)",
                incoming.spec.name,
                self.settings.memory_budget_mb,
            )

    def close_admissions(self) -> None:
        """Graceful shutdown begins: new requests are refused, admitted ones carry on."""
        self.closing = True
        for engine in self._engines.values():
            engine.admission.close()

    def abort_admissions(self) -> None:
        """The drain deadline: waiting requests are refused, running ones ended."""
        self.closing = True
        for engine in self._engines.values():
            engine.admission.abort()

    def waiting(self) -> int:
        """Requests waiting for a slot on any engine (the batch runner starts no line then)."""
        return sum(engine.admission.waiting for engine in self._engines.values())

    def loaded_models(self) -> list[str]:
        return [n for n, e in self._engines.items() if isinstance(e, LlamaEngine) and e.loaded]

    async def aclose(self) -> None:
        for engine in self._engines.values():
            await engine.aclose()
        self._engines.clear()


def _unmetered(spec: ModelSpec) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext()


_ONE_TOKEN = Sampling(temperature=0.0, max_tokens=1)
# through the chat template when the model has one: a plain prompt left the first chat
# request at twice the cost of the next (nor did rendering the template without evaluating it)
WARM_UP_CHAT = GenerationRequest(sampling=_ONE_TOKEN, messages=(Message("user", "Hello"),))
WARM_UP_TEXT = GenerationRequest(sampling=_ONE_TOKEN, prompt="Hello")


def _warm_up_request(engine: LlamaEngine) -> GenerationRequest:
    return WARM_UP_CHAT if engine.spec.chat else WARM_UP_TEXT


async def _warm_up_embedding(engine: EmbeddingEngine) -> None:
    """One short input through a fresh embedding context (the first decode's one-time work
    belongs to the load, as a chat model's first token does)."""
    try:
        await engine.embed([engine.tokenize("Hello")])
    except Exception as exc:
        log.warning("warming up %s for embeddings failed: %s", engine.spec.name, exc)


async def _warm_up(engine: LlamaEngine) -> None:
    """One token through a freshly loaded model (see the module); a failure is only logged:
    the request that is waiting for the model will meet it and report it properly."""
    stream = engine.generate(_warm_up_request(engine))
    try:
        async for _ in stream:
            pass
    except Exception as exc:
        log.warning("warming up %s failed: %s", engine.spec.name, exc)
    finally:
        await stream.aclose()
        # its KV would be the first request's cached prefix: reuse nobody asked for
        engine.forget_prefixes()
