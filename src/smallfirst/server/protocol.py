"""OpenAI's request bodies, validated at the edge, and turned into engine requests.

Pydantic checks types and ranges (a violation is a 400 naming the parameter); the
``to_generation`` methods check what pydantic cannot express (unsupported features) and
build the frozen :class:`~smallfirst.engines.base.GenerationRequest` that the engines take.
Unknown extra fields are accepted and ignored, as OpenAI-compatible servers usually do, so
clients that send newer parameters keep working.

Responses are built as plain dicts in :mod:`smallfirst.server.responses` (hot path). What
these models document in ``/openapi.json`` is what is served: options that pydantic lets
through only for ``to_generation`` to refuse them by name (tools, ``suffix``, non-text
parts) are documented as refused. ``response_format`` ``json_schema`` is served: its schema
becomes a grammar (:mod:`smallfirst.engines.grammars`, which refuses what it cannot enforce).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from smallfirst.engines.base import GenerationRequest, Sampling, Tools
from smallfirst.engines.choices import MAX_CHOICES
from smallfirst.engines.grammars import json_object_grammar, schema_grammar
from smallfirst.engines.toolcalls import call_grammar
from smallfirst.errors import InvalidRequestError, UnsupportedError
from smallfirst.types import Message, ToolCall

# strict, as OpenAI is: a boolean or a string where a number belongs is a 400, never coerced
Temperature = Annotated[float, Field(ge=0.0, le=2.0, strict=True)]
TopP = Annotated[float, Field(gt=0.0, le=1.0, strict=True)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0, strict=True)]
PositiveInt = Annotated[int, Field(ge=1, strict=True)]
StrictBool = Annotated[bool, Field(strict=True)]
Stop = str | Annotated[list[str], Field(max_length=4)] | None
# OpenAI's range; a seed is a signed 64-bit integer
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1, strict=True)]
# token id (as a string, as OpenAI's keys are) -> a bias added to its logit; ids past the
# model's vocabulary are refused by the engine, which knows it
TokenId = Annotated[str, Field(pattern=r"^[0-9]{1,9}$")]
Bias = Annotated[float, Field(ge=-100.0, le=100.0, strict=True)]
LogitBias = Annotated[
    dict[TokenId, Bias], Field(max_length=1024, json_schema_extra={"additionalProperties": False})
]


class _Edge(BaseModel):
    model_config = ConfigDict(extra="allow")


def _text_part(schema: dict[str, Any]) -> None:
    schema["required"] = ["type", "text"]


class ContentPart(_Edge):
    # documented as what is served (text parts), validated loosely so that the refusal
    # names the part's type (see ``ChatMessage.text``)
    model_config = ConfigDict(extra="allow", json_schema_extra=_text_part)

    type: str = Field(json_schema_extra={"const": "text"})
    text: str | None = Field(None, json_schema_extra={"type": "string"})


FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class FunctionCall(_Edge):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCallIn(_Edge):
    """A function call in an assistant turn of the history."""

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Edge):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    # an assistant turn's calls; a tool turn names the call it answers
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    def message(self, index: int) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise InvalidRequestError(
                "a message with role 'tool' needs the tool_call_id of the call it answers",
                param=f"messages.[{index}].tool_call_id",
            )
        if self.tool_calls and self.role != "assistant":
            raise InvalidRequestError(
                "only assistant messages carry tool_calls", param=f"messages.[{index}].tool_calls"
            )
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in self.tool_calls or ()
        )
        tool_call_id = self.tool_call_id if self.role == "tool" else None
        return Message(self.role, self.text(index), calls, tool_call_id)

    def text(self, index: int) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise UnsupportedError(
                    f"content parts of type {part.type!r} are not supported; send text",
                    param=f"messages.[{index}].content",
                )
            parts.append(part.text)
        return "".join(parts)


class StreamOptions(_Edge):
    include_usage: StrictBool = False


class JsonSchemaFormat(_Edge):
    # OpenAI's rule for the name
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    # required here (OpenAI lets it out): the grammar is built from it
    schema_: dict[str, Any] = Field(
        alias="schema",
        description="Enforced by a grammar on local models. Keywords it cannot enforce "
        "(number ranges, oneOf, allOf, not, uniqueItems, formats other than uuid, date, "
        "time and date-time ...) are a 400 naming them.",
    )
    # the grammar holds the output to the schema either way
    strict: StrictBool | None = None


class ResponseFormat(_Edge):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def grammar(self) -> str | None:
        """The GBNF that holds the reply to this format (None for text)."""
        if self.type == "json_object":
            return json_object_grammar()
        if self.type == "json_schema":
            if self.json_schema is None:
                raise InvalidRequestError(
                    "response_format json_schema needs a json_schema object",
                    param="response_format.json_schema",
                )
            return schema_grammar(self.json_schema.schema_, param="response_format")
        return None


class FunctionDef(_Edge):
    name: FunctionName
    description: str | None = None
    # a JSON schema for the arguments; the grammar that enforces a call is built from it
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class ToolDef(_Edge):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Edge):
    name: str


class NamedToolChoice(_Edge):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class _Sampled(_Edge):
    model: str = Field(min_length=1)
    temperature: Temperature | None = None
    top_p: TopP | None = None
    # choices: a whole generation each, so capped (a 400 above); a seeded request's choice i
    # is sampled with seed + i
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES, strict=True)] | None = None
    stream: StrictBool | None = False
    # only with stream: true (a 400 otherwise, as OpenAI answers)
    stream_options: StreamOptions | None = Field(
        None, description="Only when `stream` is true; a 400 otherwise."
    )
    stop: Stop = None
    seed: Seed | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None

    def _common(self) -> dict[str, Any]:
        if self.stream_options is not None and not self.stream:
            raise InvalidRequestError(
                "stream_options is only allowed when stream is true", param="stream_options"
            )
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        bias = sorted((int(token), float(v)) for token, v in (self.logit_bias or {}).items())
        return {
            "logit_bias": tuple(bias),
            "temperature": 1.0 if self.temperature is None else self.temperature,
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "stop": stop,
            "seed": self.seed,
            "presence_penalty": self.presence_penalty or 0.0,
            "frequency_penalty": self.frequency_penalty or 0.0,
        }

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampled):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    logprobs: StrictBool | None = False
    top_logprobs: Annotated[int, Field(ge=0, le=20, strict=True)] | None = None
    response_format: ResponseFormat | None = None
    # OpenAI's limit of 128 functions
    tools: Annotated[list[ToolDef], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = Field(
        None,
        description="`required` and a named function are enforced by a grammar built from "
        "the parameter schemas on local models; `auto` holds a call to it once the model "
        "starts one.",
    )
    parallel_tool_calls: StrictBool | None = None
    # the deprecated form of tools: refused (a 400), so documented as such
    functions: list[Any] | None = Field(None, json_schema_extra={"maxItems": 0})

    def to_generation(self, *, tool_grammar: bool = True) -> GenerationRequest:
        """``tool_grammar`` False leaves ``tool_choice`` auto's calls unconstrained."""
        if self.functions:
            raise UnsupportedError(
                "the deprecated 'functions' parameter is not supported; send 'tools'",
                param="functions",
            )
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequestError(
                "top_logprobs requires logprobs to be true", param="top_logprobs"
            )
        tools = self._tools()
        fmt = self.response_format
        grammar = fmt.grammar() if fmt is not None else None
        if tools is not None and tools.choice != "none" and grammar is not None:
            raise UnsupportedError(
                "response_format json_object or json_schema together with tools is not "
                "supported: send one of them (or tool_choice 'none')",
                param="response_format",
            )
        triggers: tuple[str, ...] = ()
        if tools is not None and tools.choice != "none":
            grammar, triggers = call_grammar(tools, enforce_auto=tool_grammar)
        messages = tuple(m.message(i) for i, m in enumerate(self.messages))
        sampling = Sampling(
            **self._common(),
            max_tokens=self.max_completion_tokens or self.max_tokens,
            logprobs=bool(self.logprobs),
            top_logprobs=self.top_logprobs or 0,
            grammar=grammar,
            grammar_triggers=triggers,
            # passed on to remote engines as sent (None for text, the default)
            response_format=None if fmt is None or fmt.type == "text" else _as_sent(fmt),
        )
        return GenerationRequest(sampling=sampling, messages=messages, n=self.n or 1, tools=tools)

    def _tools(self) -> Tools | None:
        choice = self.tool_choice
        if not self.tools:
            if choice is not None and choice != "none":
                raise InvalidRequestError(
                    "tool_choice is only allowed when tools are specified", param="tool_choice"
                )
            return None
        names = [t.function.name for t in self.tools]
        if len(set(names)) < len(names):
            raise InvalidRequestError("two tools have the same function name", param="tools")
        function = None
        mode: str = "auto"
        if isinstance(choice, NamedToolChoice):
            function, mode = choice.function.name, "function"
            if function not in names:
                raise InvalidRequestError(
                    f"tool_choice names function {function!r}, which is not among the tools",
                    param="tool_choice",
                )
        elif choice is not None:
            mode = choice
        definitions = json.dumps(
            [t.model_dump(exclude_none=True) for t in self.tools], ensure_ascii=False
        )
        return Tools(
            definitions=definitions,
            choice=mode,
            function=function,
            parallel=self.parallel_tool_calls,
        )


def _as_sent(fmt: ResponseFormat) -> str:
    return json.dumps(fmt.model_dump(by_alias=True, exclude_none=True), sort_keys=True)


class CompletionRequest(_Sampled):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    # 16: OpenAI's default for this endpoint
    max_tokens: Annotated[int, Field(ge=0, strict=True)] | None = 16
    logprobs: Annotated[int, Field(ge=0, le=5, strict=True)] | None = None
    echo: StrictBool = False
    suffix: str | None = Field(None, json_schema_extra={"maxLength": 0})  # a 400 when set

    def to_generation(self) -> GenerationRequest:
        if self.suffix:
            raise UnsupportedError(
                "suffix (fill-in-the-middle) is not supported yet", param="suffix"
            )
        prompt = self.prompt if isinstance(self.prompt, str) else self.prompt[0]
        sampling = Sampling(
            **self._common(),
            max_tokens=self.max_tokens,
            logprobs=self.logprobs is not None,
            top_logprobs=self.logprobs or 0,
        )
        return GenerationRequest(sampling=sampling, prompt=prompt, echo=self.echo, n=self.n or 1)
