"""The one error tree: every failure smallfirst raises on purpose is a :class:`SmallfirstError`.

Each part raises the domain error that says what went wrong in its own terms (a model the
catalog does not know, a prompt longer than the context, an upstream that timed out, a
malformed routing policy); none of them knows about HTTP. The server alone turns an error
into OpenAI's status, type and code, in one table (:mod:`smallfirst.server.errors`), and
the evaluation harness reads the same table to tell a refused item from a failed engine.

``param`` names the request field at fault where there is one, as OpenAI's errors do.
This module imports nothing from the package.
"""

from __future__ import annotations

__all__ = [
    "AccessError",
    "ArtifactError",
    "BenchmarkError",
    "CatalogError",
    "ConfigError",
    "ContextLengthError",
    "DataError",
    "DataUnavailableError",
    "EmbeddingInputTooLongError",
    "EngineError",
    "EvaluationError",
    "GenerationError",
    "InvalidCursorError",
    "InvalidKeyError",
    "InvalidRequestError",
    "ModelNotAllowedError",
    "NotFoundError",
    "OverloadedError",
    "PeerBuildError",
    "PolicyError",
    "PullError",
    "QuotaExceededError",
    "RateLimitedError",
    "RoutingError",
    "ScopeError",
    "ShuttingDownError",
    "SignalError",
    "SmallfirstError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownModelError",
    "UnsupportedError",
    "UpstreamCoolingError",
    "UpstreamError",
    "UpstreamRateLimitedError",
    "UpstreamRefusedError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
]


class SmallfirstError(Exception):
    """The root: a message fit for the person who caused it, and the field at fault."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ConfigError(SmallfirstError):
    """The settings or config file are invalid."""


class InvalidRequestError(SmallfirstError):
    """A request is malformed or out of range; nothing was run for it."""


class UnsupportedError(InvalidRequestError):
    """A request asks for something valid that this model or gateway cannot do."""


class NotFoundError(InvalidRequestError):
    """A request names a thing (a receipt, a file) that does not exist here."""


# catalog and weights


class CatalogError(SmallfirstError):
    """A model cannot be found or described."""


class UnknownModelError(CatalogError):
    """No model of that name is known, or it is not installed here."""

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"unknown model {name!r}", param="model")
        self.name = name


class PullError(SmallfirstError):
    """Weights could not be fetched, assembled or verified."""


class PeerBuildError(SmallfirstError):
    """llama.cpp's own binaries (``llama-server``) could not be built: a missing tool
    (cmake, a C++ compiler) or a failed step, with the log's tail."""


# engines


class EngineError(SmallfirstError):
    """An engine could not serve a request."""


class ContextLengthError(EngineError):
    """The prompt (plus max_tokens) does not fit the model's context."""

    def __init__(self, prompt_tokens: int, limit: int, max_tokens: int | None) -> None:
        asked = f" plus max_tokens {max_tokens}" if max_tokens else ""
        super().__init__(
            f"This model's maximum context length is {limit} tokens. However, your request has "
            f"{prompt_tokens} prompt tokens{asked}. Please shorten the prompt or max_tokens.",
            param="messages",
        )
        self.prompt_tokens = prompt_tokens
        self.limit = limit
        self.max_tokens = max_tokens


class EmbeddingInputTooLongError(ContextLengthError):
    """One input of an embeddings request has more tokens than the model embeds at once."""

    def __init__(self, index: int, tokens: int, limit: int) -> None:
        # the message names the input, not a prompt and max_tokens: ContextLengthError's
        # own wording is for completions
        EngineError.__init__(
            self,
            f"This model's maximum context length is {limit} tokens. However, input[{index}] "
            f"has {tokens} tokens. Please shorten it.",
            param="input",
        )
        self.prompt_tokens = tokens
        self.limit = limit
        self.max_tokens = None


class GenerationError(EngineError):
    """The engine failed while loading a model or generating: not the request's fault."""


class UpstreamError(EngineError):
    """A remote server answered with something unusable (an error, bad JSON)."""


class UpstreamRefusedError(UpstreamError):
    """A remote server refused the request itself (its 4xx): passed on with that status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class UpstreamRateLimitedError(UpstreamRefusedError):
    """A remote server answered 429 (too many requests) and retrying did not get through.

    Not the request's fault: another model may answer it. ``retry_after_s`` is what the
    upstream asked for, when it said.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, 429)
        self.retry_after_s = retry_after_s


class UpstreamUnavailableError(UpstreamError):
    """A remote server could not be reached."""


class UpstreamCoolingError(UpstreamUnavailableError):
    """A model failed repeatedly and is skipped until its cooldown ends; nothing was sent."""


class UpstreamTimeoutError(UpstreamError):
    """A remote server did not answer in time."""


class OverloadedError(EngineError):
    """A model's queue is full, or a request waited in it too long: nothing ran for it."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ShuttingDownError(EngineError):
    """The gateway is draining: no new generation starts, and those left at the deadline end."""


# routing


class RoutingError(SmallfirstError):
    """A router cannot be built or cannot decide: a bad spec, no candidates, no artifact."""


class PolicyError(RoutingError):
    """A routing policy (``auto:quality=Q`` …) is malformed or out of range."""


class ArtifactError(RoutingError):
    """A router file cannot be read or does not describe a router."""


# storage, evaluation, data


class StoreError(SmallfirstError):
    """The database cannot be used as asked (a newer schema, a broken file)."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached (PostgreSQL down or refusing us); the message names
    its URL with the password masked."""


class InvalidCursorError(StoreError):
    """A paging cursor that this store did not make."""


class EvaluationError(SmallfirstError):
    """An evaluation cannot be planned or run as asked."""


class BenchmarkError(EvaluationError):
    """An unknown benchmark, or a user benchmark file that cannot be read."""


class DataError(SmallfirstError):
    """Benchmark data is missing or does not match its pinned checksum."""


class DataUnavailableError(DataError):
    """The data is not on this machine and cannot be fetched now."""


# access: API keys, budgets, rate limits (issue #15)


class AccessError(SmallfirstError):
    """A caller may not do what it asked: no or a bad key, a scope, a budget, a rate limit."""


class InvalidKeyError(AccessError):
    """No API key where one is needed, or one that is unknown, expired or revoked."""


class ScopeError(AccessError):
    """A valid key asked for something only an admin key may see or do."""


class ModelNotAllowedError(AccessError):
    """A key used on a model outside its ``models`` patterns."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="model")


class QuotaExceededError(AccessError):
    """A request's worst case does not fit what is left of one of its key's budgets."""


class RateLimitedError(AccessError):
    """A key went over its requests or tokens per minute."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# carbon-aware scheduling (issue #19)


class SignalError(SmallfirstError):
    """A carbon or price forecast API failed, timed out, or answered something that is not a
    forecast. The planner then runs the batch at once and its reason says why."""
