"""What a chat or completion request needs of the model that answers it, and which cannot.

A request may need a chat model (not a base model), one that calls functions (``tools``
with a ``tool_choice`` other than ``none``), and a context that holds its prompt plus
``max_tokens``. ``auto`` and ``cascade`` pick only among models that have what the request
needs: :func:`excluder` tells the chooser why each other model is left out, and the route
shows it. A model the client named, or the only one left, that lacks it is refused with a
400 naming the model and the installed models that have it (:func:`check`); a choice's
fallbacks keep only the models that can serve the request.

The prompt's length is estimated from its characters (:data:`CHARS_PER_TOKEN`), since no
tokenizer is at hand before a model is chosen; a named model's exact overflow is the
engine's to find (a ``context_length_exceeded`` 400). Embeddings have their own endpoint and
model choice (:mod:`.embeddings`); ``json_schema`` is served by every model (a grammar in
process, passed on to remote ones), so neither is judged here.

This module judges; it does not choose among the models that are left (:mod:`.choosing`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from smallfirst.catalog import Catalog, ModelSpec
from smallfirst.engines.base import GenerationRequest
from smallfirst.errors import CatalogError, UnsupportedError
from smallfirst.server.choosing import Choice, Exclude

__all__ = ["CHARS_PER_TOKEN", "both", "check", "estimated_tokens", "excluder", "missing"]

# English text and code run 3.5 to 4.5 characters per token in these models' tokenizers:
# the low end, so that a prompt is not thought shorter than it is
CHARS_PER_TOKEN = 3.5
# the chat template's own tokens per message (role headers and separators)
TEMPLATE_TOKENS_PER_MESSAGE = 5


def estimated_tokens(gen: GenerationRequest) -> int:
    """About how many tokens the prompt and the longest answer take."""
    prompt = int(len(gen.prompt_text()) / CHARS_PER_TOKEN)
    if gen.messages is not None:
        prompt += TEMPLATE_TOKENS_PER_MESSAGE * len(gen.messages)
    return prompt + (gen.sampling.max_tokens or 0) * gen.n


def missing(spec: ModelSpec, gen: GenerationRequest, *, named: bool = False) -> str | None:
    """What ``spec`` lacks to serve ``gen`` (None: nothing). For a model the client
    ``named``, only tools: its engine refuses the rest itself, exactly."""
    if gen.tools is not None and gen.tools.choice != "none" and not spec.tools:
        return "does not call tools"
    if named:
        return None
    if gen.messages is not None and not spec.chat:
        return "a base model (completions only)"
    if (needed := estimated_tokens(gen)) > spec.context_length:
        return f"context: about {needed} tokens needed, it holds {spec.context_length}"
    return None


def excluder(catalog: Catalog, gen: GenerationRequest) -> Exclude:
    """Why ``auto`` may not pick a model for ``gen``."""

    def exclude(model: str) -> str | None:
        try:
            return missing(catalog.get(model), gen)
        except CatalogError:
            return None  # unknown here: the pool's own lookup answers for it

    return exclude


def both(first: Exclude | None, second: Exclude) -> Exclude:
    """The first reason either gives."""
    if first is None:
        return second
    return lambda model: first(model) or second(model)


def check(
    choice: Choice, catalog: Catalog, gen: GenerationRequest, installed: Sequence[str]
) -> Choice:
    """``choice`` with only the fallbacks that can serve ``gen``; a 400 when its own model
    cannot."""
    named = choice.policy is None
    try:
        spec = catalog.get(choice.model)
    except CatalogError:
        return choice  # the pool refuses an unknown model with its own 404
    why = missing(spec, gen, named=named)
    if why is not None:
        able = [m for m in installed if missing(catalog.get(m), gen, named=named) is None]
        hint = f"; installed models that can: {', '.join(able)}" if able else ""
        asked = "" if named else f" (chosen for {choice.policy!r}: no installed model can serve it)"
        raise UnsupportedError(
            f"The model {choice.model!r} cannot serve this request{asked}: {why}{hint}",
            param="tools" if why == "does not call tools" else "model",
        )
    kept = tuple(m for m in choice.fallbacks if _known_and_able(catalog, m, gen, named=named))
    return choice if kept == choice.fallbacks else dataclasses.replace(choice, fallbacks=kept)


def _known_and_able(catalog: Catalog, model: str, gen: GenerationRequest, *, named: bool) -> bool:
    try:
        return missing(catalog.get(model), gen, named=named) is None
    except CatalogError:
        return True
