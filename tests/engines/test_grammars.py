"""JSON schemas to grammars: what the converter enforces is served, what it would ignore is a
400 naming it (no model needed: llama.cpp parses a grammar without a vocabulary)."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel

from smallfirst.engines.grammars import (
    MAX_OPTIONAL_PROPERTIES,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    json_object_grammar,
    schema_grammar,
)
from smallfirst.errors import InvalidRequestError, UnsupportedError


def grammar(schema: Any) -> str:
    return schema_grammar(schema, param="response_format")


class Point(BaseModel):
    x: float
    y: float


class Trip(BaseModel):
    city: str
    days: int
    mode: Literal["train", "car"]
    stops: list[Point]
    note: str | None


NODE = {
    "type": "object",
    "properties": {
        "v": {"type": "integer"},
        "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
    },
    "required": ["v"],
}

SERVED: list[dict[str, Any]] = [
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
    {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
    {"enum": ["red", "green", 3]},
    {"const": "x", "description": "annotations are dropped"},
    {"type": ["string", "null"]},
    {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
    {"type": "string", "pattern": "^[a-z]+-[0-9]{2}$"},
    {"type": "string", "format": "date-time"},
    {"type": "string", "minLength": 2, "maxLength": 5},
    {"prefixItems": [{"type": "string"}, {"type": "number"}], "items": False},
    {"type": "object", "additionalProperties": {"type": "number"}},
    # recursive: a tree of nodes
    {
        "$defs": {"node": NODE},
        "type": "object",
        "properties": {"tree": {"$ref": "#/$defs/node"}},
        "required": ["tree"],
    },
    {"title": "Anything"},  # no constraint at all: the converter's any-object
    to_strict_json_schema(Trip),
]


@pytest.mark.fast
@pytest.mark.parametrize("schema", SERVED)
def test_schemas_the_converter_enforces_become_grammars(schema: dict[str, Any]) -> None:
    gbnf = grammar(schema)
    assert "root ::=" in gbnf


@pytest.mark.fast
def test_annotations_do_not_reach_the_grammar() -> None:
    plain = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    noted = {
        "type": "object",
        "title": "T",
        "properties": {"a": {"type": "integer", "title": "A", "default": 1}},
        "required": ["a"],
    }
    assert grammar(noted) == grammar(plain)


REFUSED: list[tuple[Any, str]] = [
    ({"type": "integer", "minimum": 0}, "'minimum'"),
    ({"type": "number", "exclusiveMaximum": 5}, "'exclusiveMaximum'"),
    ({"type": "number", "multipleOf": 2}, "'multipleOf'"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "'oneOf'"),
    ({"allOf": [{"type": "object"}]}, "'allOf'"),
    ({"not": {"type": "string"}}, "'not'"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "'uniqueItems'"),
    ({"type": "array", "items": {"type": "string"}, "contains": {"const": "a"}}, "'contains'"),
    ({"type": "object", "properties": {}, "minProperties": 1}, "'minProperties'"),
    ({"type": "object", "patternProperties": {"^a": {}}}, "'patternProperties'"),
    ({"type": ["string", "null"], "maxLength": 3}, "'maxLength'"),
    ({"anyOf": [{"type": "string"}], "type": "string"}, "'type'"),
    ({"$ref": "#/$defs/a", "minLength": 2, "$defs": {"a": {"type": "string"}}}, "'minLength'"),
    ({"type": "string", "format": "email"}, "'email'"),
    ({"type": "string", "pattern": "^[a-z]+$", "maxLength": 3}, "'maxLength'"),
    ({"type": "string", "pattern": "^\\d+$"}, "\\d"),
    ({"type": "string", "pattern": "[a-z]+"}, "must start with ^"),
    ({"type": "string", "pattern": "^(?=a)a$"}, "lookaround"),
    ({"if": {"type": "string"}, "then": {"minLength": 1}}, "'if'"),
    ({"$ref": "https://example.com/s.json"}, "local reference"),
    ({"type": "object", "properties": {"a": True}}, "boolean schemas"),
    ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "['b']"),
    ({"type": "array", "items": {}}, "non-empty schema"),
    ({"type": "array", "prefixItems": [{}], "items": {"type": "string"}}, "'items' beside"),
    ({"type": "object", "properties": {"a": {"type": "integer", "maximum": 9}}}, "#/properties/a"),
    # the converter's own failure (a root $ref leaves the refs inside unresolved): still a 400
    ({"$defs": {"node": NODE}, "$ref": "#/$defs/node"}, "cannot be turned into a grammar"),
]


@pytest.mark.fast
@pytest.mark.parametrize(("schema", "named"), REFUSED)
def test_what_the_grammar_would_not_enforce_is_refused_by_name(schema: Any, named: str) -> None:
    with pytest.raises(UnsupportedError) as caught:
        grammar(schema)
    assert named in str(caught.value) and caught.value.param == "response_format"


MALFORMED: list[Any] = [
    [],
    {"type": "strings"},
    {"type": {"not": "hashable"}},
    {"type": [["string"]]},
    {"type": "object", "properties": [], "required": []},
    {"type": "object", "properties": {}, "required": "a"},
    {"enum": []},
    {"type": "string", "enum": ["a", 1]},
    {"type": "array", "items": {"type": "string"}, "minItems": -1},
    {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 2},
    {"$ref": "#/$defs/missing"},
    {"anyOf": []},
]


@pytest.mark.fast
@pytest.mark.parametrize("schema", MALFORMED)
def test_malformed_schemas_are_400(schema: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        grammar(schema)
    assert caught.value.param == "response_format"


@pytest.mark.fast
def test_depth_is_bounded() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(MAX_SCHEMA_DEPTH + 2):
        deep = {"type": "array", "items": deep}
    with pytest.raises(UnsupportedError, match="deeper"):
        grammar(deep)


@pytest.mark.fast
def test_size_is_bounded() -> None:
    many = {f"p{i}": {"type": "integer"} for i in range(MAX_OPTIONAL_PROPERTIES + 1)}
    with pytest.raises(UnsupportedError, match="optional properties"):
        grammar({"type": "object", "properties": many})
    # all required: no square growth, served
    assert grammar({"type": "object", "properties": many, "required": list(many)})
    with pytest.raises(UnsupportedError, match="longer than"):
        grammar({"enum": ["x" * 100] * (MAX_SCHEMA_BYTES // 100)})


@pytest.mark.fast
def test_json_object_grammar_is_llama_cpp_s() -> None:
    from llama_cpp.llama_grammar import JSON_GBNF

    assert json_object_grammar() == JSON_GBNF
