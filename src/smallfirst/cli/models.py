"""``smallfirst models``: list, pull, remove and profile models."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from smallfirst.cli.common import settings_from, size, table_width
from smallfirst.errors import PullError, SmallfirstError, UnknownModelError


def cmd_models_list(args: argparse.Namespace) -> int:
    from smallfirst.catalog import Catalog

    settings = settings_from(args)
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
            size(r["size_bytes"]),
            "yes" if r["chat"] else "completions only",
            "[green]yes[/]" if r["installed"] else "no",
            r["license"],
        )
    Console(width=table_width()).print(table)
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

    from smallfirst.catalog import LADDER, Catalog
    from smallfirst.pull import pull

    settings = settings_from(args)
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
    from smallfirst.catalog import Catalog
    from smallfirst.pull import remove

    catalog = Catalog(settings_from(args))
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

    settings = settings_from(args, n_threads=args.threads)
    try:
        metering = Metering(settings, Catalog(settings))
    except SmallfirstError as exc:
        raise SystemExit(f"smallfirst: {exc}") from None
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
                pid=args.pid,
            )
        except SmallfirstError as exc:
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
