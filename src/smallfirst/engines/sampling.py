"""Per-sequence sampling in llama.cpp's own sampler chain, and log-probabilities on request.

The batched engine gives each sequence a llama.cpp sampler chain built from its request:
``logit_bias``, repetition penalties (presence, frequency), the request's grammar (JSON for
``response_format``, see :mod:`.grammars`; a tool call, lazily for ``tool_choice`` auto, see
:mod:`.toolcalls`), then greedy at temperature 0, else top-p,
temperature and a seeded draw.
A request that is greedy and nothing else (no bias, penalty or grammar) needs no chain: its
token is the argmax of the row, read in place through a NumPy view of llama.cpp's logits (no
copy). llama.cpp's own greedy sampler first builds a candidate array of the whole vocabulary,
about ten times the work (figures in bench/results/serving/peers.md); the same token.
The chain is the one llama-cpp-python's ``Llama.generate`` builds for the one-at-a-time
engine (same samplers, same order, same 64-token penalty window), so both engines sample
alike. Sampling runs in C on the logits llama.cpp already holds; the logits are copied to
Python only for a request that asked for log-probabilities.

This module does not decode batches or keep sequences (see :mod:`.scheduler`).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from smallfirst.engines.base import Sampling, TokenLogprob, TopLogprob

__all__ = ["PENALTY_LAST_N", "SamplerChain", "logits_logprob", "logits_row", "token_logprob"]

# llama-cpp-python's Llama(last_n_tokens_size=64): the one-at-a-time engine's window
PENALTY_LAST_N = 64


class SamplerChain:
    """One sequence's llama.cpp sampler chain; ``close`` frees it (idempotent)."""

    def __init__(self, sampling: Sampling, vocab: Any, n_vocab: int) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self._n_vocab = n_vocab
        self.chain: Any = None
        # greedy and nothing else: argmax in place (see the module docstring)
        self.argmax = sampling.temperature == 0.0 and not (
            sampling.logit_bias
            or sampling.presence_penalty
            or sampling.frequency_penalty
            or sampling.grammar
        )
        if self.argmax:
            return
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self.chain = chain
        add = llama_cpp.llama_sampler_chain_add
        if sampling.logit_bias:
            # first, as llama.cpp's common sampler puts it (llama.cpp copies the array)
            n = len(sampling.logit_bias)
            biases = (llama_cpp.llama_logit_bias * n)(
                *(llama_cpp.llama_logit_bias(t, b) for t, b in sampling.logit_bias)
            )
            add(chain, llama_cpp.llama_sampler_init_logit_bias(n_vocab, n, biases))
        if sampling.presence_penalty or sampling.frequency_penalty:
            add(
                chain,
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab,
                    PENALTY_LAST_N,
                    1.0,
                    sampling.frequency_penalty,
                    sampling.presence_penalty,
                ),
            )
        if sampling.grammar:
            grammar = _grammar_sampler(llama_cpp, vocab, sampling)
            if not grammar:
                self.close()
                raise RuntimeError("llama.cpp refused the request's grammar")
            add(chain, grammar)
        if sampling.temperature == 0.0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            seed = llama_cpp.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed
            # as Llama._init_sampler: top_k 0 and min_p 0 are no-ops, typical 1.0 too
            add(chain, llama_cpp.llama_sampler_init_top_k(0))
            add(chain, llama_cpp.llama_sampler_init_typical(1.0, 1))
            add(chain, llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_min_p(0.0, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(sampling.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def sample(self, ctx: Any, index: int) -> int:
        """Sample from the logits of batch row ``index`` (the chain also accepts the token)."""
        if self.argmax:
            return int(logits_row(ctx, index, self._n_vocab).argmax())
        return int(self._lib.llama_sampler_sample(self.chain, ctx, index))

    def close(self) -> None:
        if self.chain is not None:
            self._lib.llama_sampler_free(self.chain)
            self.chain = None


def _grammar_sampler(lib: Any, vocab: Any, sampling: Sampling) -> Any:
    """The request's grammar sampler; lazy (free text until the trigger is written, as
    llama.cpp's server does for tool calls) when the request names a trigger."""
    gbnf = (sampling.grammar or "").encode("utf-8")
    triggers = sampling.grammar_triggers
    if not triggers:
        return lib.llama_sampler_init_grammar(vocab, gbnf, b"root")
    patterns = (ctypes.c_char_p * len(triggers))(*(t.encode("utf-8") for t in triggers))
    return lib.llama_sampler_init_grammar_lazy_patterns(
        vocab, gbnf, b"root", patterns, len(triggers), None, 0
    )


def log_softmax(logits: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
    """llama-cpp-python's ``Llama.logits_to_logprobs`` for one row."""
    peak = np.amax(logits)
    shifted = np.subtract(logits, peak if np.isfinite(peak) else 0, dtype=np.single)
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(shifted)))
    return np.asarray(shifted - total, dtype=np.single)


def logits_logprob(
    logits: npt.NDArray[np.single],
    token: int,
    piece: bytes,
    top: int,
    detokenize: Callable[[list[int]], bytes],
) -> TokenLogprob:
    """The log-probability of ``token`` (and the ``top`` best) under one row of raw logits."""
    logprobs = log_softmax(logits)
    alternatives: tuple[TopLogprob, ...] = ()
    if top:
        best = np.argpartition(-logprobs, top)[:top]
        best = best[np.argsort(-logprobs[best])]
        alternatives = tuple(_top(detokenize([int(t)]), float(logprobs[t])) for t in best)
    return TokenLogprob(
        token=piece.decode("utf-8", errors="replace"),
        logprob=float(logprobs[token]),
        bytes=tuple(piece),
        top=alternatives,
    )


def token_logprob(
    ctx: Any, index: int, n_vocab: int, token: int, piece: bytes, top: int, model: Any
) -> TokenLogprob:
    """The log-probability of ``token`` under the raw logits of batch row ``index``."""
    return logits_logprob(logits_row(ctx, index, n_vocab), token, piece, top, model.detokenize)


def logits_row(ctx: Any, index: int, n_vocab: int) -> npt.NDArray[np.single]:
    """Batch row ``index``'s logits as a NumPy view of llama.cpp's buffer (no copy; valid
    until the next ``llama_decode``)."""
    import llama_cpp

    row = llama_cpp.llama_get_logits_ith(ctx, index)
    return np.ctypeslib.as_array(ctypes.cast(row, ctypes.POINTER(ctypes.c_float)), (n_vocab,))


def _top(piece: bytes, logprob: float) -> TopLogprob:
    return TopLogprob(piece.decode("utf-8", errors="replace"), logprob, tuple(piece))
