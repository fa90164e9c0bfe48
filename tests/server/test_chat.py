"""Chat and completions through a real gateway on loopback, driven by the openai client.

Where two answers are compared, both are asked right after the same prompt (see
:func:`settle`): llama-cpp-python keeps the last prompt in the KV cache and, asked it again,
re-evaluates only its final token, which gives logits a hair away from a full evaluation,
enough to turn a greedy answer at a near-tie ("realm, teeming" fresh, "realm, where" cached).
A comparison of a fresh answer with a cached one would rest on that arithmetic, and on which
test ran before.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import openai
import pytest

from smallfirst.catalog import Catalog
from smallfirst.settings import Settings
from tests.conftest import QWEN, SMOL, LiveServer, require_models

PROMPT = [{"role": "user", "content": "Write three sentences about the sea."}]


def chat(client: openai.OpenAI, **kw: Any) -> Any:
    args: dict[str, Any] = {"model": SMOL, "messages": PROMPT, "temperature": 0, "max_tokens": 40}
    args.update(kw)
    return client.chat.completions.create(**args)


def settle(client: openai.OpenAI, **kw: Any) -> None:
    """Ask ``chat(client, **kw)`` once, two tokens long, so the next answers start alike.

    Two tokens, not one: after one, the cache holds exactly the prompt and its logits, which
    the next request would reuse as they are (fresh or not) instead of re-reading the prompt.
    """
    chat(client, **{**kw, "max_tokens": 2})


def tokenizer_count(settings: Settings, model: str, messages: list[dict[str, str]]) -> int:
    """Prompt tokens as the model's own tokenizer and chat template count them."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    catalog = Catalog(settings)
    llm = llama_cpp.Llama(
        str(catalog.file_path(catalog.get(model))), vocab_only=True, verbose=False
    )
    m = llm._model
    prompt = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=m.token_get_text(m.token_eos()),
        bos_token=m.token_get_text(m.token_bos()),
    )(messages=messages).prompt
    n = len(llm.tokenize(prompt.encode(), add_bos=False, special=True))
    llm.close()
    return n


def test_chat_non_stream(client: openai.OpenAI, settings: Settings) -> None:
    r = chat(client)
    assert r.model == SMOL
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.usage is not None
    assert r.usage.prompt_tokens == tokenizer_count(settings, SMOL, PROMPT)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_auto_names_the_model_that_answered(client: openai.OpenAI) -> None:
    r = chat(client, model="auto", max_tokens=3)
    assert r.model == SMOL


def test_stream_matches_non_stream(client: openai.OpenAI) -> None:
    settle(client)
    full = chat(client)
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == full.usage
    assert all(c.model == SMOL for c in chunks)


def test_stream_without_usage_option_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(chat(client, stream=True, max_tokens=3))
    assert all(c.usage is None for c in chunks) and chunks[-1].choices


def test_max_tokens_honoured(client: openai.OpenAI) -> None:
    for kw in ({"max_tokens": 7}, {"max_completion_tokens": 7, "max_tokens": None}):
        r = chat(client, **kw)
        assert r.choices[0].finish_reason == "length"
        assert r.usage is not None and r.usage.completion_tokens == 7


def test_stop_sequence_cuts_exactly(client: openai.OpenAI) -> None:
    settle(client)
    base = chat(client, max_tokens=60).choices[0].message.content
    assert base and len(base) > 30
    stop = base[20:26]
    cut = base[: base.index(stop)]
    for stream in (False, True):
        if stream:
            text = "".join(
                c.choices[0].delta.content or ""
                for c in chat(client, max_tokens=60, stop=[stop], stream=True)
            )
        else:
            r = chat(client, max_tokens=60, stop=stop)
            assert r.choices[0].finish_reason == "stop"
            text = r.choices[0].message.content
        assert text == cut


def test_seed_makes_sampling_repeatable(client: openai.OpenAI) -> None:
    settle(client)
    a = chat(client, temperature=1.0, seed=7).choices[0].message.content
    b = chat(client, temperature=1.0, seed=7).choices[0].message.content
    assert a == b


def test_logprobs(client: openai.OpenAI) -> None:
    r = chat(client, max_tokens=8, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == 8 == r.usage.completion_tokens
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        tops = [a.logprob for a in t.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        # greedy decoding picks the most likely token
        assert t.token == t.top_logprobs[0].token and t.logprob == pytest.approx(tops[0])


def test_penalties_are_accepted_and_change_output(client: openai.OpenAI) -> None:
    plain = chat(client, max_tokens=60).choices[0].message.content
    penalised = chat(client, max_tokens=60, frequency_penalty=2.0, presence_penalty=2.0)
    assert penalised.choices[0].message.content != plain


def test_system_and_assistant_turns(client: openai.OpenAI) -> None:
    r = chat(
        client,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
        ],
        max_tokens=10,
    )
    assert r.choices[0].message.content


def test_json_object_output_parses(client: openai.OpenAI, settings: Settings) -> None:
    require_models(settings, QWEN)
    r = client.chat.completions.create(
        model=QWEN,
        messages=[
            {"role": "system", "content": "Reply in JSON."},
            {
                "role": "user",
                "content": 'Give {"city": ..., "country": ...} for the capital of France.',
            },
        ],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=60,
    )
    assert r.model == QWEN
    data = json.loads(r.choices[0].message.content or "")
    assert isinstance(data, dict) and "paris" in json.dumps(data).lower()


def test_two_concurrent_clients_on_one_model(client: openai.OpenAI) -> None:
    # one prompt (so that every answer starts from the same cache), two lengths (so that
    # answers handed to the wrong client would show)
    lengths = (40, 20)
    settle(client)
    expected = chat(client, max_tokens=lengths[0]).choices[0].message.content
    got: dict[int, Any] = {}

    def ask(i: int) -> None:
        got[i] = chat(client, max_tokens=lengths[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert expected and got[0].choices[0].message.content == expected
    short = got[1].choices[0].message.content
    assert got[1].usage.completion_tokens == lengths[1] and short and short != expected
    assert expected.startswith(short)


def test_models_and_health(client: openai.OpenAI, gateway: LiveServer) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "auto" and SMOL in ids
    import httpx

    health = httpx.get(gateway.url + "/health").json()
    assert health["status"] == "ok" and SMOL in health["models_available"]


def test_completions_on_base_model(settings: Settings) -> None:
    require_models(settings, "gemma-3-270m")
    with LiveServer(settings) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        # the same prompt first, so that the two compared below start alike (module docstring)
        client.completions.create(
            model="gemma-3-270m", prompt="The capital of France is", max_tokens=2
        )
        r = client.completions.create(
            model="gemma-3-270m",
            prompt="The capital of France is",
            max_tokens=8,
            temperature=0,
            logprobs=2,
        )
        assert r.model == "gemma-3-270m" and r.choices[0].text
        assert r.usage is not None and r.usage.completion_tokens == len(
            r.choices[0].logprobs.tokens
        )
        streamed = "".join(
            c.choices[0].text
            for c in client.completions.create(
                model="gemma-3-270m",
                prompt="The capital of France is",
                max_tokens=8,
                temperature=0,
                stream=True,
            )
        )
        assert streamed == r.choices[0].text
        with pytest.raises(openai.BadRequestError, match="base model"):
            client.chat.completions.create(model="gemma-3-270m", messages=PROMPT)


@pytest.mark.fast
def test_fast_text_event_matches_the_full_rendering() -> None:
    from smallfirst.server.responses import Envelope, stream_chunk

    for kind in ("chat", "text"):
        env = Envelope(kind, "m")  # type: ignore[arg-type]
        for text in ("plain", 'quote " and \\ and \n newline', "ünïcödé ✓", ""):
            event = env.text_event(text)
            assert event.startswith(b"data: ") and event.endswith(b"\n\n")
            assert json.loads(event[6:]) == stream_chunk(env, text)
