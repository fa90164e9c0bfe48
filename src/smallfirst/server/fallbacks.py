"""Serving a named or routed model with its fallbacks: the next model answers when one fails.

A request is tried on its chosen model, then on each of the choice's ``fallbacks`` in
order, for as long as the failure is not the request's fault and nothing has reached the
client: an engine or upstream error, a timeout, a 5xx, a 429 that outlasted the engine's
retries, a local model that cannot load, or a model cooling down after repeated failures
(skipped without being tried). For a streaming client "nothing reached it" means the first
chunk had not come; for a body it means the whole answer had not. Once the first chunk of a
stream is out there is no switch: the stream ends with an error event, as without
fallbacks. A request error (a 4xx: bad input, a context too long) is raised at once.

Every outcome feeds the chooser's :class:`~smallfirst.engines.health.Health`, which is what
cools a failing model down; a stream that breaks after it began counts as a failure too.
When a request needed more than one try, its receipt's route lists every attempt
(``route.attempts``: model, error or null, seconds) and the response's ``model`` is the
model that answered; when every try failed, the last failure is raised and an ``error``
receipt with the attempts is stored.

It does not retry one model (the remote engine does, :mod:`smallfirst.engines.retrying`),
choose the order (:mod:`.choosing`) or frame responses (:mod:`.serving`).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from smallfirst.engines.base import Engine, GenerationRequest
from smallfirst.engines.health import Health
from smallfirst.engines.pool import EnginePool
from smallfirst.errors import (
    GenerationError,
    OverloadedError,
    ShuttingDownError,
    SmallfirstError,
    UnknownModelError,
    UpstreamCoolingError,
    UpstreamRateLimitedError,
)
from smallfirst.metering.service import Metering
from smallfirst.server.choosing import Choice
from smallfirst.server.errors import describe
from smallfirst.server.responses import Envelope, Kind
from smallfirst.server.serving import Keep, Ledger, Record, endpoint_of, serve

__all__ = ["Tried", "falls_back", "serve_with_fallbacks"]

log = logging.getLogger(__name__)

CANCELLED = 499  # what serve answers when the client went away


@dataclass(frozen=True, slots=True)
class Tried:
    """One attempt of a request: which model, how long, and why it failed (None: answered)."""

    model: str
    duration_s: float | None = None  # None for the one that answered: the receipt's own
    error: Exception | None = None

    def public(self) -> dict[str, Any]:
        error: dict[str, Any] | None = None
        if self.error is not None:
            wire = describe(self.error)
            error = (
                {"status": wire.status, "code": wire.code, "message": wire.message}
                if wire is not None
                else {"status": 500, "code": None, "message": str(self.error)}
            )
        duration = None if self.duration_s is None else round(self.duration_s, 4)
        return {"model": self.model, "duration_s": duration, "error": error}


def falls_back(exc: BaseException) -> bool:
    """Whether another model may answer after ``exc``: a failure not of the request's making.

    A full queue is worth another model's try; a gateway that is shutting down is not.
    """
    if isinstance(exc, UpstreamRateLimitedError | OverloadedError):
        return True
    if not isinstance(exc, Exception) or isinstance(exc, ShuttingDownError):
        return False
    wire = describe(exc)
    return wire is None or wire.status >= 500


def _cooling(model: str, health: Health) -> UpstreamCoolingError:
    until = health.cooling_until(model)
    when = (
        datetime.datetime.fromtimestamp(until, datetime.UTC).isoformat(timespec="seconds")
        if until is not None
        else "its probe ends"
    )
    return UpstreamCoolingError(f"{model}: failing lately; skipped until {when}")


async def _engine(pool: EnginePool, model: str) -> Engine:
    """The model's engine; a file that will not load is the engine's failure, not a crash."""
    try:
        return await pool.get(model)
    except SmallfirstError:
        raise
    except Exception as exc:
        log.warning("%s could not be loaded: %s", model, exc)
        raise GenerationError(f"{model} could not be loaded: {exc}") from exc


def _failed_later(health: Health, model: str) -> Callable[[], None]:
    return lambda: health.failed(model)


def _with_attempts(choice: Choice, model: str, tried: list[Tried]) -> Choice:
    route = dict(choice.route or {})
    route["attempts"] = [t.public() for t in tried]
    return dataclasses.replace(choice, model=model, route=route)


async def serve_with_fallbacks(
    http: Request,
    pool: EnginePool,
    health: Health,
    kind: Kind,
    gen: GenerationRequest,
    include_usage: bool,
    metering: Metering | None,
    record: Record,
    choice: Choice,
    *,
    keep: Keep | None = None,
    endpoint: str | None = None,
) -> Response:
    """Answer with the first of the choice's model and fallbacks that can (see the module);
    ``keep`` (the response cache's) gets the answer when it completes; ``endpoint`` names
    the receipt's endpoint when it is not the kind's own."""
    models = [choice.model, *choice.fallbacks]
    alone = len(models) == 1  # without fallbacks a failure settles as it always has
    # one id, one receipt and one clock for the request, whichever model answers
    env = Envelope(kind, choice.model, endpoint)
    ledger = Ledger(metering, record, env.id, endpoint_of(env), gen.stream, choice, keep=keep)
    tried: list[Tried] = []
    failure: Exception | None = None
    for index, model in enumerate(models):
        if index > 0 and model not in pool.available():
            log.warning("fallback %s of %s is not installed here", model, choice.model)
            tried.append(Tried(model, 0.0, UnknownModelError(model)))
            continue
        if not health.admit(model):
            failure = _cooling(model, health)
            tried.append(Tried(model, 0.0, failure))
            continue
        started = time.perf_counter()
        try:
            engine = await _engine(pool, model)
            env.model = engine.spec.name
            ledger.choice = (
                _with_attempts(choice, model, [*tried, Tried(model)]) if tried else choice
            )
            response = await serve(
                http, engine, env, gen, include_usage, metering, record, ledger.choice,
                ledger=ledger, settle_failure=alone,
            )  # fmt: skip
        except Exception as exc:
            if not falls_back(exc):
                health.abandoned(model)
                raise
            if isinstance(exc, OverloadedError):
                health.abandoned(model)  # busy, not broken: the breaker does not count it
            else:
                health.failed(model)
            failure = exc
            tried.append(Tried(model, time.perf_counter() - started, exc))
            log.warning("%s failed before answering: %s", model, exc)
            continue
        except BaseException:
            health.abandoned(model)
            raise
        if response.status_code == CANCELLED:
            health.abandoned(model)
        else:
            health.succeeded(model)
            ledger.on_error = _failed_later(health, model)  # a stream that breaks counts too
        return response
    if not alone:
        await _settle_failed(pool, ledger, choice, tried)
    raise failure if failure is not None else UnknownModelError(choice.model)


async def _settle_failed(
    pool: EnginePool, ledger: Ledger, choice: Choice, tried: list[Tried]
) -> None:
    """Store the error receipt of a request no model could answer, with its attempts."""
    known = [t.model for t in tried if t.model in pool.catalog]
    if known:
        route = _with_attempts(choice, known[-1], tried).route
        await ledger.settle("error", pool.catalog.get(known[-1]), None, route=route)
