"""Continuous batching: one thread per loaded model decodes every running sequence together.

The scheduler owns one llama.cpp context with ``parallel`` sequence slots (each slot its own
KV stream of the per-request context). Each step builds one batch: the next token of every
sequence that is generating, then prompt tokens of sequences still reading their prompt, at
most ``prefill_chunk_tokens`` each per step, so a request that joins with a long prompt does
not stall the streams already running. After ``llama_decode`` each sequence that has logits
samples its next token in its own llama.cpp sampler chain (:mod:`.sampling`).

Slots and passes: llama.cpp computes a batch in one pass over the weights per run of
consecutive slot ids, so the batch is laid out in slot order, and a new request takes the
slot :func:`~smallfirst.engines.slots.choose_slot` picks: the one that saves most, counting
both the prompt tokens its cached prefix spares and the passes a split would add.

Prefix reuse: a sequence that finishes leaves its KV in its slot; a new request that takes it
evaluates only the rest of its prompt (at least the last token, whose logits it samples
from), and the reused count is reported as ``cached_tokens``. The ``prefix_reuse`` setting
off makes every prompt read in full. A request whose client went away (``cancel``) leaves at
the next step, and its slot's KV is cleared at once.

Choices (``n`` > 1): the sequences of one request join together, when there are slots for
all of them. The first reads the prompt; the others wait, and at the step where its prompt
is read they copy its slot's KV (``llama_memory_seq_cp``), sample their first token from the
same logits with their own sampler chains, and from then on decode in the batch like any
other sequence: the prompt is evaluated once for all of them.

Background sequences (batch lines, :data:`~smallfirst.engines.base.BACKGROUND`) skip every
step in which a live sequence is still reading its prompt: a live request waits for at most
the step already running, never for the batch's decoding.

Metering: after each step the time the process spent is split among the sequences in it by
the tokens each contributed (``ComputeMeter.split_step``), a decoded token weighing
:data:`DECODE_TOKEN_WEIGHT` prompt tokens.

Threads: with the ``adaptive_threads`` setting, each step asks
:class:`~smallfirst.engines.cores.FreeCores` how many threads to decode with (fewer while
other processes keep the cores busy) and tells llama.cpp when the count changes
(``llama_set_n_threads``).

Admission (how many may wait, for how long) is the engine's job (:mod:`.batched`): the
scheduler runs whatever it is handed, ``parallel`` at a time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from typing import Any

from smallfirst.engines.cores import FreeCores
from smallfirst.engines.sampling import SamplerChain, token_logprob
from smallfirst.engines.sequence import DONE, Sequence
from smallfirst.engines.slots import choose_slot
from smallfirst.errors import GenerationError, SmallfirstError

__all__ = ["DECODE_TOKEN_WEIGHT", "HANDOFF_WAIT_S", "Scheduler"]

log = logging.getLogger(__name__)

# How long a step waits for consumers to pick up its chunks (see LlamaEngine's hand-off:
# an event loop that must preempt llama.cpp's threads to send each token stalls them).
HANDOFF_WAIT_S = 0.005

# A decoded token (its logits computed, its attention over the whole sequence) costs about
# three prompt tokens inside one step: bench/step_weights.py measured 3.07 on Qwen-0.5B.
DECODE_TOKEN_WEIGHT = 3


class Scheduler:
    """Decodes up to ``parallel`` sequences of one model in one thread; ``close`` stops it."""

    def __init__(
        self,
        name: str,
        model: Any,
        ctx: Any,
        *,
        parallel: int,
        n_batch: int,
        chunk_tokens: int,
        reuse_prefixes: bool = True,
        cores: FreeCores | None = None,
    ) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.name = name
        self._model = model
        self._ctx = ctx
        self._vocab = model.vocab
        self._n_vocab = int(model.n_vocab())
        self._memory = llama_cpp.llama_get_memory(ctx)
        self.parallel = parallel
        self._n_batch = n_batch
        self._chunk = max(1, min(chunk_tokens, n_batch))
        self._reuse = reuse_prefixes
        self._cores = cores
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._cond = threading.Condition()
        self._incoming: deque[list[Sequence]] = deque()  # groups: a request's choices
        self._active: list[Sequence] = []
        self._slots: list[list[int]] = [[] for _ in range(parallel)]  # tokens in each slot's KV
        self._slot_used = [0.0] * parallel
        self._stopping = False
        self._forget = False
        self.steps = 0
        self.tokens = 0  # tokens put through llama_decode (prompt and generated), all steps
        self._thread = threading.Thread(target=self._loop, name=f"batch-{name}", daemon=True)
        self._thread.start()

    def submit(self, seqs: Sequence | list[Sequence]) -> None:
        """Queue a request's sequence, or its choices' (at most ``parallel``) to join together."""
        group = seqs if isinstance(seqs, list) else [seqs]
        with self._cond:
            if self._stopping:
                raise GenerationError(f"{self.name} is being unloaded")
            self._incoming.append(group)
            self._cond.notify()

    def forget(self) -> None:
        """Drop the cached prefix of every idle slot (the warm-up's prompt is nobody's)."""
        with self._cond:
            self._forget = True
            self._cond.notify()

    def wake(self) -> None:
        """A consumer went away: let the loop notice now rather than at its next step."""
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        """Stop the thread; sequences still running end with an error. Frees the batch."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._active and self._cores is not None:
                    self._cores.rest()
                while not (self._stopping or self._incoming or self._active or self._forget):
                    self._cond.wait()
                if self._stopping:
                    break
                if self._forget:
                    self._forget = False
                    self._clear_idle_slots()
                joining: list[list[Sequence]] = []
                self._drop_cancelled()
                room = self.parallel - len(self._active)
                while self._incoming and len(self._incoming[0]) <= room:
                    room -= len(self._incoming[0])
                    joining.append(self._incoming.popleft())
            try:
                for group in joining:
                    self._join_group(group)
                if self._active:
                    self._step()
            except Exception as exc:  # a failed decode: end what ran, start clean
                log.exception("batched decoding failed on %s", self.name)
                for seq in list(self._active):
                    self._leave(seq, GenerationError(f"generation failed on {self.name}: {exc}"))
                self._lib.llama_memory_clear(self._memory, True)
                self._slots = [[] for _ in range(self.parallel)]
        for seq in [*self._active, *(s for group in self._incoming for s in group)]:
            self._leave(seq, GenerationError(f"{self.name} was unloaded mid-generation"))
        self._incoming.clear()

    def _drop_cancelled(self) -> None:
        for seq in list(self._active):
            if seq.cancel.is_set():
                log.info(
                    "%s: consumer gone; stopped after %d tokens", self.name, len(seq.generated)
                )
                self._leave(seq, None, keep_kv=False)

    def _clear_idle_slots(self) -> None:
        busy = {s.slot for s in self._active}
        for slot in range(self.parallel):
            if slot not in busy and self._slots[slot]:
                self._clear_slot(slot)

    def _clear_slot(self, slot: int) -> None:
        with contextlib.suppress(Exception):
            self._lib.llama_memory_seq_rm(self._memory, slot, -1, -1)
        self._slots[slot] = []

    def _join_group(self, group: list[Sequence]) -> None:
        leader = group[0]
        self._join(leader)
        for seq in group[1:]:
            # a choice copies the first one's KV once that has read the prompt; if the first
            # could not join, it reads the prompt itself
            self._join(seq, leader if leader in self._active else None)

    def _join(self, seq: Sequence, leader: Sequence | None = None) -> None:
        if seq.cancel.is_set():
            seq.send(DONE)
            return
        if seq.limit <= 0:
            seq.finish = "length"
            seq.send(seq.final_chunk())
            seq.send(DONE)
            return
        busy = {s.slot for s in self._active}
        # a choice's slot is overwritten by its leader's KV: nothing of it is reused
        reuse_prefix = self._reuse and leader is None
        choice = choose_slot(
            self._slots, self._slot_used, busy, seq.prompt, seq.limit, reuse_prefixes=reuse_prefix
        )
        assert choice is not None  # the loop admits no more than there are free slots
        slot, reuse = choice.slot, choice.reuse
        if leader is not None:
            seq.leader = leader
            leader.followers.append(seq)
        self._lib.llama_memory_seq_rm(self._memory, slot, reuse, -1)
        del self._slots[slot][reuse:]
        seq.slot, seq.n_past, seq.cached = slot, reuse, reuse
        seq.pending = seq.prompt[reuse:] if leader is None else []
        try:
            seq.chain = SamplerChain(seq.sampling, self._vocab, self._n_vocab)
        except Exception as exc:
            seq.send(GenerationError(f"could not set up sampling on {self.name}: {exc}"))
            seq.send(DONE)
            return
        self._active.append(seq)
        seq.set_active(True)

    def _fill(self) -> list[tuple[Sequence, list[int]]]:
        """Put this step's tokens in the batch: one per generating sequence, then prompt
        chunks while there is room. Returns each contributor and the tokens it added."""
        batch = self._batch
        added: list[tuple[Sequence, list[int]]] = []
        n = 0

        def put(seq: Sequence, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = seq.n_past + seq.contributed
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.slot
            batch.logits[n] = logits
            if logits:
                seq.row = n
            seq.contributed += 1
            n += 1

        # in slot order, so that llama.cpp makes one pass per run of consecutive slots; the
        # room for prompt chunks leaves a place for every decode token still to come
        ordered = sorted(self._active, key=lambda s: s.slot)
        # interactive first: while a live request reads its prompt, background sequences
        # (batch lines) sit the step out, so its first token comes at its own pace
        if any(seq.pending and not seq.background for seq in ordered):
            for seq in ordered:
                seq.row, seq.contributed = -1, 0
            ordered = [seq for seq in ordered if not seq.background]
        decoding = sum(1 for seq in ordered if seq.next_token is not None)
        for seq in ordered:
            seq.row, seq.contributed = -1, 0
            if seq.next_token is not None:
                put(seq, seq.next_token, True)
                added.append((seq, [seq.next_token]))
                seq.weight = DECODE_TOKEN_WEIGHT
                decoding -= 1
                continue
            room = min(self._n_batch - n - decoding, self._chunk)
            if not seq.pending or room <= 0:
                continue
            part = seq.pending[:room]
            for i, token in enumerate(part):
                put(seq, token, i == len(part) - 1 and len(part) == len(seq.pending))
            added.append((seq, part))
            seq.weight = len(part)
        batch.n_tokens = n
        return added

    def _step(self) -> None:
        added = self._fill()
        if not added:
            return
        if self._cores is not None and (n := self._cores.changed()) is not None:
            self._lib.llama_set_n_threads(self._ctx, n, n)
        ret = self._lib.llama_decode(self._ctx, self._batch)
        if ret != 0:
            raise GenerationError(f"llama_decode returned {ret}")
        self.steps += 1
        self.tokens += self._batch.n_tokens
        now = time.monotonic()
        for seq, tokens in added:
            seq.n_past += len(tokens)
            self._slots[seq.slot].extend(tokens)
            self._slot_used[seq.slot] = now
            if seq.pending:
                del seq.pending[: len(tokens)]
            else:
                seq.next_token = None
        metered = [seq for seq, _ in added if seq.meter is not None]
        if metered and metered[0].meter is not None:
            metered[0].meter.split_step([(s.meter, s.weight) for s in metered if s.meter])
        emitted: list[Sequence] = []
        for seq, _ in added:
            if seq.row < 0:
                continue
            self._sample(seq)
            emitted.append(seq)
            if seq.followers:
                emitted.extend(self._follow(seq))
            if seq.done:
                self._leave(seq, None)
        deadline = time.monotonic() + HANDOFF_WAIT_S
        for seq in emitted:
            seq.wanted.wait(max(0.0, deadline - time.monotonic()))

    def _follow(self, leader: Sequence) -> list[Sequence]:
        """``leader`` has read the prompt: its waiting choices copy its KV and sample their
        first token from its logits. Returns those that sampled."""
        followers, leader.followers = leader.followers, []
        sampled = []
        for seq in followers:
            seq.leader = None
            if seq not in self._active:  # its client went away meanwhile
                continue
            self._lib.llama_memory_seq_cp(self._memory, leader.slot, seq.slot, -1, -1)
            self._slots[seq.slot] = list(self._slots[leader.slot])
            seq.n_past, seq.cached, seq.row = leader.n_past, leader.cached, leader.row
            self._sample(seq)
            sampled.append(seq)
            if seq.done:
                self._leave(seq, None)
        return sampled

    def _sample(self, seq: Sequence) -> None:
        assert seq.chain is not None
        token = seq.chain.sample(self._ctx, seq.row)
        eog = bool(self._lib.llama_vocab_is_eog(self._vocab, token))
        piece = b"" if eog else self._model.detokenize([token])
        logprob = None
        if seq.sampling.logprobs and not eog:
            logprob = token_logprob(
                self._ctx,
                seq.row,
                self._n_vocab,
                token,
                piece,
                seq.sampling.top_logprobs,
                self._model,
            )
        seq.accept(token, eog, piece, logprob)

    def _leave(self, seq: Sequence, error: SmallfirstError | None, *, keep_kv: bool = True) -> None:
        """A sequence is done (or failed, or lost its client): free what it held."""
        if seq in self._active:
            self._active.remove(seq)
        if seq.slot >= 0 and (error is not None or not keep_kv):
            self._clear_slot(seq.slot)
        if seq.chain is not None:
            seq.chain.close()
            seq.chain = None
        seq.set_active(False)
        if error is not None:
            seq.send(error)
        elif seq.done:
            seq.send(seq.final_chunk())
        seq.send(DONE)
