"""Schemathesis hooks for ``bench/fuzz_openapi.py``: point generated requests at real models.

Loaded by the ``schemathesis`` CLI (``SCHEMATHESIS_HOOKS=harness.fuzz_hooks``), never
imported by a script. A generated ``model`` is almost never a name the gateway serves, so
every non-empty ``model`` is replaced by one of ``FUZZ_MODELS`` (comma-separated, picked by
a hash of the body so that a run is reproducible), and integer token limits are capped at
``FUZZ_MAX_TOKENS`` (``max_tokens`` is set to it when neither limit is given) so that a case
costs milliseconds on a CPU. ``n`` > 1 (each choice a generation) is capped at 2, and set to
1 for the ``stub`` upstream: remote models refuse ``n`` > 1 with a 400 by design, and left
as drawn nearly every case on the stub would be that one 400.
Everything else the fuzzer made is left as it is, invalid data included.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

import schemathesis

__all__ = ["map_body"]

_LIMITS = ("max_tokens", "max_completion_tokens")


def map_body(ctx: Any, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    model = body.get("model")
    if isinstance(model, str) and model:
        models = os.environ.get("FUZZ_MODELS", "stub").split(",")
        key = json.dumps(body, sort_keys=True, default=str).encode("utf-8", "replace")
        body["model"] = models[zlib.crc32(key) % len(models)]
    cap = int(os.environ.get("FUZZ_MAX_TOKENS", "8"))
    for name in _LIMITS:
        value = body.get(name)
        if type(value) is int and value > cap:
            body[name] = cap
    n = body.get("n")
    if type(n) is int and n > 1:
        body["n"] = 1 if body.get("model") == "stub" else 2
    if all(body.get(name) is None for name in _LIMITS):  # absent or null: no limit at all
        body["max_tokens"] = cap
    return body


schemathesis.hook(map_body)  # a call, not a decorator: mypy runs where it is not installed
