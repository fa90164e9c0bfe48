"""A batch input file checked line by line: what ``POST /v1/files`` accepts for ``purpose=batch``.

Each non-empty line must be one JSON object ``{"custom_id", "method": "POST", "url",
"body"}`` whose ``url`` is an endpoint batches serve and whose ``custom_id`` no other line
of the file uses (OpenAI's rules). The first fault found is a 400 naming its line number
(1-based, as an editor shows it), so a client fixes the file before anything is stored.
A line's body is checked only as a JSON object here; the endpoint's own validation runs
when the line is answered, and its refusal becomes that line's entry in the error file.

It also says which ``completion_window`` values are accepted, and which file lifetimes
(``expires_after`` on an upload, a batch's ``output_expires_after``: OpenAI's anchor
``created_at`` and 3600 to 2592000 seconds). It reads bytes; it does not store them or run
anything.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from smallfirst.errors import InvalidRequestError
from smallfirst.store.batches import LineRef

__all__ = ["ENDPOINTS", "ExpiresAfter", "form_expires_after", "parse_lines", "window_hours"]

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_WINDOW_H = 168  # our extension of OpenAI's "24h": up to a week
_WINDOW = re.compile(r"^([1-9][0-9]{0,2})h$")
MIN_EXPIRY_S, MAX_EXPIRY_S = 3600, 2_592_000  # OpenAI's: an hour to 30 days


class ExpiresAfter(BaseModel):
    """A file's lifetime: ``seconds`` after its ``created_at``."""

    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"]
    seconds: int = Field(ge=MIN_EXPIRY_S, le=MAX_EXPIRY_S)


def _fault(line: int, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"Line {line} of the file: {message}", param="file")


def _check(number: int, raw: bytes) -> tuple[str, str]:
    """One line's custom_id and url, or the fault that refuses the file."""
    try:
        item = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _fault(number, "not valid JSON") from None
    if not isinstance(item, dict):
        raise _fault(number, "must be a JSON object")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise _fault(number, "'custom_id' must be a non-empty string")
    if item.get("method") != "POST":
        raise _fault(number, "'method' must be \"POST\"")
    url = item.get("url")
    if url not in ENDPOINTS:
        raise _fault(number, f"'url' must be one of {', '.join(ENDPOINTS)}")
    if not isinstance(item.get("body"), dict):
        raise _fault(number, "'body' must be a JSON object")
    return custom_id, str(url)


def parse_lines(content: bytes, max_lines: int) -> tuple[list[LineRef], set[str]]:
    """The requests of a batch input file, each with where its bytes are; and the urls."""
    refs: list[LineRef] = []
    seen: set[str] = set()
    urls: set[str] = set()
    offset = 0
    for number, raw in enumerate(content.split(b"\n"), start=1):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        custom_id, url = _check(number, raw)
        if custom_id in seen:
            raise _fault(number, f"custom_id {custom_id!r} is used by an earlier line")
        seen.add(custom_id)
        urls.add(url)
        refs.append(LineRef(number, custom_id, start, len(raw)))
        if len(refs) > max_lines:
            raise _fault(number, f"a batch file holds at most {max_lines} requests")
    if not refs:
        raise InvalidRequestError("The file holds no requests", param="file")
    return refs, urls


def window_hours(window: str) -> int:
    """``completion_window``'s hours: "24h", or as our extension any "<N>h" up to 168."""
    m = _WINDOW.match(window)
    if m is None or int(m.group(1)) > MAX_WINDOW_H:
        raise InvalidRequestError(
            f"completion_window must be '24h' (or '<N>h' up to {MAX_WINDOW_H}h here), "
            f"not {window!r}",
            param="completion_window",
        )
    return int(m.group(1))


def form_expires_after(anchor: str | None, seconds: str | None) -> float | None:
    """An upload's lifetime in seconds from its multipart fields ``expires_after[anchor]``
    and ``expires_after[seconds]`` (neither: None, the file never expires)."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequestError(
            f"expires_after[anchor] must be 'created_at', not {anchor!r}",
            param="expires_after.anchor",
        )
    try:
        value = int(seconds or "")
    except ValueError:
        value = 0
    if not MIN_EXPIRY_S <= value <= MAX_EXPIRY_S:
        raise InvalidRequestError(
            f"expires_after[seconds] must be an integer from {MIN_EXPIRY_S} to {MAX_EXPIRY_S}, "
            f"not {seconds!r}",
            param="expires_after.seconds",
        )
    return float(value)
