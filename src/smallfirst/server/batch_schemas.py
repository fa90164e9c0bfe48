"""Response models of the Files and Batch API, for ``/openapi.json`` only.

The routes (:mod:`.files_api`, :mod:`.batches_api`) return the dicts they build; these
models describe them, field for field as OpenAI's ``file``, ``batch`` and list objects
(the openai package's ``FileObject``, ``Batch``, ``BatchRequestCounts``), plus the batch's
``smallfirst`` field. They validate nothing at run time.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Batch", "BatchList", "FileDeleted", "FileList", "FileObject"]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileObject(_Closed):
    """OpenAI's ``file``."""

    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["batch", "batch_output"]
    status: Literal["processed"]
    expires_at: int | None
    status_details: str | None


class FileList(_Closed):
    object: Literal["list"]
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(_Closed):
    id: str
    object: Literal["file"]
    deleted: bool


class BatchError(_Closed):
    code: str | None
    line: int | None
    message: str | None
    param: str | None


class BatchErrors(_Closed):
    object: Literal["list"]
    data: list[BatchError]


class RequestCounts(_Closed):
    total: int
    completed: int = Field(description="lines answered 200")
    failed: int = Field(description="lines answered with an error, or expired")


class InputTokensDetails(_Closed):
    cached_tokens: int


class OutputTokensDetails(_Closed):
    reasoning_tokens: int = Field(description="always 0 here")


class BatchUsage(_Closed):
    """OpenAI's ``BatchUsage``: the finished lines' tokens, summed."""

    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class BatchCarbon(_Closed):
    """When the batch runs, and what its lines emitted (docs/carbon-aware-batches.md)."""

    plan: dict[str, Any] | None = Field(
        description="the estimate, the signal, at_once, reason, the hours chosen, and the "
        "first plan's intensities at submission and in the worst hours"
    )
    co2_g_as_run: float | None = Field(description="the lines' receipts, summed")
    co2_g_at_submission: float | None = Field(
        description="the same measured energy in the hours it would have run at submission"
    )
    co2_g_worst_hours: float | None = Field(description="... in the window's worst hours")
    hours_chosen: list[str]
    lines_with_co2: int


class Batch(_Closed):
    """OpenAI's ``batch``, with a ``smallfirst`` field."""

    id: str
    object: Literal["batch"]
    endpoint: str
    model: str | None
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str = Field(description='"24h", or here any "<N>h" up to 168')
    status: Literal[
        "validating",
        "failed",
        "in_progress",
        "finalizing",
        "completed",
        "expired",
        "cancelling",
        "cancelled",
    ]
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    expires_at: int
    in_progress_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, str] | None
    usage: BatchUsage
    smallfirst: BatchCarbon


class BatchList(_Closed):
    object: Literal["list"]
    data: list[Batch]
    first_id: str | None
    last_id: str | None
    has_more: bool
