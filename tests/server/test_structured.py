"""``response_format`` ``json_schema`` through a real gateway, the openai client and Qwen2.5-0.5B.

Both in-process engines hold the reply to a grammar built from the schema, so a strict
answer validates against it (checked with ``jsonschema_rs``), streamed or not; the SDK's
``parse()`` with a pydantic model gets its object back; the response cache tells two schemas
apart. The 400s for schemas the grammar cannot enforce are in tests/server/test_errors.py
(no model needed) and tests/engines/test_grammars.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import jsonschema_rs
import openai
import pytest
from pydantic import BaseModel, Field

from smallfirst.settings import Settings
from tests.conftest import QWEN, LiveServer, require_models

MSG: list[Any] = [
    {"role": "system", "content": "You reply with JSON only."},
    {
        "role": "user",
        "content": "Describe the city of Paris: its name, country, rough "
        "population, two languages spoken there, and whether it is a capital or a town.",
    },
]

CITY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "country": {"type": "string", "maxLength": 40},
        "population": {"type": "integer"},
        "languages": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
        "kind": {"enum": ["capital", "town"]},
        "location": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
            "required": ["lat", "lon"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "country", "population", "languages", "kind", "location"],
    "additionalProperties": False,
}


def fmt(schema: dict[str, Any], name: str = "city") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@pytest.fixture(scope="module", params=[False, True], ids=["one-at-a-time", "batched"])
def server(
    request: pytest.FixtureRequest, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    require_models(settings, QWEN)
    over = {"engine_batching": request.param, "parallel": 2, "response_cache": True}
    data = tmp_path_factory.mktemp("structured")
    with LiveServer(settings.model_copy(update={"data_dir": data, **over})) as live:
        yield live


def client_of(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def ask(client: openai.OpenAI, schema: dict[str, Any], **kw: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=QWEN, messages=MSG, temperature=0, max_tokens=120, response_format=fmt(schema), **kw
    )


def test_strict_output_validates_and_is_cached_per_schema(server: LiveServer) -> None:
    client = client_of(server)
    first = ask(client, CITY)
    answer = first.parse()
    text = answer.choices[0].message.content or ""
    assert answer.choices[0].finish_reason == "stop", text
    data = json.loads(text)
    assert jsonschema_rs.is_valid(CITY, data), text
    assert data["kind"] in ("capital", "town") and len(data["languages"]) <= 3
    # routed and billed as any chat request
    assert answer.model == QWEN and first.headers["x-smallfirst-cache"] == "miss"
    assert answer.model_extra["smallfirst"]["model"] == QWEN
    again = ask(client, CITY)
    assert again.headers["x-smallfirst-cache"] == "hit"
    assert again.parse().choices[0].message.content == text
    # same messages, another schema: another answer, never the first one from the cache
    other = {**CITY, "required": ["name", "country", "population", "languages", "kind"]}
    other["properties"] = {k: v for k, v in CITY["properties"].items() if k != "location"}
    third = ask(client, other)
    assert third.headers["x-smallfirst-cache"] == "miss"
    data = json.loads(third.parse().choices[0].message.content or "")
    assert jsonschema_rs.is_valid(other, data) and "location" not in data


def test_streamed_output_validates(server: LiveServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "colours": {
                "type": "array",
                "items": {"enum": ["red", "blue", "green"]},
                "minItems": 2,
                "maxItems": 2,
            }
        },
        "required": ["colours"],
    }
    stream = client_of(server).chat.completions.create(
        model=QWEN,
        messages=[{"role": "user", "content": "Name two colours of the French flag."}],
        temperature=0,
        max_tokens=40,
        response_format=fmt(schema, "flag"),
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert jsonschema_rs.is_valid(schema, json.loads(text)), text


class Person(BaseModel):
    name: str
    born: int
    field: Literal["physics", "chemistry", "biology"]
    # bounded: unbounded, a 0.5B model lists prizes until max_tokens cuts the JSON short
    prizes: list[str] = Field(max_length=3)


def test_sdk_parse_with_a_pydantic_model(server: LiveServer) -> None:
    answer = client_of(server).chat.completions.parse(
        model=QWEN,
        messages=[
            {"role": "user", "content": "Who was Marie Curie? Name, birth year, field and prizes."}
        ],
        temperature=0,
        max_tokens=150,
        response_format=Person,
    )
    person = answer.choices[0].message.parsed
    assert isinstance(person, Person), answer.choices[0].message.content
    assert person.name and person.field in ("physics", "chemistry", "biology")
