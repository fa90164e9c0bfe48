"""``/v1/models`` and ``/health``: what this gateway can answer with, and whether it is up.

``/v1/models`` lists the routing policies first (``auto``, ``auto:quality=0.95``,
``cascade`` …, each saying whether a fitted router stands behind it or which model it
falls back to), then every installed local model and every configured remote one, with
the catalog's facts in a ``smallfirst`` field. ``/health`` also shows every model that
failed lately and its cooldown state. Nothing here loads a model.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from smallfirst._version import __version__
from smallfirst.catalog import Catalog
from smallfirst.engines.pool import EnginePool
from smallfirst.server import openapi, schemas
from smallfirst.server.choosing import Chooser
from smallfirst.settings import Settings

__all__ = ["router"]


def _entry(name: str, created: int, facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "smallfirst",
        "smallfirst": facts,
    }


def models_listing(
    settings: Settings, catalog: Catalog, pool: EnginePool, chooser: Chooser
) -> dict[str, Any]:
    """The OpenAI model list: policies first, then the models that can answer here."""
    created = int(time.time())
    routed = chooser.artifact is not None
    data = [
        _entry(
            policy,
            created,
            {
                "policy": policy,
                "router": "predictive" if routed else None,
                "resolves_to": None if routed else settings.default_model,
            },
        )
        for policy in chooser.policies()
    ]
    for name in pool.available():
        spec = catalog.get(name)
        data.append(
            _entry(
                name,
                created,
                {
                    "tier": spec.tier,
                    "parameters": spec.parameters,
                    "quantization": spec.quantization,
                    "context_length": spec.context_length,
                    "chat": spec.chat,
                    "embeds": spec.embeds,  # serves /v1/embeddings
                    "tools": spec.tools,  # calls functions
                    "engine": "remote" if spec.is_remote else "llama.cpp",
                },
            )
        )
    return {"object": "list", "data": data}


def router(settings: Settings, catalog: Catalog, pool: EnginePool, chooser: Chooser) -> APIRouter:
    api = APIRouter()

    @api.get(
        "/v1/models",
        response_model=None,
        responses={
            **openapi.json_ok(schemas.ModelList, "Routing policies first, then every model."),
            **openapi.errors(401, 500),
        },
    )
    async def list_models() -> dict[str, Any]:
        return models_listing(settings, catalog, pool, chooser)

    @api.get(
        "/health",
        response_model=None,
        responses={
            **openapi.json_ok(schemas.Health, "The gateway is up; what it has and has loaded."),
            **openapi.errors(500),
        },
    )
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "models_available": pool.available(),
            "models_loaded": pool.loaded_models(),
            # models that failed lately: ok, cooling_down (until an epoch time) or probing
            "upstreams": {u.model: u.public() for u in chooser.health.states()},
        }

    return api
