"""Pydantic models of ``/v1/responses``' answers, for ``/openapi.json`` only.

The handler builds its bodies and events as plain dicts (:mod:`.responses_output`); these
models say what goes on the wire, as :mod:`.schemas` does for the other routes (kept apart
only to keep that module small). OpenAI's shapes forbid fields they do not list; the
stream's events, which differ by ``type``, are one open model. This module does not build,
send or validate responses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from smallfirst.server.schemas import Receipt

__all__ = ["Response", "ResponseEvent"]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutputText(_Closed):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(description="always empty")
    logprobs: list[Any] = Field(description="always empty")


class OutputMessage(_Closed):
    type: Literal["message"]
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"]
    content: list[OutputText]


class FunctionCall(_Closed):
    type: Literal["function_call"]
    id: str
    call_id: str = Field(description="the id a function_call_output item answers")
    name: str
    arguments: str = Field(description="JSON text")
    status: Literal["in_progress", "completed", "incomplete"]


class InputTokensDetails(_Closed):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(_Closed):
    reasoning_tokens: int


class ResponseUsage(_Closed):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(_Closed):
    reason: Literal["max_output_tokens", "content_filter"]


class Response(_Closed):
    """A ``response`` object: the body of a request, and the last event of a stream."""

    id: str = Field(description="resp_ and the receipt id's hex")
    object: Literal["response"]
    created_at: int
    status: Literal["in_progress", "completed", "incomplete"]
    error: None
    incomplete_details: IncompleteDetails | None
    model: str = Field(description="the model that answered (for auto, the one chosen)")
    output: list[OutputMessage | FunctionCall]
    usage: ResponseUsage | None
    # the request's options, echoed
    instructions: str | None
    max_output_tokens: int | None
    metadata: dict[str, str]
    parallel_tool_calls: bool
    previous_response_id: None
    reasoning: dict[str, None]
    store: Literal[False] = Field(description="nothing is stored")
    temperature: float | None
    text: dict[str, Any]
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    top_p: float | None
    truncation: Literal["disabled"]
    user: str | None
    background: Literal[False]
    smallfirst: Receipt | None = Field(None, description="absent when receipts are off")


class ResponseEvent(BaseModel):
    """One event of a ``/v1/responses`` stream; its other fields depend on its ``type``."""

    model_config = ConfigDict(extra="allow")

    type: Literal[
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
        "response.incomplete",
        "error",
    ]
    sequence_number: int = Field(description="0, 1, 2 … in the order sent")
    response: Response | None = Field(
        None, description="the lifecycle events' (the last one's carries usage and receipt)"
    )
