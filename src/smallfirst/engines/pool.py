"""Which engines exist and which local models stay loaded.

The pool creates one engine per model on first use. In-process models count against a
memory budget (weights plus KV cache, estimated from the GGUF); before a model is loaded,
idle models are unloaded least-recently-used first until it fits. A model in use is never
unloaded; if the busy models alone exceed the budget, the new one is loaded anyway and a
warning logged, because refusing a request would be worse than using more memory than the
operator hoped.

The pool also opens and closes the gate for a graceful shutdown: it tells every engine's
admission to refuse new requests, and at the drain deadline to end the rest.

The pool does not run generations and does not decide which model answers.
"""

from __future__ import annotations

import asyncio
import logging

from smallfirst.catalog import Catalog
from smallfirst.engines.admission import AdmissionObserver
from smallfirst.engines.base import Engine
from smallfirst.engines.batched import BatchedEngine
from smallfirst.engines.llama import LlamaEngine
from smallfirst.engines.remote import RemoteEngine
from smallfirst.errors import ShuttingDownError, UnknownModelError
from smallfirst.settings import Settings

log = logging.getLogger(__name__)


class EnginePool:
    def __init__(
        self, catalog: Catalog, settings: Settings, observer: AdmissionObserver | None = None
    ) -> None:
        self.catalog = catalog
        self.settings = settings
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
            if self.closing:
                raise ShuttingDownError("The server is shutting down; it takes no new requests.")
            if name not in self.catalog or not self.catalog.is_installed(self.catalog.get(name)):
                raise UnknownModelError(name, f"model {name!r} is not known or not installed here")
            spec = self.catalog.get(name)
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
            async with self._lock:
                if not engine.loaded:
                    await self._make_room(engine)
                    await asyncio.to_thread(engine.load)
        return engine

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

    def loaded_models(self) -> list[str]:
        return [n for n, e in self._engines.items() if isinstance(e, LlamaEngine) and e.loaded]

    async def aclose(self) -> None:
        for engine in self._engines.values():
            await engine.aclose()
        self._engines.clear()
