"""Helpers the CLI commands share: settings from flags, sizes, console width."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from smallfirst.errors import ConfigError
from smallfirst.settings import Settings, load_settings


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    try:
        return load_settings(args.config, data_dir=getattr(args, "data_dir", None), **extra)
    except ConfigError as exc:
        raise SystemExit(f"smallfirst: {exc}") from None


def size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:,.0f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def table_width() -> int | None:
    """Let rich use the terminal's width, or a wide fixed one when output is piped."""
    return None if sys.stdout.isatty() else 160
