"""Sampler chains on a real model (SmolLM2-135M): the greedy fast path picks llama.cpp's token.

A greedy request with nothing else in its chain takes the argmax of the logits row in place
instead of running llama.cpp's greedy sampler; these tests decode real steps and check that
both give the same token every time, and that any other request still gets a chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from smallfirst.catalog import Catalog
from smallfirst.engines.base import Sampling
from smallfirst.engines.sampling import SamplerChain, logits_row
from smallfirst.settings import Settings
from tests.conftest import SMOL


@pytest.fixture(scope="module")
def context(settings: Settings) -> Iterator[tuple[Any, Any, Any, int]]:
    """A raw llama.cpp context on SmolLM2: (library, context, vocab, n_vocab)."""
    import llama_cpp

    catalog = Catalog(settings)
    path = catalog.file_path(catalog.get(SMOL))
    assert path is not None
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(
        str(path).encode(), llama_cpp.llama_model_default_params()
    )
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = 512
    params.n_threads = params.n_threads_batch = 2
    ctx = llama_cpp.llama_init_from_model(model, params)
    vocab = llama_cpp.llama_model_get_vocab(model)
    try:
        yield llama_cpp, ctx, vocab, llama_cpp.llama_vocab_n_tokens(vocab)
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


def decode(lib: Any, ctx: Any, tokens: list[int], pos: int) -> None:
    """One batch of ``tokens`` at ``pos`` on sequence 0, logits for the last."""
    batch = lib.llama_batch_init(len(tokens), 0, 1)
    try:
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i] = token, pos + i
            batch.n_seq_id[i], batch.seq_id[i][0] = 1, 0
            batch.logits[i] = i == len(tokens) - 1
        assert lib.llama_decode(ctx, batch) == 0
    finally:
        lib.llama_batch_free(batch)


def test_greedy_argmax_picks_llama_cpps_greedy_token(context: tuple[Any, Any, Any, int]) -> None:
    lib, ctx, vocab, n_vocab = context
    lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
    greedy = SamplerChain(Sampling(temperature=0.0), vocab, n_vocab)
    reference = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    lib.llama_sampler_chain_add(reference, lib.llama_sampler_init_greedy())
    try:
        assert greedy.argmax and greedy.chain is None
        prompt = [int(t) for t in range(300, 340)]
        decode(lib, ctx, prompt, 0)
        pos, seen = len(prompt), set()
        for _ in range(24):
            token = greedy.sample(ctx, -1)
            assert token == lib.llama_sampler_sample(reference, ctx, -1)
            assert token == int(logits_row(ctx, -1, n_vocab).argmax())
            seen.add(token)
            decode(lib, ctx, [token], pos)
            pos += 1
        assert len(seen) > 1  # the steps were not one repeated token
    finally:
        greedy.close()
        lib.llama_sampler_free(reference)


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(temperature=0.7, seed=1),
        Sampling(temperature=0.0, presence_penalty=0.5),
        Sampling(temperature=0.0, frequency_penalty=0.5),
        Sampling(temperature=0.0, logit_bias=((42, 5.0),)),
    ],
)
def test_anything_but_plain_greedy_keeps_a_chain(
    context: tuple[Any, Any, Any, int], sampling: Sampling
) -> None:
    _, _, vocab, n_vocab = context
    chain = SamplerChain(sampling, vocab, n_vocab)
    try:
        assert not chain.argmax and chain.chain is not None
    finally:
        chain.close()
        assert chain.chain is None
