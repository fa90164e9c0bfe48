"""The one error table: each domain error shown with OpenAI's status, type and code.

No model is needed: the table is read directly, and through the handlers it installs on a
small app of its own.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from smallfirst import errors as e
from smallfirst.server.errors import (
    CRASH_MESSAGE,
    describe,
    http_error,
    install,
    unhandled,
    validation_error,
)

INVALID = "invalid_request_error"
SERVER = "server_error"

CASES: list[tuple[e.SmallfirstError, int, str, str | None, str | None]] = [
    (e.UnknownModelError("gpt-9"), 404, INVALID, "model_not_found", "model"),
    (e.ContextLengthError(3000, 2048, 16), 400, INVALID, "context_length_exceeded", "messages"),
    (e.InvalidRequestError("bad", param="limit"), 400, INVALID, None, "limit"),
    (e.UnsupportedError("no tools", param="tools"), 400, INVALID, None, "tools"),
    (e.NotFoundError("No receipt", param="receipt_id"), 404, INVALID, "not_found", "receipt_id"),
    (e.PolicyError("Invalid model policy", param="model"), 400, INVALID, None, "model"),
    (e.InvalidCursorError("invalid cursor", param="cursor"), 400, INVALID, None, "cursor"),
    (e.GenerationError("generation failed on m: boom"), 500, SERVER, "engine_error", None),
    (e.EngineError("engine broke"), 500, SERVER, "engine_error", None),
    (e.UpstreamError("m: upstream answered 503: busy"), 502, SERVER, "upstream_error", None),
    (e.UpstreamUnavailableError("m: unreachable"), 502, SERVER, "upstream_unavailable", None),
    (e.UpstreamTimeoutError("m: upstream timed out"), 504, SERVER, "upstream_timeout", None),
    (e.UpstreamRefusedError("m: refused: too long", 422), 422, INVALID, "upstream_error", None),
    (e.UpstreamRefusedError("m: refused: no key", 401), 401, INVALID, "upstream_error", None),
    # a 429 that outlasted the retries keeps the wire form of any upstream refusal
    (e.UpstreamRateLimitedError("m: 429", 2.0), 429, INVALID, "upstream_error", None),
    (e.UpstreamCoolingError("m: cooling"), 503, SERVER, "upstream_cooling_down", None),
]


@pytest.mark.parametrize(("exc", "status", "kind", "code", "param"), CASES)
def test_each_domain_error_has_its_wire_form(
    exc: e.SmallfirstError, status: int, kind: str, code: str | None, param: str | None
) -> None:
    wire = describe(exc)
    assert wire is not None
    assert (wire.status, wire.type, wire.code, wire.param) == (status, kind, code, param)
    assert wire.body() == {
        "error": {"message": wire.message, "type": kind, "param": param, "code": code}
    }


def test_messages_are_the_errors_own_but_unknown_models_say_where_to_look() -> None:
    wire = describe(e.ContextLengthError(3000, 2048, 16))
    assert wire is not None and wire.message.startswith("This model's maximum context length")
    assert "3000 prompt tokens plus max_tokens 16" in wire.message
    wire = describe(e.UnknownModelError("gpt-9", "unknown model 'gpt-9'"))
    assert wire is not None and wire.message == (
        "The model 'gpt-9' does not exist or is not installed here. "
        "GET /v1/models lists the ones that are."
    )


def test_errors_outside_the_table_are_the_servers_fault() -> None:
    for exc in (
        e.StoreError("database is newer"),
        e.RoutingError("no candidates"),
        e.CatalogError("catalog broken"),
        e.ConfigError("bad config"),
        ValueError("plain"),
        RuntimeError("bug"),
    ):
        assert describe(exc) is None
    crash = unhandled()
    assert (crash.status, crash.type, crash.message) == (500, SERVER, CRASH_MESSAGE)


def test_the_most_specific_row_wins() -> None:
    class Narrower(e.UpstreamTimeoutError):
        pass

    wire = describe(Narrower("slow"))
    assert wire is not None and (wire.status, wire.code) == (504, "upstream_timeout")


def test_validation_errors_name_the_parameter() -> None:
    wire = validation_error([{"type": "missing", "loc": ("body", "messages"), "msg": "x"}])
    assert (wire.status, wire.param, wire.code) == (400, "messages", "invalid_value")
    assert wire.message == "Missing required parameter: 'messages'."
    loc = ("body", "messages", 0, "role")
    wire = validation_error([{"type": "literal_error", "loc": loc, "msg": "no"}])
    assert wire.param == "messages.[0].role" and wire.message.startswith("Invalid value")
    wire = validation_error([{"type": "json_invalid", "loc": ("body", 3), "msg": "x"}])
    assert wire.status == 400 and wire.param is None and "JSON" in wire.message
    wire = validation_error([{"type": "model_attributes_type", "loc": ("body",), "msg": "x"}])
    assert wire.message == "The request body must be a JSON object."


def test_http_errors_and_the_size_limit() -> None:
    assert http_error(404, "Not Found").code == "not_found"
    assert http_error(405, "Method Not Allowed").code is None
    body = http_error(413, "Request body too large").body()["error"]
    assert body["code"] == "request_too_large" and body["type"] == INVALID


class Body(BaseModel):
    n: int


def test_installed_handlers_answer_in_openai_shape() -> None:
    app = FastAPI()
    install(app)

    @app.get("/raise/{index}")
    def raise_case(index: int) -> None:
        raise CASES[index][0]

    @app.get("/store")
    def store_failure() -> None:
        raise e.StoreError("/secret/path is locked")

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("bug")

    @app.post("/body")
    def body(b: Body) -> int:
        return b.n

    client = TestClient(app, raise_server_exceptions=False)
    for index, (_, status, kind, code, param) in enumerate(CASES):
        r = client.get(f"/raise/{index}")
        assert r.status_code == status
        assert r.json()["error"] | {"message": ""} == {
            "message": "",
            "type": kind,
            "param": param,
            "code": code,
        }
    for path in ("/store", "/crash"):
        r = client.get(path)
        assert r.status_code == 500 and r.json()["error"]["message"] == CRASH_MESSAGE
        assert "secret" not in r.text
    r = client.post("/body", json={"n": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
