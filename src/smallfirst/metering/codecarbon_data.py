"""Where CodeCarbon's shipped reference data lies on disk, found without importing CodeCarbon.

smallfirst uses two of CodeCarbon's data files (the CPU TDP table and the per-country grid
carbon intensities) as reference figures. ``import codecarbon`` pulls in pandas and takes
seconds, so the package is located with :func:`importlib.util.find_spec`, which for a top-level
package reads the import path without executing the package.

This module does not parse the files (see :mod:`smallfirst.metering.power` and
:mod:`smallfirst.metering.carbon`) and does not support a CodeCarbon installed inside a zip
archive (pip never installs it that way).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path


def codecarbon_data_file(relative: str) -> Path:
    """The path of ``codecarbon/data/<relative>``; FileNotFoundError when it is not installed."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the codecarbon package is not installed (it is a dependency of smallfirst: "
            "pip install 'codecarbon>=3,<4')"
        )
    for base in spec.submodule_search_locations:
        path = Path(base) / "data" / relative
        if path.is_file():
            return path
    raise FileNotFoundError(f"codecarbon is installed but has no data/{relative}")


def codecarbon_version() -> str:
    """The installed CodeCarbon version, for citing which table a figure came from."""
    try:
        return importlib.metadata.version("codecarbon")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
