"""``POST /v1/responses`` bodies, validated at the edge and turned into a chat request.

The Responses API is served stateless, as a chat completion: :meth:`ResponsesRequest.to_chat`
gives the body of the equivalent chat request (OpenAI's chat wire format, as a dict), which
the gateway validates and serves exactly as it serves ``/v1/chat/completions``. The mapping:

- ``input``: a string (one user message) or a list of items: messages (``role`` user,
  system, developer or assistant; ``content`` a string or ``input_text``/``output_text``
  parts), ``function_call`` items (an assistant message's ``tool_calls``; consecutive ones
  share one message) and ``function_call_output`` items (``role: tool`` messages);
- ``instructions``: a leading system message;
- ``max_output_tokens`` -> ``max_completion_tokens``; ``temperature``, ``top_p``,
  ``stream`` (with usage, which the last event carries), ``user`` as they are;
- ``tools`` (function tools only) -> chat's ``{"type": "function", "function": {...}}``;
  ``tool_choice``, ``parallel_tool_calls`` as chat has them;
- ``text.format`` -> ``response_format`` (``json_schema``'s name, schema and strict move
  into chat's ``json_schema`` object).

What needs state the gateway does not keep is a 400 naming the parameter, before anything
runs: ``previous_response_id``, ``conversation``, ``background``, ``store: true`` (absent
or false is accepted: nothing is stored either way), ``prompt`` templates, ``include``,
``reasoning`` beyond none, ``truncation: auto``, non-function tools, and image, file or
audio input; so is ``top_logprobs`` above 0 (logprobs are not served on this endpoint).
Unknown extra fields are accepted and ignored, as on the chat endpoint.

This module does not serve anything and does not shape responses
(:mod:`.responses_output`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from smallfirst.errors import InvalidRequestError, UnsupportedError
from smallfirst.server.protocol import PositiveInt, StrictBool, Temperature, TopP

__all__ = ["ResponsesRequest", "chat_messages", "chat_tool_choice", "chat_tools"]

STATELESS = "this gateway serves the stateless subset of the Responses API"
Metadata = Annotated[dict[str, str], Field(max_length=16)]
_ROLES = ("user", "system", "developer", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text")


def _unsupported(what: str, param: str) -> UnsupportedError:
    return UnsupportedError(f"{what} is not supported: {STATELESS}", param=param)


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: StrictBool | None = None

    def response_format(self) -> dict[str, Any]:
        """Chat's ``response_format`` for this format."""
        if self.type != "json_schema":
            return {"type": self.type}
        if self.name is None or self.schema_ is None:
            missing = "name" if self.name is None else "schema"
            raise InvalidRequestError(
                f"text.format json_schema needs a {missing}", param=f"text.format.{missing}"
            )
        inner: dict[str, Any] = {"name": self.name, "schema": self.schema_}
        if self.description is not None:
            inner["description"] = self.description
        if self.strict is not None:
            inner["strict"] = self.strict
        return {"type": "json_schema", "json_schema": inner}


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: TextFormat | None = None


class ResponsesRequest(BaseModel):
    """The body of ``POST /v1/responses`` (the stateless subset; see the module)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(
        description="A string, or a list of items: messages (role user, system, developer "
        "or assistant; content a string or input_text/output_text parts), function_call "
        "and function_call_output items. Images, files and audio are a 400."
    )
    instructions: str | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: StrictBool | None = False
    tools: list[dict[str, Any]] | None = Field(
        None, description="Function tools only; other tool types are a 400."
    )
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    text: TextConfig | None = None
    metadata: Metadata | None = None
    user: str | None = None
    store: StrictBool | None = Field(
        None, description="Nothing is stored: absent or false; true is a 400."
    )
    # stored state, refused when given (a 400 naming the parameter)
    previous_response_id: str | None = Field(None, description="Not supported: a 400.")
    conversation: str | dict[str, Any] | None = Field(None, description="Not supported: a 400.")
    background: StrictBool | None = Field(None, description="Only false; true is a 400.")
    prompt: dict[str, Any] | None = Field(None, description="Not supported: a 400.")
    include: list[str] | None = Field(None, description="Only empty; any value is a 400.")
    reasoning: dict[str, Any] | None = Field(None, description="Only effort none; else a 400.")
    truncation: Literal["auto", "disabled"] | None = Field(
        None, description="Only disabled; auto is a 400."
    )
    top_logprobs: Annotated[int, Field(ge=0, le=20, strict=True)] | None = Field(
        None, description="Only 0: logprobs are not served here (a 400)."
    )

    def refuse_unserved(self) -> None:
        """A 400 for the first option given that needs state or features not served."""
        given = (
            ("previous_response_id", self.previous_response_id is not None),
            ("conversation", self.conversation is not None),
            ("background", bool(self.background)),
            ("store", bool(self.store)),
            ("prompt", self.prompt is not None),
            ("include", bool(self.include)),
            ("truncation", self.truncation == "auto"),
            ("top_logprobs", bool(self.top_logprobs)),
        )
        for param, refused in given:
            if refused:
                raise _unsupported(f"{param}={getattr(self, param)!r}", param)
        reasoning = self.reasoning or {}
        if reasoning.get("effort") not in (None, "none") or reasoning.get("summary"):
            raise _unsupported("reasoning other than effort none", "reasoning")

    def to_chat(self) -> dict[str, Any]:
        """The equivalent chat completion request, in OpenAI's chat wire format."""
        self.refuse_unserved()
        messages = chat_messages(self.input)
        if self.instructions is not None:
            messages.insert(0, {"role": "system", "content": self.instructions})
        if not messages:
            raise InvalidRequestError("input must not be empty", param="input")
        chat: dict[str, Any] = {"model": self.model, "messages": messages}
        optional = {
            "max_completion_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "user": self.user,
            "parallel_tool_calls": self.parallel_tool_calls,
        }
        chat.update({k: v for k, v in optional.items() if v is not None})
        if self.stream:
            # the last event carries the usage (response.completed's)
            chat["stream"] = True
            chat["stream_options"] = {"include_usage": True}
        if self.tools:
            chat["tools"] = chat_tools(self.tools)
        if self.tool_choice is not None:
            chat["tool_choice"] = chat_tool_choice(self.tool_choice)
        if self.text is not None and self.text.format is not None:
            chat["response_format"] = self.text.format.response_format()
        return chat


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses' function tools (flat) as chat's (nested under ``function``)."""
    out = []
    for i, tool in enumerate(tools):
        kind = tool.get("type")
        if kind != "function":
            raise _unsupported(f"tools of type {kind!r} (only function tools are)", f"tools.[{i}]")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError("a function tool needs a name", param=f"tools.[{i}].name")
        function = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    """Responses' ``tool_choice`` as chat's: the modes as they are, a named function nested."""
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if choice.get("type") in ("auto", "none", "required"):  # tolerated: the mode as an object
        return str(choice["type"])
    raise _unsupported(f"tool_choice {choice!r} (only functions are)", "tool_choice")


def chat_messages(items: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses' ``input`` as chat messages (see the module for the mapping)."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, i))
        elif kind == "function_call":
            call = _tool_call(item, i)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                # the calls of one turn (and the text before them) are one chat message
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(_tool_result(item, i))
        elif kind == "item_reference":
            raise _unsupported("input items by reference", f"input.[{i}]")
        else:
            raise _unsupported(f"input items of type {kind!r}", f"input.[{i}].type")
    return messages


def _message(item: dict[str, Any], i: int) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise InvalidRequestError(
            f"role must be one of {', '.join(_ROLES)}, not {role!r}", param=f"input.[{i}].role"
        )
    return {"role": role, "content": _text(item.get("content"), f"input.[{i}].content")}


def _text(content: Any, param: str) -> str:
    """A string, or the text of ``input_text``/``output_text`` parts joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError("content must be a string or a list of parts", param=param)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "refusal":
            texts.append(str(part.get("refusal", "")))
            continue
        if kind not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise UnsupportedError(
                f"content parts of type {kind!r} are not supported; send text",
                param=f"{param}.[{j}].type",
            )
        texts.append(part["text"])
    return "".join(texts)


def _tool_call(item: dict[str, Any], i: int) -> dict[str, Any]:
    for key in ("call_id", "name", "arguments"):
        if not isinstance(item.get(key), str):
            raise InvalidRequestError(
                f"a function_call item needs a string {key}", param=f"input.[{i}].{key}"
            )
    return {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }


def _tool_result(item: dict[str, Any], i: int) -> dict[str, Any]:
    call_id = item.get("call_id")
    if not isinstance(call_id, str):
        raise InvalidRequestError(
            "a function_call_output item needs a string call_id", param=f"input.[{i}].call_id"
        )
    output = _text(item.get("output"), f"input.[{i}].output")
    return {"role": "tool", "tool_call_id": call_id, "content": output}
