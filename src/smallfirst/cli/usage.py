"""``smallfirst usage``: totals, per-model table and savings from stored receipts."""

from __future__ import annotations

import argparse
import json
from typing import Any

from smallfirst.cli.common import settings_from, table_width


def _fmt(value: float | None, unit: str, digits: int = 3) -> str:
    return "-" if value is None else f"{value:,.{digits}f} {unit}".strip()


def _fetch_summary(args: argparse.Namespace, settings: Any, since: float | None) -> Any:
    """The summary from a running gateway (``--url``) or from the local database."""
    if args.url:
        import httpx

        params = {"since": str(since)} if since is not None else {}
        if args.by_key:
            params["by"] = "key"
        headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        try:
            response = httpx.get(
                args.url.rstrip("/") + "/smallfirst/v1/summary", params=params, headers=headers
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise SystemExit(f"smallfirst: could not read {args.url}: {exc}") from None
        return response.json()
    from smallfirst.store.sqlite import SqliteStore

    if settings.database_url is None and not settings.db_path.exists():
        raise SystemExit(f"smallfirst: no receipts yet ({settings.db_path} does not exist)")
    store = SqliteStore(settings.database)
    try:
        return store.summary(since=since, by_key=args.by_key)
    finally:
        store.close()


def cmd_usage(args: argparse.Namespace) -> int:
    from smallfirst.server.receipts_api import parse_time

    settings = settings_from(args)
    try:
        since = parse_time(args.since, "since")
    except Exception as exc:
        raise SystemExit(f"smallfirst: {getattr(exc, 'message', exc)}") from None
    summary = _fetch_summary(args, settings, since)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    total = summary["total"]
    title = f"usage since {args.since}" if args.since else "usage (all time)"
    table = Table(title=title)
    for col in (
        "model",
        "tier",
        "requests",
        "tokens in/out",
        "energy",
        "cost",
        "CO2",
        "saved energy",
        "saved cost",
    ):
        table.add_column(col, justify="right" if col not in ("model", "tier") else "left")
    for row in [*summary["models"], {**total, "model": "total", "tier": ""}]:
        pct = row.get("saved_energy_pct")
        table.add_row(
            row["model"],
            row["tier"],
            str(row["requests"]),
            f"{row['prompt_tokens']:,} / {row['completion_tokens']:,}",
            _fmt(row["energy_j"] / 3600, "Wh", 4),
            f"${row['cost_usd']:.6f}",
            _fmt(row["co2_g"], "g", 4),
            f"{row['saved_energy_j'] / 3600:.4f} Wh"
            + (f" ({pct:.0f}%)" if pct is not None else ""),
            f"${row['saved_cost_usd']:.6f}",
        )
    Console(width=table_width()).print(table)
    if summary.get("keys") is not None:
        Console(width=table_width()).print(_key_table(summary["keys"]))
    measured = total["energy_measured_j"]
    estimated = total["energy_estimated_j"]
    print(
        f"energy: {measured / 3600:.4f} Wh measured, {estimated / 3600:.4f} Wh estimated, "
        f"{total['energy_profile_j'] / 3600:.4f} Wh from per-token profiles, "
        f"{total['energy_unknown']} requests unknown; savings are against the reference model"
    )
    overhead = summary.get("overhead", {}).get("total")  # absent from an older gateway
    if overhead and overhead["count"]:
        print(
            f"overhead, billed to no request: {overhead['count']} model loads, "
            f"{overhead['energy_j'] / 3600:.4f} Wh"
        )
    return 0


def _key_table(keys: list[dict[str, Any]]) -> Any:
    """One row per API key (``--by-key``); requests made without a key are '(none)'."""
    from rich.table import Table

    table = Table(title="per API key")
    for col in ("key", "id", "requests", "tokens in/out", "energy", "cost", "CO2"):
        table.add_column(col, justify="left" if col in ("key", "id") else "right")
    for row in keys:
        table.add_row(
            row["key_name"] or "(none)",
            row["key_id"] or "-",
            str(row["requests"]),
            f"{row['prompt_tokens']:,} / {row['completion_tokens']:,}",
            _fmt(row["energy_j"] / 3600, "Wh", 4),
            f"${row['cost_usd']:.6f}",
            _fmt(row["co2_g"], "g", 4),
        )
    return table
