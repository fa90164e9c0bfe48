"""Pydantic models of every JSON body the gateway answers with, for ``/openapi.json`` only.

The handlers build their bodies as plain dicts (:mod:`.responses`, :mod:`.errors`,
``Receipt.public``) and FastAPI never validates them against these models: they exist so
that the schema says exactly what goes on the wire, for clients, code generators and
fuzzers. ``tests/server/test_openapi.py`` holds real responses to them.

OpenAI's shapes (completions, chunks, the error body) forbid fields they do not list, so
a new field shows up as a schema break; smallfirst's own objects (health, receipts,
summaries, dashboard data) allow extra fields so they can grow. This module does not build,
send or validate responses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "DashboardFrontier",
    "DashboardMeta",
    "DashboardTimeseries",
    "EmbeddingList",
    "ErrorBody",
    "Health",
    "KeyTotals",
    "ModelList",
    "Receipt",
    "ReceiptList",
    "Summary",
    "TextCompletion",
    "TextCompletionChunk",
]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- errors -------------------------------------------------------------------------------


class ErrorObject(_Closed):
    message: str
    type: str = Field(description="invalid_request_error or server_error")
    param: str | None = Field(description="the parameter at fault, as a path")
    code: str | None = Field(description="model_not_found, context_length_exceeded, …")


class ErrorBody(_Closed):
    """OpenAI's error body; also the last event of a stream that failed after it began."""

    error: ErrorObject


# --- the smallfirst receipt ---------------------------------------------------------------


class ReceiptTokens(_Open):
    prompt: int | None
    completion: int | None


class ReceiptEnergy(_Open):
    energy_j: float | None
    method: str = Field(description="measured, estimated, profile or unknown")
    scope: str | None
    source: str | None
    note: str | None
    cpu_s: float | None


class ReceiptCost(_Open):
    cost_usd: float | None
    method: str | None


class ReceiptCarbon(_Open):
    co2_g: float | None
    grid_g_per_kwh: float
    pue: float
    source: str
    basis: str


class ReceiptBaseline(_Open):
    model: str | None
    energy_j: float | None
    cost_usd: float | None
    co2_g: float | None
    source: str | None
    rule: str | None = Field(
        description="answered-by-reference (savings 0), profile-ratio, hosted-price, "
        "reference-profile, cache-hit or none"
    )


class ReceiptCache(_Open):
    status: str | None = Field(description="hit, miss, or null when not looked up")
    reuses: str | None = Field(description="a hit: the receipt whose answer it reused")


class ReceiptSavings(_Open):
    energy_j: float | None
    cost_usd: float | None
    co2_g: float | None


class Receipt(_Open):
    """What one answer used and cost: the ``smallfirst`` field and the receipts API."""

    receipt_id: str
    created_at: float = Field(description="unix seconds")
    model: str
    tier: str
    engine: str
    status: str = Field(description="ok, error or cancelled")
    policy: str | None
    route: dict[str, Any] = Field(description="how the model was chosen (policy, attempts, …)")
    tokens: ReceiptTokens
    duration_s: float
    ttft_s: float | None
    energy: ReceiptEnergy
    cost: ReceiptCost
    carbon: ReceiptCarbon
    baseline: ReceiptBaseline
    savings: ReceiptSavings
    cache: ReceiptCache


# --- completions --------------------------------------------------------------------------


class PromptTokensDetails(_Closed):
    cached_tokens: int = Field(
        description="prompt tokens whose KV was reused from an earlier request, not evaluated"
    )


class Usage(_Closed):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # only from the batched in-process engine (engine_batching), as OpenAI reports it
    prompt_tokens_details: PromptTokensDetails | None = None


class TopLogprob(_Closed):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(_Closed):
    content: list[TokenLogprob]
    refusal: None


class TextLogprobs(_Closed):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CalledFunction(_Closed):
    name: str
    arguments: str = Field(
        description="JSON text; held to the parameter schema by a grammar "
        "for tool_choice required or a named function"
    )


class ToolCall(_Closed):
    id: str
    type: Literal["function"]
    function: CalledFunction


class AssistantMessage(_Closed):
    role: Literal["assistant"]
    content: str | None = Field(description="null when the reply is only tool calls")
    refusal: None
    tool_calls: list[ToolCall] | None = Field(None, description="absent when none was called")


class ChatChoice(_Closed):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class TextChoice(_Closed):
    index: int
    text: str
    logprobs: TextLogprobs | None
    finish_reason: str | None


class _Head(_Closed):
    id: str
    created: int
    model: str = Field(description="the model that answered (for auto, the one chosen)")
    system_fingerprint: None


class ChatCompletion(_Head):
    object: Literal["chat.completion"]
    choices: list[ChatChoice]
    usage: Usage | None
    smallfirst: Receipt | None = Field(None, description="absent when receipts are off")


class TextCompletion(_Head):
    object: Literal["text_completion"]
    choices: list[TextChoice]
    usage: Usage | None
    smallfirst: Receipt | None = Field(None, description="absent when receipts are off")


class CalledFunctionDelta(_Closed):
    name: str | None = Field(None, description="in a call's first piece")
    arguments: str | None = Field(None, description="JSON text, in pieces")


class ToolCallDelta(_Closed):
    index: int = Field(description="the call's place among the choice's calls")
    id: str | None = Field(None, description="in a call's first piece")
    type: Literal["function"] | None = None
    function: CalledFunctionDelta


class ChatDelta(_Closed):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChatChunkChoice(_Closed):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletionChunk(_Head):
    """One ``data:`` event of a chat stream; the last carries the receipt."""

    object: Literal["chat.completion.chunk"]
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(None, description="on the usage chunk (include_usage)")
    smallfirst: Receipt | None = None


class TextCompletionChunk(_Head):
    """One ``data:`` event of a completions stream; the last carries the receipt."""

    object: Literal["text_completion"]
    choices: list[TextChoice]
    usage: Usage | None = None
    smallfirst: Receipt | None = None


# --- embeddings ---------------------------------------------------------------------------


class Embedding(_Closed):
    object: Literal["embedding"]
    index: int = Field(description="the input's position in the request")
    embedding: list[float] | str = Field(
        description="the unit vector (mean-pooled, L2-normalised): floats, or with "
        "encoding_format base64 the base64 of its little-endian float32 bytes"
    )


class EmbeddingUsage(_Closed):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(_Closed):
    object: Literal["list"]
    data: list[Embedding]
    model: str = Field(description="the model that embedded (for auto, the default one)")
    usage: EmbeddingUsage
    smallfirst: Receipt | None = Field(None, description="absent when receipts are off")


# --- models and health --------------------------------------------------------------------


class ModelEntry(_Closed):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    smallfirst: dict[str, Any] = Field(
        description="a policy's router, or a model's tier, size, context and engine"
    )


class ModelList(_Closed):
    object: Literal["list"]
    data: list[ModelEntry]


class Health(_Open):
    status: str
    version: str
    models_available: list[str]
    models_loaded: list[str]


# --- receipts API and dashboard -----------------------------------------------------------


class ReceiptList(_Open):
    object: Literal["list"]
    data: list[Receipt]
    has_more: bool
    next_cursor: str | None


class Totals(_Open):
    requests: int
    ok: int
    prompt_tokens: int
    completion_tokens: int
    energy_j: float
    energy_unknown: int
    cost_usd: float
    co2_g: float
    saved_energy_j: float
    saved_energy_pct: float | None
    saved_cost_pct: float | None


class ModelTotals(Totals):
    model: str
    tier: str


class KeyTotals(Totals):
    key_id: str | None = Field(description="the API key; null: requests made without one")
    key_name: str | None


class _Filtered(_Open):
    since: float | None
    until: float | None
    model: str | None


class OverheadTotals(_Open):
    count: int
    duration_s: float
    energy_j: float
    energy_unknown: int
    cpu_s: float
    cost_usd: float
    co2_g: float


class OverheadItem(OverheadTotals):
    kind: str = Field(description="model_load: loading a model's weights")
    model: str


class Overhead(_Open):
    """Work billed to no request (not in ``total``): loading models' weights."""

    total: OverheadTotals
    items: list[OverheadItem]


class Summary(_Filtered):
    object: Literal["summary"]
    total: Totals
    models: list[ModelTotals]
    overhead: Overhead
    keys: list[KeyTotals] | None = Field(default=None, description="with by=key")


class SeriesPoint(_Open):
    t: float
    model: str
    requests: int
    tokens: int
    energy_j: float
    energy_unknown: int


class DashboardTimeseries(_Filtered):
    object: Literal["dashboard.timeseries"]
    start: float | None
    end: float
    bucket_s: int
    models: list[str]
    data: list[SeriesPoint]


class FrontierPoint(_Open):
    model: str
    accuracy: float
    n: int
    energy_j_per_item: float | None
    energy_method: str | None
    cost_usd_per_item: float | None
    seconds_per_item: float | None
    on_frontier: bool | None


class DashboardFrontier(_Open):
    object: Literal["dashboard.frontier"]
    run: str | None
    benchmarks: list[str]
    results: int
    models: list[FrontierPoint]
    router: list[FrontierPoint]


class DashboardMeta(_Open):
    object: Literal["dashboard.meta"]
    version: str
    reference_model: str | None
    default_model: str | None
    receipts: bool
