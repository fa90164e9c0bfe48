"""The in-process engine: a GGUF model run by llama-cpp-python on this machine's CPU.

One :class:`LlamaEngine` owns one ``llama_cpp.Llama`` (weights plus one context). The
context is not safe to share, so generations on one engine take turns behind a lock, while
engines of different models run side by side. Each generation runs in its own worker thread
(llama.cpp releases the GIL while it computes) and hands chunks to the event loop; when the
consumer goes away (a client disconnected) the worker sees the cancel flag before its next
token and frees the context.

The prompt is built with the model's own chat template from its GGUF metadata
(:mod:`.prompting`, shared with the batched engine, :mod:`.batched`), and the token loop
is ours rather than ``create_chat_completion``'s so that token counts are exact, stop
sequences never leak a partial match, and log-probabilities come from the raw logits.

Requests wait their turn in the engine's :class:`~smallfirst.engines.admission.Admission`
(a bounded queue with a timeout) once their prompt is known to fit; at a shutdown's drain
deadline the admission's abort hook ends the stream with a ShuttingDownError.

This module does not decide what stays loaded (see :mod:`smallfirst.engines.pool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import numpy as np

from smallfirst.catalog import ModelSpec
from smallfirst.engines.admission import Admission, AdmissionObserver, Ticket
from smallfirst.engines.base import Chunk, GenerationRequest, Sampling, TokenLogprob
from smallfirst.engines.choices import in_groups
from smallfirst.engines.cores import FreeCores
from smallfirst.engines.openmp import tame_openmp
from smallfirst.engines.prompting import Prompter
from smallfirst.engines.sampling import logits_logprob
from smallfirst.engines.text import StopMatcher, Utf8Decoder
from smallfirst.errors import (
    ContextLengthError,
    GenerationError,
    ShuttingDownError,
    SmallfirstError,
)
from smallfirst.settings import Settings
from smallfirst.types import FinishReason, Usage

log = logging.getLogger(__name__)

_DONE = object()
HANDOFF_WAIT_S = 0.005


class LlamaEngine:
    """A local GGUF model. Loads on first use; ``unload`` frees it."""

    def __init__(
        self,
        spec: ModelSpec,
        path: Path,
        settings: Settings,
        observer: AdmissionObserver | None = None,
    ) -> None:
        self.spec = spec
        self.path = path
        self._settings = settings
        self._llm: Any = None
        self._cores: FreeCores | None = None  # the adaptive_threads setting, once loaded
        self._prompter: Prompter | None = None
        self._gen_lock = threading.Lock()  # one generation per llama.cpp context
        self._load_lock = threading.Lock()
        # one generation at a time: the lock below is then never contended for long
        self.admission = Admission(
            spec.name, 1, settings.max_queue, settings.queue_timeout_s, observer
        )
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.memory_bytes = path.stat().st_size if path.exists() else 0

    purpose = ""  # said after the model's name where it is logged (" for embeddings")

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    @property
    def n_ctx(self) -> int:
        return int(self._llm.n_ctx()) if self._llm is not None else self._want_ctx()

    def _want_ctx(self) -> int:
        return min(self._settings.n_ctx, self.spec.context_length)

    def forget_prefixes(self) -> None:
        """Drop prompt KV kept for reuse by later requests; this engine keeps none of its own
        (llama-cpp-python's ``Llama`` manages its cache), the batched engine does."""

    def load(self) -> None:
        """Load weights and create the context (blocking; call from a worker thread)."""
        with self._load_lock:
            if self._llm is not None:
                return
            tame_openmp(
                self._settings.openmp_spin_count
            )  # before llama_cpp's first import: see engines/openmp.py
            import llama_cpp  # heavy: imported only when a model is actually loaded

            started = time.perf_counter()
            llm = self._open(llama_cpp)
            try:
                self._prompter = Prompter(self.spec, llm._model, llm.metadata)
            except BaseException:
                llm.close()
                raise
            self.memory_bytes = self.path.stat().st_size + kv_cache_bytes(
                llm.metadata, int(llm.n_ctx())
            )
            self._llm = llm
            self._cores = self._free_cores()
            log.info(
                "loaded %s%s (n_ctx=%d, threads=%d) in %.2f s",
                self.spec.name,
                self.purpose,
                llm.n_ctx(),
                self._settings.threads,
                time.perf_counter() - started,
            )

    def _free_cores(self) -> FreeCores | None:
        """What tells a loaded model's steps how many threads to use (the adaptive_threads
        setting; None: always the configured count)."""
        if not self._settings.adaptive_threads:
            return None
        return FreeCores(self._settings.threads, name=self.spec.name)

    def _open(self, llama_cpp: Any, **params: Any) -> Any:
        """The ``llama_cpp.Llama`` this engine runs: weights and a context for generating;
        ``params`` change the context's (the embedding engine's)."""
        threads = self._settings.threads
        defaults: dict[str, Any] = {
            "n_ctx": self._want_ctx(),
            "n_batch": self._settings.n_batch,
            "n_threads": threads,
            "n_threads_batch": threads,
            "flash_attn": self._settings.flash_attention,
            "verbose": False,
        }
        return llama_cpp.Llama(model_path=str(self.path), **{**defaults, **params})

    def unload(self) -> None:
        """Free the model once no generation holds it (blocking)."""
        with self._gen_lock, self._load_lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None
                log.info("unloaded %s", self.spec.name)

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        assert self._prompter is not None
        return self._prompter.tokenize(text, add_bos=add_bos, special=special)

    def prompt_tokens(self, request: GenerationRequest) -> tuple[str, list[int]]:
        """The prompt text the model sees, and its tokens."""
        assert self._prompter is not None
        return self._prompter.prompt_tokens(request)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.unload)

    async def prepare(self, request: GenerationRequest) -> tuple[str, list[int]]:
        """Load the model if need be; the prompt and its tokens, known to fit the context
        (a ContextLengthError before anything runs otherwise)."""
        if not self.loaded:
            await asyncio.to_thread(self.load)
        prompt, tokens = await asyncio.to_thread(self.prompt_tokens, request)
        max_tokens = request.sampling.max_tokens
        n_ctx = self.n_ctx
        if len(tokens) >= n_ctx or (max_tokens and len(tokens) + max_tokens > n_ctx):
            raise ContextLengthError(len(tokens), n_ctx, max_tokens)
        return prompt, tokens

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """The request's chunks; ``n`` > 1 choices run one after another (:mod:`.choices`)."""
        if request.n > 1:
            return in_groups(self._generate_one, request, 1)
        return self._generate_one(request)

    async def _generate_one(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        self.in_flight += 1
        self.last_used = time.monotonic()
        cancel = threading.Event()
        ticket: Ticket | None = None
        try:
            prompt, tokens = await self.prepare(request)
            ticket = await self.admission.acquire()
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()

            def abort() -> None:
                cancel.set()
                queue.put_nowait(ShuttingDownError(self.admission.shutdown_message(ended=True)))

            ticket.on_abort = abort

            wanted = threading.Event()

            def emit(item: Any) -> None:
                wanted.clear()
                # The loop may be gone if the server shut down mid-generation.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                # Hand-off: wait (briefly) until the consumer has dealt with the chunk. With as
                # many llama.cpp threads as cores, an event loop that must preempt a
                # compute thread to send each token stalls llama.cpp's thread barrier;
                # letting it send in the gap between tokens is cheaper. Bounded, so a slow
                # client cannot hold the model for long.
                wanted.wait(HANDOFF_WAIT_S)

            worker = threading.Thread(
                target=self._worker,
                args=(tokens, request.sampling, cancel, emit, request.on_compute),
                name=f"gen-{self.spec.name}",
                daemon=True,
            )
            worker.start()
            if request.echo:
                yield Chunk(text=prompt)
            while True:
                wanted.set()
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()
            if ticket is not None:
                self.admission.release(ticket)
            self.in_flight -= 1
            self.last_used = time.monotonic()

    def _worker(
        self,
        tokens: list[int],
        sampling: Sampling,
        cancel: threading.Event,
        emit: Callable[[Any], None],
        on_compute: Callable[[bool], None] | None,
    ) -> None:
        try:
            with self._gen_lock:
                if cancel.is_set() or self._llm is None:
                    return
                if on_compute:
                    on_compute(True)
                try:
                    self._run(tokens, sampling, cancel, emit)
                finally:
                    if self._cores is not None:
                        self._cores.rest()
                    if on_compute:
                        on_compute(False)
        except SmallfirstError as exc:
            emit(exc)
        except Exception as exc:
            log.exception("generation failed on %s", self.spec.name)
            emit(GenerationError(f"generation failed on {self.spec.name}: {exc}"))
        finally:
            emit(_DONE)

    def _run(
        self,
        tokens: list[int],
        sampling: Sampling,
        cancel: threading.Event,
        emit: Callable[[Any], None],
    ) -> None:
        import llama_cpp

        llm = self._llm
        vocab = llm._model.vocab
        n_vocab = llm.n_vocab()
        limit = llm.n_ctx() - len(tokens)
        if sampling.max_tokens is not None:
            limit = min(limit, sampling.max_tokens)
        llm.set_seed(sampling.seed if sampling.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        # llama-cpp-python's generate has no lazy grammar: a tool call the model may choose
        # to make (tool_choice auto) runs unconstrained here (the batched engine holds it)
        grammar = _grammar(None if sampling.grammar_triggers else sampling.grammar)
        stops = StopMatcher(sampling.stop)
        decoder = Utf8Decoder()
        generated = 0
        finish: FinishReason = "length"
        want_logprobs = sampling.logprobs
        stopped_by_sequence = False
        if limit > 0:
            for token in llm.generate(
                tokens,
                top_k=0,
                top_p=sampling.top_p,
                min_p=0.0,
                temp=sampling.temperature,
                repeat_penalty=1.0,
                frequency_penalty=sampling.frequency_penalty,
                presence_penalty=sampling.presence_penalty,
                grammar=grammar,
                logits_processor=_biased(sampling.logit_bias),
            ):
                if cancel.is_set():
                    log.info(
                        "%s: consumer gone; stopped after %d tokens", self.spec.name, generated
                    )
                    return
                if self._cores is not None and (n := self._cores.changed()) is not None:
                    llama_cpp.llama_set_n_threads(llm.ctx, n, n)  # from the next token on
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                generated += 1
                piece = llm.detokenize([token])
                text, hit = stops.feed(decoder.feed(piece))
                logprobs: tuple[TokenLogprob, ...] = ()
                if want_logprobs:
                    logprobs = (self._logprob(llm, token, piece, n_vocab, sampling.top_logprobs),)
                if hit:
                    emit(Chunk(text=text, logprobs=logprobs))
                    finish, stopped_by_sequence = "stop", True
                    break
                if text or logprobs:
                    emit(Chunk(text=text, logprobs=logprobs))
                if generated >= limit:
                    break
        tail = ""
        if not stopped_by_sequence:
            text, hit = stops.feed(decoder.flush())
            tail = text if hit else text + stops.flush()
        emit(
            Chunk(
                text=tail,
                finish_reason=finish,
                usage=Usage(prompt_tokens=len(tokens), completion_tokens=generated),
            )
        )

    def _logprob(self, llm: Any, token: int, piece: bytes, n_vocab: int, top: int) -> TokenLogprob:
        # With logits_all off, llama.cpp keeps the logits of the last evaluated position:
        # exactly the distribution this token was sampled from.
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
        return logits_logprob(logits, token, piece, top, llm.detokenize)


def _grammar(gbnf: str | None) -> Any:
    # built per request: llama-cpp-python parses it when Llama.generate sets up its sampler
    if not gbnf:
        return None
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_string(gbnf, verbose=False)


def _biased(logit_bias: tuple[tuple[int, float], ...]) -> Any:
    """``logit_bias`` as llama-cpp-python's logits processor: the first sampler of its chain,
    as llama.cpp's logit-bias sampler is the batched engine's first (same answers)."""
    if not logit_bias:
        return None
    from llama_cpp import LogitsProcessorList

    ids = np.array([t for t, _ in logit_bias], dtype=np.intc)
    values = np.array([b for _, b in logit_bias], dtype=np.single)

    def bias(_input_ids: Any, scores: Any) -> Any:
        # first in the chain: the candidates are still the whole vocabulary in id order
        scores[ids] += values
        return scores

    return LogitsProcessorList([bias])


def kv_cache_bytes(meta: dict[str, str], n_ctx: int) -> int:
    """Estimate an f16 KV cache of ``n_ctx`` cells from GGUF metadata (0 when the metadata
    is unusual)."""
    arch = meta.get("general.architecture", "")
    with contextlib.suppress(KeyError, ValueError, ZeroDivisionError):
        layers = int(meta[f"{arch}.block_count"])
        embd = int(meta[f"{arch}.embedding_length"])
        heads = int(meta[f"{arch}.attention.head_count"])
        kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads))
        return 2 * layers * n_ctx * (embd // heads) * kv_heads * 2
    return 0
