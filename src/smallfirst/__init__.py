"""smallfirst: an OpenAI-compatible gateway that answers with the smallest model that will do.

The public surface: build the app with :func:`create_app` from :class:`Settings` (or
:func:`load_settings`, which reads a config file and the environment), look models up in the
:class:`Catalog`, and catch :class:`SmallfirstError` and its domain errors. Everything else is
internal and may move.

Names are imported on first use, so ``import smallfirst`` loads no web framework, inference
library or numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from smallfirst._version import __version__

if TYPE_CHECKING:
    from smallfirst.catalog import Catalog
    from smallfirst.errors import (
        ArtifactError,
        BenchmarkError,
        CatalogError,
        ConfigError,
        ContextLengthError,
        DataError,
        EngineError,
        EvaluationError,
        InvalidRequestError,
        PolicyError,
        PullError,
        RoutingError,
        SmallfirstError,
        StoreError,
        UnknownModelError,
        UpstreamError,
    )
    from smallfirst.server.app import create_app
    from smallfirst.settings import Settings, load_settings

__all__ = [
    "ArtifactError",
    "BenchmarkError",
    "Catalog",
    "CatalogError",
    "ConfigError",
    "ContextLengthError",
    "DataError",
    "EngineError",
    "EvaluationError",
    "InvalidRequestError",
    "PolicyError",
    "PullError",
    "RoutingError",
    "Settings",
    "SmallfirstError",
    "StoreError",
    "UnknownModelError",
    "UpstreamError",
    "__version__",
    "create_app",
    "load_settings",
]

_HOMES = {
    "create_app": "smallfirst.server.app",
    "Settings": "smallfirst.settings",
    "load_settings": "smallfirst.settings",
    "Catalog": "smallfirst.catalog",
}


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        module = importlib.import_module(_HOMES.get(name, "smallfirst.errors"))
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'smallfirst' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
