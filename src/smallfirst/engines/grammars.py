"""Grammars that hold an in-process model to JSON: any JSON object, or JSON that fits a schema.

An in-process engine constrains its output with a llama.cpp GBNF grammar carried in
:attr:`~smallfirst.engines.base.Sampling.grammar` (its root rule is ``root``). This module
makes the two that ``response_format`` asks for: llama-cpp-python's JSON grammar for
``json_object``, and for ``json_schema`` the grammar its converter
(``llama_cpp.llama_grammar.json_schema_to_gbnf``) builds from the schema.

The converter silently ignores what it cannot express (``minimum``, ``allOf``'s sub-schemas,
the keywords beside a ``type`` list ...), which would let an answer through unconstrained on
those points. So before converting, :func:`schema_grammar` walks the schema along the
converter's own dispatch (its ``SchemaConverter.visit``, llama-cpp-python 0.3) and refuses,
naming it, any keyword the branch taken would ignore; annotations (``title``,
``description``, ``default`` ...) are dropped. Grammars are built per request; nothing is
cached. The result is parsed by llama.cpp once (no model needed) so that a grammar it would
refuse is a 400 here rather than a failure mid-generation.

This module does not sample (see :mod:`.sampling`) nor validate answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from smallfirst.errors import InvalidRequestError, UnsupportedError

__all__ = [
    "MAX_OPTIONAL_PROPERTIES",
    "MAX_SCHEMA_BYTES",
    "MAX_SCHEMA_DEPTH",
    "SUPPORTED_KEYWORDS",
    "json_object_grammar",
    "schema_grammar",
]

# deeper than any real schema; keeps the walk (and the converter's recursion) bounded
MAX_SCHEMA_DEPTH = 32
# The grammar is built on the event loop: bounded so that one costs milliseconds. The
# converter's rules for an object's optional properties grow with their square (measured:
# 100 optional properties 7.5 ms, 200 31 ms, 1,000 overflow its recursion).
MAX_SCHEMA_BYTES = 32 * 1024
MAX_OPTIONAL_PROPERTIES = 100

JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
# no effect on what validates: dropped before conversion
ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$id",
    }
)
DEFINITIONS = ("$defs", "definitions")
# the converter's string formats (uuid1..uuid5 too)
FORMATS = frozenset({"uuid", "date", "time", "date-time"})
# regex classes the converter copies into GBNF as literals, which then mean something else
_PATTERN_ESCAPES = re.compile(r"\\[dDwWsSbB]")

SUPPORTED_KEYWORDS = (
    "type (one or a list), properties, required, additionalProperties, items (a schema or a "
    "list), prefixItems, minItems, maxItems, enum, const, anyOf, $ref (local, #/...), "
    "$defs, pattern (^...$, no lookaround or \\d-style classes), format (uuid, date, time, "
    "date-time), minLength, maxLength"
)

_Children = list[tuple[Any, str]]


def json_object_grammar() -> str:
    """llama-cpp-python's grammar for any JSON object (``response_format`` ``json_object``)."""
    _load_llama_cpp()
    from llama_cpp.llama_grammar import JSON_GBNF

    return str(JSON_GBNF)


def schema_grammar(schema: Any, param: str) -> str:
    """The GBNF grammar that holds output to ``schema``; an error naming ``param`` (400)
    for any schema feature the grammar would not enforce."""
    if not isinstance(schema, dict):
        raise InvalidRequestError("the JSON schema must be an object", param=param)
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise UnsupportedError(
            f"the JSON schema is longer than {MAX_SCHEMA_BYTES} bytes", param=param
        )
    cleaned = _Walk(schema, param).run()
    _load_llama_cpp()
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        gbnf = str(json_schema_to_gbnf(json.dumps(cleaned)))
    except Exception as exc:  # the converter's own asserts and lookups on client input
        raise UnsupportedError(
            f"the JSON schema cannot be turned into a grammar: {exc}", param=param
        ) from exc
    _check_parses(gbnf, param)
    return gbnf


class _Walk:
    """One pass over a schema: refuses what the converter would ignore, returns the schema
    without annotations (the converter reads an annotated ``{}`` as an unknown type)."""

    def __init__(self, root: dict[str, Any], param: str) -> None:
        self.root = root
        self.param = param
        self.seen_refs: set[str] = set()

    def run(self) -> dict[str, Any]:
        cleaned = self.visit(self.root, "#", 0)
        for key in DEFINITIONS:
            defs = self.root.get(key)
            if defs is None:
                continue
            if not isinstance(defs, dict):
                raise self.bad(f"#/{key} must be an object of schemas")
            cleaned[key] = {k: self.visit(v, f"#/{key}/{k}", 1) for k, v in defs.items()}
        return cleaned

    def bad(self, message: str) -> InvalidRequestError:
        return InvalidRequestError(f"json_schema: {message}", param=self.param)

    def unsupported(self, message: str) -> UnsupportedError:
        return UnsupportedError(
            f"json_schema: {message}; the grammar enforces only {SUPPORTED_KEYWORDS}",
            param=self.param,
        )

    def visit(self, schema: Any, path: str, depth: int) -> dict[str, Any]:
        if depth > MAX_SCHEMA_DEPTH:
            raise self.unsupported(f"{path} nests deeper than {MAX_SCHEMA_DEPTH} levels")
        if not isinstance(schema, dict):
            raise self.unsupported(f"{path} is not an object (boolean schemas are not supported)")
        keys = {k for k in schema if k not in ANNOTATIONS and k not in DEFINITIONS}
        honoured, children = self.branch(schema, path, keys, depth)
        ignored = sorted(keys - honoured)
        if ignored:
            raise self.unsupported(f"{', '.join(map(repr, ignored))} at {path} is not supported")
        cleaned = {k: schema[k] for k in keys}
        for key, value in children.items():
            cleaned[key] = value(depth + 1)
        return cleaned

    def branch(
        self, s: dict[str, Any], path: str, keys: set[str], depth: int
    ) -> tuple[set[str], dict[str, Callable[[int], Any]]]:
        """The keywords the converter's branch for ``s`` honours, and how to clean the
        sub-schemas it visits (in ``SchemaConverter.visit``'s order)."""
        kind = s.get("type")
        if "$ref" in s:
            self.ref(s["$ref"], path, depth)
            return {"$ref"}, {}
        if "oneOf" in s:
            raise self.unsupported(f"'oneOf' at {path} is not supported (use anyOf)")
        if "anyOf" in s:
            alts = self.schemas(s["anyOf"], f"{path}/anyOf")
            return {"anyOf"}, {"anyOf": lambda d: self.each(alts, f"{path}/anyOf", d)}
        if isinstance(kind, list):
            if not kind or any(not isinstance(t, str) or t not in JSON_TYPES for t in kind):
                raise self.bad(f"{path}/type must list JSON types")
            return {"type"}, {}
        if kind is not None and (not isinstance(kind, str) or kind not in JSON_TYPES):
            raise self.bad(f"{path}/type {kind!r} is not a JSON type")
        if "const" in s or "enum" in s:
            values = [s["const"]] if "const" in s else s["enum"]
            if not isinstance(values, list) or not values:
                raise self.bad(f"{path}/enum must be a non-empty array")
            if kind is not None and not all(_is_type(v, kind) for v in values):
                raise self.bad(f"{path}: a value of its enum or const is not of type {kind!r}")
            return {"const" if "const" in s else "enum", "type"}, {}
        extra = s.get("additionalProperties")
        if kind in (None, "object") and ("properties" in s or "additionalProperties" in keys):
            return self.object(s, path, extra)
        if "allOf" in s:
            raise self.unsupported(f"'allOf' at {path} is not supported")
        if kind in (None, "array") and ("items" in s or "prefixItems" in s):
            return self.array(s, path)
        if kind in (None, "string") and "pattern" in s:
            self.pattern(s["pattern"], path)
            return {"type", "pattern"}, {}
        fmt = s.get("format")
        if kind in (None, "string") and isinstance(fmt, str):
            if fmt in FORMATS or re.fullmatch(r"uuid[1-5]", fmt):
                return {"type", "format"}, {}
            raise self.unsupported(f"format {fmt!r} at {path} is not supported")
        if kind == "string" and ("minLength" in s or "maxLength" in s):
            self.bounds(s, path, "minLength", "maxLength")
            return {"type", "minLength", "maxLength"}, {}
        return {"type"}, {}

    def object(
        self, s: dict[str, Any], path: str, extra: Any
    ) -> tuple[set[str], dict[str, Callable[[int], Any]]]:
        props = s.get("properties", {})
        required = s.get("required", [])
        if not isinstance(props, dict):
            raise self.bad(f"{path}/properties must be an object")
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise self.bad(f"{path}/required must be an array of names")
        missing = sorted(set(required) - set(props))
        if missing:
            raise self.unsupported(f"required {missing} at {path} are not among its properties")
        if len(set(props) - set(required)) > MAX_OPTIONAL_PROPERTIES:
            raise self.unsupported(
                f"{path} has more than {MAX_OPTIONAL_PROPERTIES} optional properties"
            )
        children: dict[str, Callable[[int], Any]] = {
            "properties": lambda d: {
                k: self.visit(v, f"{path}/properties/{k}", d) for k, v in props.items()
            }
        }
        if isinstance(extra, dict):
            children["additionalProperties"] = lambda d: self.visit(
                extra, f"{path}/additionalProperties", d
            )
        elif extra is not None and not isinstance(extra, bool):
            raise self.bad(f"{path}/additionalProperties must be a boolean or a schema")
        return {"type", "properties", "required", "additionalProperties"}, children

    def array(
        self, s: dict[str, Any], path: str
    ) -> tuple[set[str], dict[str, Callable[[int], Any]]]:
        items = s.get("items")
        if "prefixItems" in s:
            if items not in (None, False):
                raise self.unsupported(f"'items' beside 'prefixItems' at {path} is not supported")
            tuple_ = self.schemas(s["prefixItems"], f"{path}/prefixItems")
            return {"type", "prefixItems", "items"}, {
                "prefixItems": lambda d: self.each(tuple_, f"{path}/prefixItems", d)
            }
        if isinstance(items, list):
            tuple_ = self.schemas(items, f"{path}/items")
            return {"type", "items"}, {"items": lambda d: self.each(tuple_, f"{path}/items", d)}
        if not isinstance(items, dict) or not items:
            raise self.unsupported(f"{path}/items must be a non-empty schema (omit it for any)")
        self.bounds(s, path, "minItems", "maxItems")
        return {"type", "items", "minItems", "maxItems"}, {
            "items": lambda d: self.visit(items, f"{path}/items", d)
        }

    def each(self, schemas: list[Any], path: str, depth: int) -> list[dict[str, Any]]:
        return [self.visit(x, f"{path}/{i}", depth) for i, x in enumerate(schemas)]

    def schemas(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.bad(f"{path} must be a non-empty array of schemas")
        return value

    def bounds(self, s: dict[str, Any], path: str, low: str, high: str) -> None:
        lo, hi = s.get(low, 0), s.get(high)
        for name, v in ((low, lo), (high, hi)):
            if (v is not None or name == low) and not _count(v):
                raise self.bad(f"{path}/{name} must be a non-negative integer")
        if hi is not None and lo > hi:
            raise self.bad(f"{path}: {low} is above {high}")

    def pattern(self, pattern: Any, path: str) -> None:
        if not isinstance(pattern, str):
            raise self.bad(f"{path}/pattern must be a string")
        if not (pattern.startswith("^") and pattern.endswith("$")):
            raise self.unsupported(f"{path}/pattern must start with ^ and end with $")
        if "(?" in pattern or _PATTERN_ESCAPES.search(pattern):
            raise self.unsupported(
                f"{path}/pattern uses lookaround, non-capturing groups or a class escape "
                "such as \\d (write [0-9])"
            )

    def ref(self, ref: Any, path: str, depth: int) -> None:
        if not isinstance(ref, str) or not ref.startswith("#/") or "~" in ref or "%" in ref:
            raise self.unsupported(f"$ref {ref!r} at {path} is not a plain local reference (#/...)")
        target: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(target, dict) or part not in target:
                raise self.bad(f"$ref {ref!r} at {path} does not resolve")
            target = target[part]
        if ref not in self.seen_refs:  # recursive schemas: check each target once
            self.seen_refs.add(ref)
            self.visit(target, ref, depth + 1)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("number", "integer"):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _PYTHON_TYPES[kind])


def _load_llama_cpp() -> None:
    # the first import of llama_cpp loads libgomp: its wait policy must be set before
    from smallfirst.engines.openmp import tame_openmp

    tame_openmp()


def _check_parses(gbnf: str, param: str) -> None:
    """Parse ``gbnf`` with llama.cpp (no vocabulary needed) as the engines will."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise UnsupportedError(
            "the grammar built from the JSON schema does not parse in llama.cpp "
            "(a pattern it cannot express?)",
            param=param,
        )
    llama_cpp.llama_sampler_free(sampler)
