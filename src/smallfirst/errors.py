"""Errors the gateway returns, in OpenAI's JSON shape.

Every failure that reaches a client is a :class:`GatewayError`: an HTTP status plus the
``{"error": {"message", "type", "param", "code"}}`` body that OpenAI's clients parse. Raising
one anywhere below the server (validation, engines, catalog) is how a layer says "this is
the caller's problem" or "the upstream failed" without knowing about HTTP.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An error with an HTTP status and OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    """400: the request is malformed or out of range."""
    return GatewayError(400, message, param=param, code=code)


def model_not_found(name: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model '{name}' does not exist or is not installed here. "
        "GET /v1/models lists the ones that are.",
        param="model",
        code="model_not_found",
    )


def context_length_exceeded(prompt_tokens: int, limit: int, max_tokens: int | None) -> GatewayError:
    asked = f" plus max_tokens {max_tokens}" if max_tokens else ""
    return GatewayError(
        400,
        f"This model's maximum context length is {limit} tokens. However, your request has "
        f"{prompt_tokens} prompt tokens{asked}. Please shorten the prompt or max_tokens.",
        param="messages",
        code="context_length_exceeded",
    )


def upstream(status: int, message: str, code: str = "upstream_error") -> GatewayError:
    """A failure of an engine or a remote server, not of the request."""
    return GatewayError(
        status,
        message,
        type="server_error" if status >= 500 else "invalid_request_error",
        code=code,
    )
