"""The embedding engine: a local GGUF model in llama.cpp's embedding mode.

An :class:`EmbeddingEngine` owns its own llama.cpp context, separate from the model's chat
context: embeddings need ``embeddings=True`` and mean pooling, which a generating context
cannot have. The vector of an input is the mean of its tokens' last hidden states,
L2-normalised, so that a dot product is the cosine similarity.

Inputs are token lists (the server tokenizes text with :meth:`EmbeddingEngine.tokenize`,
the model's own tokenizer with its own BOS convention, as llama.cpp's server does). One
request's inputs are packed into as few ``llama_decode`` calls as the context allows: as
many whole sequences per call as fit ``n_batch`` tokens (the physical batch is as large as
the context, because a pooled sequence must be computed in one piece). The context is
``embedding_n_ctx`` tokens, small: llama.cpp keeps a vocabulary-wide output row for every
token of a batch in embedding mode, and its size is counted in the engine's memory.
Requests take turns behind the engine's admission, one at a time, like the one-at-a-time
chat engine.

It is a :class:`~smallfirst.engines.llama.LlamaEngine` so that the pool counts its memory,
unloads it when idle and closes its admission at shutdown like any local model; it does
not generate text, and it does not decide which model embeds (the catalog says which can).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from smallfirst.catalog import ModelSpec
from smallfirst.engines.admission import Admission, AdmissionObserver, Ticket
from smallfirst.engines.base import Chunk, GenerationRequest
from smallfirst.engines.llama import LlamaEngine
from smallfirst.errors import (
    EmbeddingInputTooLongError,
    GenerationError,
    InvalidRequestError,
    UnsupportedError,
)
from smallfirst.settings import Settings

__all__ = ["EMBEDDING_SUFFIX", "EmbeddingEngine", "pack"]

log = logging.getLogger(__name__)

EMBEDDING_SUFFIX = " (embeddings)"
"""Added to a model's name where its embedding context is named apart from its chat one
(the pool's engines, the admission queue's metrics); model names hold no spaces, so it
never names a model of its own."""

Vectors = list[np.ndarray]


def pack(lengths: Sequence[int], max_tokens: int, max_seqs: int) -> list[range]:
    """Consecutive inputs grouped so that each group fits one ``llama_decode``: at most
    ``max_tokens`` tokens and ``max_seqs`` sequences (every length is at most max_tokens)."""
    groups: list[range] = []
    start, tokens = 0, 0
    for i, n in enumerate(lengths):
        if i > start and (tokens + n > max_tokens or i - start >= max_seqs):
            groups.append(range(start, i))
            start, tokens = i, 0
        tokens += n
    if lengths:
        groups.append(range(start, len(lengths)))
    return groups


class EmbeddingEngine(LlamaEngine):
    """A local GGUF model's embedding context. Loads on first use; ``unload`` frees it."""

    purpose = " for embeddings"

    def __init__(
        self,
        spec: ModelSpec,
        path: Path,
        settings: Settings,
        observer: AdmissionObserver | None = None,
    ) -> None:
        super().__init__(spec, path, settings, observer)
        self.admission = Admission(
            spec.name + EMBEDDING_SUFFIX, 1, settings.max_queue, settings.queue_timeout_s, observer
        )

    def _want_ctx(self) -> int:
        return min(self._settings.embedding_n_ctx, self.spec.context_length)

    def load(self) -> None:
        fresh = not self.loaded
        super().load()
        if fresh and self._llm is not None:
            # llama.cpp keeps a float per vocabulary entry for every token of a batch (each
            # is an output in embedding mode), and its hidden state: the bulk, past the KV
            self.memory_bytes += 4 * self.n_ctx * (self.n_vocab + self.n_embd)

    def _open(self, llama_cpp: Any, **params: Any) -> Any:
        n_ctx = self._want_ctx()
        return super()._open(
            llama_cpp,
            embedding=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            # one ubatch holds the longest input whole: a pooled sequence is computed in one
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            **params,
        )

    @property
    def n_embd(self) -> int:
        """The vector's length (the model's hidden size)."""
        return int(self._llm.n_embd()) if self._llm is not None else 0

    @property
    def n_vocab(self) -> int:
        return int(self._llm.n_vocab()) if self._llm is not None else 0

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = False) -> list[int]:
        """``text`` as the model's tokenizer splits it (BOS where the model adds one)."""
        assert self._llm is not None
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def token_lists(self, inputs: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
        """Every input as tokens, known to fit the context and the vocabulary (a 400 before
        anything runs otherwise). Blocking: tokenizing thousands of inputs takes a while."""
        lists = [self.tokenize(x) if isinstance(x, str) else list(x) for x in inputs]
        n_ctx, n_vocab = self.n_ctx, self.n_vocab
        for i, tokens in enumerate(lists):
            if len(tokens) > n_ctx:
                raise EmbeddingInputTooLongError(i, len(tokens), n_ctx)
            if not tokens:
                raise InvalidRequestError(f"input[{i}] has no tokens.", param="input")
            bad = next((t for t in tokens if not 0 <= t < n_vocab), None)
            if bad is not None:
                raise InvalidRequestError(
                    f"input[{i}] holds token id {bad}, outside {self.spec.name}'s vocabulary "
                    f"of {n_vocab} tokens.",
                    param="input",
                )
        return lists

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        raise UnsupportedError(f"{self.spec.name}'s embedding context does not generate text")

    async def embed(
        self, inputs: Sequence[Sequence[int]], on_compute: Callable[[bool], None] | None = None
    ) -> Vectors:
        """One unit vector per token list, in order; waits its turn in the admission.

        ``on_compute`` opens and closes the caller's metering window around the compute.
        """
        self.in_flight += 1
        self.last_used = time.monotonic()
        cancel = threading.Event()
        ticket: Ticket | None = None
        try:
            if not self.loaded:
                await asyncio.to_thread(self.load)
            ticket = await self.admission.acquire()
            ticket.on_abort = cancel.set
            vectors = await asyncio.to_thread(self._compute, inputs, cancel, on_compute)
            if vectors is None:
                raise GenerationError(f"embedding on {self.spec.name} was stopped")
            return vectors
        finally:
            cancel.set()  # a caller gone: the worker stops before its next decode
            if ticket is not None:
                self.admission.release(ticket)
            self.in_flight -= 1
            self.last_used = time.monotonic()

    def _compute(
        self,
        inputs: Sequence[Sequence[int]],
        cancel: threading.Event,
        on_compute: Callable[[bool], None] | None,
    ) -> Vectors | None:
        with self._gen_lock:
            if cancel.is_set() or self._llm is None:
                return None
            if on_compute:
                on_compute(True)
            try:
                return self._decode_all(inputs, cancel)
            except RuntimeError as exc:  # llama_decode's failure
                log.exception("embedding failed on %s", self.spec.name)
                raise GenerationError(f"embedding failed on {self.spec.name}: {exc}") from exc
            finally:
                if on_compute:
                    on_compute(False)

    def _decode_all(
        self, inputs: Sequence[Sequence[int]], cancel: threading.Event
    ) -> Vectors | None:
        import llama_cpp

        llm = self._llm
        ctx, batch = llm._ctx, llm._batch
        out: Vectors = []
        try:
            max_seqs = max(1, int(llm.context_params.n_seq_max))
            n_embd = self.n_embd
            for group in pack([len(t) for t in inputs], llm.n_batch, max_seqs):
                if cancel.is_set():
                    return None
                batch.reset()
                for seq, i in enumerate(group):
                    # every token an output: mean pooling reads each one's hidden state
                    batch.add_sequence(inputs[i], seq, True)
                ctx.kv_cache_clear()
                ctx.decode(batch)
                for seq in range(len(group)):
                    pointer = llama_cpp.llama_get_embeddings_seq(ctx.ctx, seq)
                    vector = np.ctypeslib.as_array(pointer, shape=(n_embd,)).copy()
                    norm = float(np.linalg.norm(vector))
                    out.append(vector / norm if norm > 0 else vector)
        finally:
            batch.reset()
            ctx.kv_cache_clear()
        return out
