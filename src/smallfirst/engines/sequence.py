"""One request inside the batched engine: its prompt, its place in the KV cache, its output.

A :class:`Sequence` is what the scheduler (:mod:`.scheduler`) keeps per request: the prompt
tokens still to evaluate, how many positions of its slot's KV cache it fills, the token it
sampled last (decoded at the next step), its sampler chain, and the text path out (UTF-8
assembly and stop sequences held back, as the one-at-a-time engine does). It turns each
sampled token into a :class:`~smallfirst.engines.base.Chunk` and knows when it is done:
end of generation, a stop sequence, ``max_tokens`` or its share of the context.

It also opens and closes the request's metering window, and hands chunks to the consumer
through ``emit``. A sequence whose client takes one body, not a stream (``coalesce``), emits
its first chunk at once (the time to first token stays true) and holds the rest until it
ends: one hand-off to the event loop per answer instead of one per token. It does not touch
llama.cpp: the scheduler decodes and samples.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from smallfirst.engines.base import Chunk, ComputeMeter, Sampling, TokenLogprob
from smallfirst.engines.sampling import SamplerChain
from smallfirst.engines.text import StopMatcher, Utf8Decoder
from smallfirst.types import FinishReason, Usage

__all__ = ["DONE", "Sequence"]

DONE = object()
"""The last item a sequence emits: nothing more will come."""


class Sequence:
    """A request's state between joining the batch and leaving it (scheduler thread only,
    except ``cancel`` and ``wanted``, which the consumer sets)."""

    def __init__(
        self,
        prompt: list[int],
        sampling: Sampling,
        emit: Callable[[Any], None],
        n_ctx_seq: int,
        *,
        meter: ComputeMeter | None = None,
        on_compute: Callable[[bool], None] | None = None,
        window: list[int] | None = None,
        background: bool = False,
        coalesce: bool = False,
    ) -> None:
        self.prompt = prompt
        self.coalesce = coalesce  # hold text chunks after the first until the end
        self.background = background  # a batch line: waits while a live prompt is read
        self.sampling = sampling
        self.emit = emit
        self.meter = meter
        self.on_compute = on_compute if meter is None else None
        # shared by the sequences of one request's choices: how many of them are active, so
        # that the request's metering window opens with the first and closes with the last
        self.window = window if window is not None else [0]
        # a choice that waits for another sequence of its request to read the prompt, then
        # copies its KV (the scheduler's group join)
        self.leader: Sequence | None = None
        self.followers: list[Sequence] = []  # the choices waiting on this one's prompt
        self.cancel = threading.Event()
        self.wanted = threading.Event()  # the consumer took what was emitted last
        limit = n_ctx_seq - len(prompt)
        if sampling.max_tokens is not None:
            limit = min(limit, sampling.max_tokens)
        self.limit = limit
        self.slot = -1
        self.n_past = 0  # positions of this sequence in its slot's KV cache
        self.cached = 0  # prompt tokens found in the slot's KV cache on joining
        self.pending: list[int] = []  # prompt tokens not evaluated yet
        self.next_token: int | None = None  # sampled, to be decoded at the next step
        self.generated: list[int] = []
        self.chain: SamplerChain | None = None
        self.finish: FinishReason | None = None
        self.active = False
        self.row = -1  # batch row holding this sequence's logits in the current step
        self.contributed = 0  # tokens this sequence put in the current step
        self.weight = 0  # its metering weight in the step (see scheduler.DECODE_TOKEN_WEIGHT)
        self._stops = StopMatcher(sampling.stop)
        self._decoder = Utf8Decoder()
        self._stopped_by_sequence = False
        self._emitted_text = False
        self._held: list[Chunk] = []  # text chunks held back (``coalesce``)

    @property
    def done(self) -> bool:
        return self.finish is not None

    def kv_tokens(self) -> list[int]:
        """The tokens whose KV this sequence left in its slot (prompt, then its output)."""
        return (self.prompt + self.generated)[: self.n_past]

    def set_active(self, active: bool) -> None:
        """Open or close the request's metering window (once each)."""
        if active == self.active:
            return
        self.active = active
        self.window[0] += 1 if active else -1
        if self.window[0] != (1 if active else 0):
            return
        if self.meter is not None:
            self.meter.set_active(active)
        elif self.on_compute is not None:
            self.on_compute(active)

    def accept(self, token: int, eog: bool, piece: bytes, logprob: TokenLogprob | None) -> None:
        """Take the token sampled for this sequence: emit its text, or finish."""
        if eog:
            self.finish = "stop"
            return
        self.generated.append(token)
        text, hit = self._stops.feed(self._decoder.feed(piece))
        logprobs = (logprob,) if logprob is not None else ()
        if hit:
            self.send(Chunk(text=text, logprobs=logprobs))
            self.finish, self._stopped_by_sequence = "stop", True
            return
        if text or logprobs:
            self.send(Chunk(text=text, logprobs=logprobs))
        if len(self.generated) >= self.limit:
            self.finish = "length"
            return
        self.next_token = token

    def final_chunk(self) -> Chunk:
        """The last chunk: what text was held back, the finish reason and the usage."""
        tail = ""
        if not self._stopped_by_sequence:
            text, hit = self._stops.feed(self._decoder.flush())
            tail = text if hit else text + self._stops.flush()
        usage = Usage(len(self.prompt), len(self.generated), cached_tokens=self.cached)
        return Chunk(text=tail, finish_reason=self.finish or "length", usage=usage)

    def send(self, item: Any) -> None:
        """Hand ``item`` to the consumer; with ``coalesce``, a text chunk after the first
        waits for the next item that is not one, and goes out merged just before it."""
        if isinstance(item, Chunk) and item.finish_reason is None and item.usage is None:
            if self.coalesce and self._emitted_text:
                self._held.append(item)
                return
            self._emitted_text = True
        if self._held:
            held, self._held = self._held, []
            self.wanted.clear()
            self.emit(merged(held))
        self.wanted.clear()
        self.emit(item)


def merged(chunks: list[Chunk]) -> Chunk:
    """Text chunks of one choice as one (their text and log-probabilities in order)."""
    return Chunk(
        text="".join(c.text for c in chunks),
        logprobs=tuple(lp for c in chunks for lp in c.logprobs),
        index=chunks[0].index,
    )
