"""``/openapi.json`` tells the truth: every route, the real request models, every error a
route can answer with, and real responses that validate against what it documents.

The fast tests call an in-process app (``TestClient``) whose only model is a loopback stub
upstream, so success bodies, streams and receipts are real without loading a model;
``test_smollm2_bodies_match_the_schema`` does the same through SmolLM2 on a live gateway
(logprobs, echo), where the bodies are built from llama.cpp's output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from smallfirst.server.app import create_app
from smallfirst.settings import Settings, UserModel
from smallfirst.stub_upstream import StubUpstream
from smallfirst.testing import LiveServer, free_port

MSG = [{"role": "user", "content": "hi"}]
USAGE = {"include_usage": True}
ROUTES = {
    ("/v1/chat/completions", "post"),
    ("/v1/completions", "post"),
    ("/v1/embeddings", "post"),
    ("/v1/responses", "post"),
    ("/v1/models", "get"),
    ("/health", "get"),
    ("/metrics", "get"),
    ("/smallfirst/v1/receipts", "get"),
    ("/smallfirst/v1/receipts/{receipt_id}", "get"),
    ("/smallfirst/v1/summary", "get"),
    ("/smallfirst/v1/dashboard/meta", "get"),
    ("/smallfirst/v1/dashboard/timeseries", "get"),
    ("/smallfirst/v1/dashboard/frontier", "get"),
    ("/v1/files", "post"),
    ("/v1/files", "get"),
    ("/v1/files/{file_id}", "get"),
    ("/v1/files/{file_id}", "delete"),
    ("/v1/files/{file_id}/content", "get"),
    ("/v1/batches", "post"),
    ("/v1/batches", "get"),
    ("/v1/batches/{batch_id}", "get"),
    ("/v1/batches/{batch_id}/cancel", "post"),
}
# routes of one thing by its id: a probe with the literal "{id}" is a 404 by design
BY_ID = {
    ("/smallfirst/v1/receipts/{receipt_id}", "get"),
    ("/v1/files/{file_id}", "get"),
    ("/v1/files/{file_id}", "delete"),
    ("/v1/files/{file_id}/content", "get"),
    ("/v1/batches/{batch_id}", "get"),
    ("/v1/batches/{batch_id}/cancel", "post"),
}
COMPLETION_ERRORS = {"400", "401", "403", "404", "413", "429", "500", "502", "503", "504"}


@pytest.fixture(scope="module")
def stub() -> Iterator[StubUpstream]:
    with StubUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def app_client(
    tmp_path_factory: pytest.TempPathFactory, stub: StubUpstream
) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("openapi")
    settings = Settings(
        data_dir=data,
        models_dir=data / "models",
        default_model="stub",
        default_router=False,
        max_body_bytes=64 * 1024,
        models=(
            UserModel(name="stub", base_url=stub.url, model_id="stub"),
            UserModel(name="gone", base_url=f"http://127.0.0.1:{free_port()}/v1"),
        ),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def document(app_client: TestClient) -> dict[str, Any]:
    r = app_client.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


class Checker:
    """Validates a response against the schema ``document`` gives its path and status."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.seen: set[tuple[str, str, str]] = set()

    def schema_of(self, path: str, method: str, status: int, media: str) -> dict[str, Any]:
        responses = self.document["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method} {path} answered an undocumented {status}"
        content = responses[str(status)]["content"]
        assert media in content, f"{method} {path} {status}: {media} not documented"
        return dict(content[media])

    def validate(self, instance: Any, ref: dict[str, Any], where: str) -> None:
        root = {**ref, "components": self.document["components"]}
        errors = [e.message for e in jsonschema_rs.validator_for(root).iter_errors(instance)]
        assert not errors, f"{where}: {errors[:3]} in {json.dumps(instance)[:600]}"

    def check(self, r: httpx.Response, path: str, method: str = "get") -> None:
        media = r.headers["content-type"].split(";")[0]
        entry = self.schema_of(path, method, r.status_code, media)
        where = f"{method.upper()} {path} {r.status_code}"
        if media == "text/event-stream" and path == "/v1/responses":
            self.check_response_events(r.text, entry["schema"], where)
        elif media == "text/event-stream":
            events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]", where
            event_schema = entry["schema"]
            payload = event_schema["properties"]["data"]["anyOf"][1]["contentSchema"]
            for event in events:
                self.validate({"event": "message", "data": event}, event_schema, where)
            for event in events[:-1]:  # contentSchema is an annotation to validators: by hand
                self.validate(json.loads(event), payload, where)
        elif media == "application/json":
            self.validate(r.json(), entry["schema"], where)
        self.seen.add((path, method, str(r.status_code)))

    def check_response_events(self, text: str, schema: dict[str, Any], where: str) -> None:
        """A Responses stream: ``event:`` and ``data:`` pairs, each ``data`` an event."""
        blocks = [b.splitlines() for b in text.split("\n\n") if b.strip()]
        assert blocks, where
        for block in blocks:
            assert block[0].startswith("event: ") and block[1].startswith("data: "), block
            pair = {"event": block[0].removeprefix("event: "), "data": block[1][6:]}
            self.validate(pair, schema, where)
            data = json.loads(pair["data"])
            assert data["type"] == pair["event"], where
            self.validate(data, schema["properties"]["data"]["contentSchema"], where)


@pytest.fixture(scope="module")
def checker(document: dict[str, Any]) -> Checker:
    return Checker(document)


@pytest.mark.fast
def test_every_route_is_documented_with_its_request_model(
    app_client: TestClient, document: dict[str, Any]
) -> None:
    documented = {(p, m) for p, ops in document["paths"].items() for m in ops}
    assert documented == ROUTES
    for path, method in ROUTES - BY_ID:
        answer = app_client.request(method, path, json={} if method == "post" else None)
        assert answer.status_code not in (404, 405), (path, answer.text)  # really served
    bodies = {
        p: ops["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for p, ops in document["paths"].items()
        if "post" in ops
        and "application/json" in ops["post"].get("requestBody", {}).get("content", {})
    }
    assert bodies == {
        "/v1/chat/completions": "#/components/schemas/ChatCompletionRequest",
        "/v1/completions": "#/components/schemas/CompletionRequest",
        "/v1/embeddings": "#/components/schemas/EmbeddingRequest",
        "/v1/responses": "#/components/schemas/ResponsesRequest",
        "/v1/batches": "#/components/schemas/BatchCreate",
    }
    upload = document["paths"]["/v1/files"]["post"]["requestBody"]["content"]
    assert set(upload) == {"multipart/form-data"}


@pytest.mark.fast
def test_errors_are_documented_where_they_happen(document: dict[str, Any]) -> None:
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            assert "422" not in responses, f"{method} {path}: FastAPI's 422 is never sent"
            assert "500" in responses, f"{method} {path}"
            for status, entry in responses.items():
                if status >= "400":
                    ref = entry["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorBody", (path, status)
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
        op = document["paths"][path]["post"]
        assert set(op["responses"]) == {"200", *COMPLETION_ERRORS}
        assert "Retry-After" in op["responses"]["429"]["headers"]
        assert "text/event-stream" in op["responses"]["200"]["content"]
    params = document["paths"]["/smallfirst/v1/receipts"]["get"]["parameters"]
    assert {p["name"] for p in params} == {"since", "until", "model", "limit", "cursor"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


def _completions(checker: Checker, client: TestClient, path: str, body: dict[str, Any]) -> None:
    for stream in (False, True):
        sent = {**body, "stream": stream}
        if not stream:
            sent.pop("stream_options", None)  # only with a stream (a 400 otherwise)
        r = client.post(path, json=sent)
        assert r.status_code == 200, r.text
        checker.check(r, path, "post")
        if not stream:
            assert r.json()["smallfirst"]["model"] == "stub"


@pytest.mark.fast
def test_real_responses_validate_against_the_schema(
    app_client: TestClient, checker: Checker
) -> None:
    chat, text, embed = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
    _completions(checker, app_client, chat, {"model": "stub", "messages": MSG})
    _completions(
        checker,
        app_client,
        chat,
        {
            "model": "stub",
            "messages": MSG,
            "max_tokens": 2,
            "stream_options": {"include_usage": True},
        },
    )
    _completions(checker, app_client, text, {"model": "stub", "prompt": "Once", "max_tokens": 3})
    # tool calls (the stub calls the function it is offered; a remote model passes them on)
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    _completions(checker, app_client, chat, {"model": "stub", "messages": MSG, "tools": [tool]})
    called = app_client.post(chat, json={"model": "stub", "messages": MSG, "tools": [tool]})
    message = called.json()["choices"][0]["message"]
    assert message["content"] is None and message["tool_calls"][0]["function"]["name"] == "lookup"
    assert called.json()["choices"][0]["finish_reason"] == "tool_calls"
    refused = [
        (chat, {"model": "stub", "messages": []}, 400),
        (chat, {"model": "nope", "messages": MSG}, 404),
        (chat, {"model": "stub", "messages": MSG * 20_000}, 413),
        (chat, {"model": "gone", "messages": MSG}, 502),
        (text, {"model": "stub", "prompt": "x", "suffix": "y"}, 400),
        (text, {"model": "gone", "prompt": "x", "stream": True}, 502),
        (embed, {"model": "stub", "input": "x"}, 400),  # a model that does not embed
        (embed, {"model": "nope", "input": "x"}, 404),
        (embed, {"model": "stub", "input": []}, 400),
    ]
    for path, body, status in refused:
        r = app_client.post(path, json=body)
        assert r.status_code == status, r.text
        checker.check(r, path, "post")
    r = app_client.post(chat, content=b"{not json", headers={"content-type": "application/json"})
    checker.check(r, chat, "post")

    receipts = app_client.get("/smallfirst/v1/receipts?limit=2")
    checker.check(receipts, "/smallfirst/v1/receipts")
    first = receipts.json()["data"][0]["receipt_id"]
    gets = [
        ("/health", ""),
        ("/v1/models", ""),
        ("/metrics", ""),
        ("/smallfirst/v1/receipts", f"?cursor={receipts.json()['next_cursor']}"),
        ("/smallfirst/v1/receipts", "?since=yesterday"),
        ("/smallfirst/v1/summary", "?since=1h"),
        ("/smallfirst/v1/summary", "?model=stub&until=1"),
        ("/smallfirst/v1/dashboard/meta", ""),
        ("/smallfirst/v1/dashboard/timeseries", "?since=1h&bucket=60"),
        ("/smallfirst/v1/dashboard/timeseries", "?bucket=0"),
        ("/smallfirst/v1/dashboard/frontier", ""),
        ("/smallfirst/v1/dashboard/frontier", "?runs=x"),
    ]
    for path, query in gets:
        checker.check(app_client.get(path + query), path)
    one = "/smallfirst/v1/receipts/{receipt_id}"
    checker.check(app_client.get(f"/smallfirst/v1/receipts/{first}"), one)
    checker.check(app_client.get("/smallfirst/v1/receipts/nope"), one)
    statuses = {(p, s) for p, _, s in checker.seen}
    assert {(chat, s) for s in ("200", "400", "404", "413", "502")} <= statuses
    assert ("/smallfirst/v1/summary", "400") not in statuses  # the filters above are valid
    assert ("/smallfirst/v1/dashboard/frontier", "400") in statuses


@pytest.mark.fast
def test_responses_validate_against_the_schema(app_client: TestClient, checker: Checker) -> None:
    path = "/v1/responses"
    for body in (
        {"input": "hi"},
        {"input": MSG, "instructions": "Be brief.", "max_output_tokens": 2},
    ):
        for stream in (False, True):
            r = app_client.post(path, json={"model": "stub", **body, "stream": stream})
            assert r.status_code == 200, r.text
            checker.check(r, path, "post")
    for body, status in (({"input": "hi", "previous_response_id": "resp_1"}, 400), ({}, 400)):
        r = app_client.post(path, json={"model": "stub", **body})
        assert r.status_code == status, r.text
        checker.check(r, path, "post")
    r = app_client.post(path, json={"model": "nope", "input": "hi"})
    checker.check(r, path, "post")
    assert {(p, s) for p, _, s in checker.seen if p == path} == {
        (path, "200"),
        (path, "400"),
        (path, "404"),
    }


@pytest.mark.fast
def test_files_and_batches_validate_against_the_schema(
    app_client: TestClient, checker: Checker
) -> None:
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "stub", "messages": MSG}}  # fmt: skip
    files = "/v1/files"
    up = app_client.post(files, files={"file": ("in.jsonl", json.dumps(line).encode())},
                         data={"purpose": "batch"})  # fmt: skip
    checker.check(up, files, "post")
    bad = app_client.post(files, files={"file": ("x.jsonl", b"nope")}, data={"purpose": "batch"})
    checker.check(bad, files, "post")
    file_id = up.json()["id"]
    checker.check(app_client.get(files), files)
    checker.check(app_client.get(f"{files}/{file_id}"), f"{files}/{{file_id}}")
    checker.check(app_client.get(f"{files}/nope"), f"{files}/{{file_id}}")
    content = app_client.get(f"{files}/{file_id}/content")
    checker.check(content, f"{files}/{{file_id}}/content")
    assert json.loads(content.content) == line
    batches = "/v1/batches"
    made = app_client.post(batches, json={"input_file_id": file_id, "completion_window": "24h",
                                          "endpoint": "/v1/chat/completions"})  # fmt: skip
    checker.check(made, batches, "post")
    batch_id = made.json()["id"]
    deadline = time.monotonic() + 30
    while (got := app_client.get(f"{batches}/{batch_id}")).json()["status"] != "completed":
        assert time.monotonic() < deadline, got.json()
        time.sleep(0.05)
    checker.check(got, f"{batches}/{{batch_id}}")
    assert got.json()["request_counts"] == {"total": 1, "completed": 1, "failed": 0}
    checker.check(app_client.get(batches), batches)
    refused = app_client.post(f"{batches}/{batch_id}/cancel")  # completed: a 400
    checker.check(refused, f"{batches}/{{batch_id}}/cancel", "post")
    gone = app_client.delete(f"{files}/{file_id}")
    checker.check(gone, f"{files}/{{file_id}}", "delete")
    assert gone.json() == {"id": file_id, "object": "file", "deleted": True}


@pytest.mark.fast
def test_schema_catches_a_body_that_breaks_it(app_client: TestClient, checker: Checker) -> None:
    """The checks above can fail: a real body with a field too many, or one too few."""
    body = app_client.post("/v1/chat/completions", json={"model": "stub", "messages": MSG}).json()
    ref = {"$ref": "#/components/schemas/ChatCompletion"}
    checker.validate(body, ref, "as sent")
    with pytest.raises(AssertionError, match="'bogus' was unexpected"):
        checker.validate({**body, "bogus": 1}, ref, "a field too many")
    del body["model"]
    with pytest.raises(AssertionError, match='"model" is a required property'):
        checker.validate(body, ref, "a field too few")


def test_smollm2_bodies_match_the_schema(gateway: LiveServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=gateway.url, timeout=120) as http:
        document = http.get("/openapi.json").json()
        checker = Checker(document)
        chat = {
            "model": "smollm2-135m-instruct",
            "messages": MSG,
            "max_tokens": 4,
            "logprobs": True,
            "top_logprobs": 2,
        }
        text = {"model": "smollm2-135m-instruct", "prompt": "Once", "max_tokens": 4}
        for stream in (False, True):
            for path, body in (
                ("/v1/chat/completions", chat),
                ("/v1/completions", {**text, "logprobs": 2, "echo": True}),
                ("/v1/completions", text),
            ):
                r = http.post(path, json={**body, "stream": stream})
                assert r.status_code == 200, r.text
                checker.check(r, path, "post")
        for encoding in ("float", "base64"):
            embed = {"model": "smollm2-135m-instruct", "input": ["a", "b"]}
            r = http.post("/v1/embeddings", json={**embed, "encoding_format": encoding})
            assert r.status_code == 200, r.text
            checker.check(r, "/v1/embeddings", "post")
        assert len(checker.seen) == 3


@pytest.mark.fast
def test_a_wrong_method_says_which_are_allowed(app_client: TestClient) -> None:
    """Found by fuzzing: the 405 of an undeclared method lacked RFC 9110's Allow header."""
    r = app_client.request("TRACE", "/health")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = app_client.get("/v1/chat/completions")
    assert (r.status_code, r.headers["allow"]) == (405, "POST")


@pytest.mark.fast
def test_a_405_allows_every_method_the_path_documents(
    app_client: TestClient, document: dict[str, Any]
) -> None:
    """Found by fuzzing: a path served by two routes (GET and POST /v1/batches) answered a
    405 whose Allow header named only the first route's method."""
    for path in ("/v1/batches", "/v1/files", "/v1/files/file-x", "/v1/chat/completions"):
        r = app_client.options(path)
        assert r.status_code == 405
        template = path.replace("file-x", "{file_id}")
        assert r.headers["allow"] == ", ".join(
            sorted(m.upper() for m in document["paths"][template])
        )
