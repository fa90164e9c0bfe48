"""Chat answers reshaped as Responses API objects and events, as plain dicts.

``/v1/responses`` is served as a chat request (:mod:`.responses_input`); this module turns
what the chat path answered (OpenAI's chat wire format: a ``chat.completion`` body, or its
``chat.completion.chunk`` stream) into the Responses shape:

- :func:`response_body`: a whole ``response`` object: a ``message`` item with the text (an
  ``output_text`` part) and/or one ``function_call`` item per tool call, ``status``
  ``completed`` or ``incomplete`` (``incomplete_details.reason`` ``max_output_tokens``
  when the answer was cut by its limit), usage in Responses' names, the request's options
  echoed, and the receipt (``smallfirst``) the chat body carried;
- :class:`ResponseStream`: one chat chunk at a time, the Responses events (each with its
  ``type`` and ``sequence_number``): ``response.created``, ``response.in_progress``, then
  per item ``response.output_item.added``, for text ``response.content_part.added``,
  ``response.output_text.delta`` ... ``.done``, ``response.content_part.done``, for a tool
  call ``response.function_call_arguments.delta`` ... ``.done``, then
  ``response.output_item.done``, and last ``response.completed`` (or
  ``response.incomplete``) with the whole response, its usage and receipt. A chat error
  event becomes an ``error`` event, and the stream ends there, as OpenAI's does.

It reads dicts, never engine types, so that whatever the chat path learns to answer
(tool calls) reaches the Responses shape unchanged. It does not serve or send anything.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

__all__ = ["ResponseStream", "echo", "output_items", "response_body", "response_id", "usage"]

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(chat_id: str) -> str:
    """The response's id, from the chat answer's (which is its receipt's id)."""
    return "resp_" + (chat_id.split("-", 1)[-1] or secrets.token_hex(12))


def _item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def echo(request: dict[str, Any]) -> dict[str, Any]:
    """The request's options as a response object repeats them (OpenAI's defaults filled)."""
    text = request.get("text") or {}
    return {
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "metadata": request.get("metadata") or {},
        "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": request.get("temperature", 1.0),
        "text": {"format": text.get("format") or {"type": "text"}},
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "user": request.get("user"),
        "background": False,
    }


def usage(chat: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chat's usage in Responses' names."""
    if chat is None:
        return None
    cached = (chat.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": chat["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": chat["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": chat["total_tokens"],
    }


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_items(message: dict[str, Any], status: str = "completed") -> list[dict[str, Any]]:
    """A chat ``message`` as output items: its text (if any, or if nothing else), then one
    ``function_call`` per tool call."""
    calls = message.get("tool_calls") or []
    items = []
    text = message.get("content") or ""
    if text or not calls:
        items.append(_message_item(_item_id("msg"), text, status))
    for call in calls:
        function = call.get("function") or {}
        items.append(
            _call_item(
                _item_id("fc"),
                call.get("id") or _item_id("call"),
                function.get("name", ""),
                function.get("arguments", ""),
                "completed",
            )
        )
    return items


def _status(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    reason = _INCOMPLETE.get(finish_reason or "")
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def _response(resp_id: str, created_at: int, model: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": resp_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "usage": None,
        **options,
    }


def response_body(chat: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """A whole ``chat.completion`` body as a ``response`` object (``options``: :func:`echo`)."""
    choice = chat["choices"][0]
    status, details = _status(choice.get("finish_reason"))
    body = _response(response_id(chat["id"]), chat["created"], chat["model"], options)
    item_status = "incomplete" if status == "incomplete" else "completed"
    body.update(
        status=status,
        incomplete_details=details,
        output=output_items(choice.get("message") or {}, item_status),
        usage=usage(chat.get("usage")),
    )
    if "smallfirst" in chat:
        body["smallfirst"] = chat["smallfirst"]
    return body


class ResponseStream:
    """Chat chunks in, Responses events out (see the module); one per stream."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.sequence = 0
        self.response: dict[str, Any] | None = None  # from the first chunk on
        self.items: list[dict[str, Any]] = []  # output items, in order, as they grow
        self.text: dict[str, Any] | None = None  # the open message item
        self.calls: dict[int, dict[str, Any]] = {}  # chat's tool-call index -> its item
        self.finish_reason: str | None = None
        self.ended = False

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def _snapshot(self) -> dict[str, Any]:
        assert self.response is not None
        return dict(self.response, output=[dict(i) for i in self.items])

    def _start(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        created = int(chunk.get("created") or time.time())
        model = chunk.get("model") or ""
        chat_id = chunk.get("id") or ""
        self.response = _response(response_id(chat_id), created, model, self.options)
        snapshot = self._snapshot()
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The events one chat chunk (or chat error body) makes."""
        if self.ended:
            return []
        events = self._start(chunk) if self.response is None else []
        if "error" in chunk:
            error = chunk["error"] or {}
            self.ended = True
            events.append(
                self._event(
                    "error",
                    code=error.get("code"),
                    message=error.get("message", ""),
                    param=error.get("param"),
                )
            )
            return events
        assert self.response is not None
        if chunk.get("usage") is not None:
            self.response["usage"] = usage(chunk["usage"])
        if "smallfirst" in chunk:
            self.response["smallfirst"] = chunk["smallfirst"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events.extend(self._text_delta(delta["content"]))
            for call in delta.get("tool_calls") or []:
                events.extend(self._call_delta(call))
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        return events

    def _text_delta(self, text: str) -> list[dict[str, Any]]:
        events = []
        if self.text is None:
            events.extend(self._open_text())
        assert self.text is not None
        self.text["content"][0]["text"] += text
        where = {"item_id": self.text["id"], "output_index": self.items.index(self.text)}
        events.append(
            self._event(
                "response.output_text.delta", **where, content_index=0, delta=text, logprobs=[]
            )
        )
        return events

    def _open_text(self) -> list[dict[str, Any]]:
        item = _message_item(_item_id("msg"), "", "in_progress")
        self.text = item
        self.items.append(item)
        index = len(self.items) - 1
        added = dict(item, content=[])
        part = dict(item["content"][0])
        return [
            self._event("response.output_item.added", output_index=index, item=added),
            self._event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            ),
        ]

    def _call_delta(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        events = []
        function = call.get("function") or {}
        item = self.calls.get(call.get("index", 0))
        if item is None:
            item = _call_item(
                _item_id("fc"),
                call.get("id") or _item_id("call"),
                function.get("name") or "",
                "",
                "in_progress",
            )
            self.calls[call.get("index", 0)] = item
            self.items.append(item)
            events.append(
                self._event(
                    "response.output_item.added", output_index=len(self.items) - 1, item=dict(item)
                )
            )
        fragment = function.get("arguments") or ""
        if fragment:
            item["arguments"] += fragment
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self.items.index(item),
                    delta=fragment,
                )
            )
        return events

    def finish(self) -> list[dict[str, Any]]:
        """The closing events: every open item done, then the whole response."""
        if self.ended:
            return []
        events = self._start({}) if self.response is None else []
        assert self.response is not None
        self.ended = True
        if not self.items:  # nothing was said: an empty message, as OpenAI's would be
            events.extend(self._open_text())
        status, details = _status(self.finish_reason)
        item_status = "incomplete" if status == "incomplete" else "completed"
        for index, item in enumerate(self.items):
            where = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                part = item["content"][0]
                events.append(
                    self._event(
                        "response.output_text.done",
                        **where,
                        content_index=0,
                        text=part["text"],
                        logprobs=[],
                    )
                )
                events.append(
                    self._event("response.content_part.done", **where, content_index=0, part=part)
                )
                item["status"] = item_status
            else:
                events.append(
                    self._event(
                        "response.function_call_arguments.done",
                        **where,
                        name=item["name"],
                        arguments=item["arguments"],
                    )
                )
                item["status"] = "completed"
            events.append(
                self._event("response.output_item.done", output_index=index, item=dict(item))
            )
        self.response.update(status=status, incomplete_details=details)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event(kind, response=self._snapshot()))
        return events
