"""``smallfirst eval``: run benchmarks, report, export, rescore."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from smallfirst.cli.common import settings_from, table_width
from smallfirst.errors import SmallfirstError, StoreError
from smallfirst.settings import Settings


def _eval_settings(args: argparse.Namespace) -> tuple[Settings, list[str]]:
    """Settings for an eval run, with ``--base-url`` added as a remote model."""
    from smallfirst.settings import UserModel

    settings = settings_from(args, n_threads=getattr(args, "threads", None))
    models = [m for m in (args.models or "").split(",") if m]
    if args.base_url:
        if not args.api_model:
            raise SystemExit("smallfirst eval run: --base-url needs --api-model")
        name = f"remote:{args.api_model}"
        remote = UserModel(
            name=name, base_url=args.base_url, model_id=args.api_model, api_key_env=args.api_key_env
        )
        settings = settings.model_copy(update={"models": (*settings.models, remote)})
        models.append(name)
    if not models:
        raise SystemExit("smallfirst eval run: give --models and/or --base-url/--api-model")
    return settings, models


def cmd_eval_run(args: argparse.Namespace) -> int:
    import asyncio

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from smallfirst.catalog import Catalog
    from smallfirst.evals import runner
    from smallfirst.evals.data import ensure_data
    from smallfirst.store.backend import mask_url
    from smallfirst.store.eval_results import EvalStore

    settings, models = _eval_settings(args)
    benchmarks = [b for b in args.benchmarks.split(",") if b]
    catalog = Catalog(settings)
    try:
        for model in models:
            spec = catalog.get(model)
            if not catalog.is_installed(spec):
                raise SystemExit(
                    f"smallfirst: {model} is not installed; run `smallfirst models pull {model}`"
                )
        ensure_data(settings, benchmarks)
        config = runner.RunConfig(
            run_id=args.run,
            models=tuple(models),
            benchmarks=tuple(benchmarks),
            limit=args.limit,
            seed=args.seed,
            concurrency=args.concurrency,
        )
        planned = runner.plan(settings, config)
    except SmallfirstError as exc:
        raise SystemExit(f"smallfirst: {exc}") from None
    store = EvalStore(settings.database)
    print(
        f"run {args.run!r}: {', '.join(models)} × "
        + ", ".join(f"{b} ({len(v)})" for b, v in planned.items())
        + f"; results in {mask_url(str(settings.database))}"
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[acc]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as bar:
        tasks: dict[tuple[str, str], Any] = {}
        correct: dict[tuple[str, str], list[int]] = {}

        def report(p: runner.Progress) -> None:
            key = (p.model, p.benchmark)
            if key not in tasks:
                tasks[key] = bar.add_task(
                    f"{p.model} {p.benchmark}", total=p.total, completed=p.done, acc=""
                )
                correct[key] = [0, 0]
            if p.last is not None:
                correct[key][0] += p.last.correct
                correct[key][1] += 1
            right, seen = correct[key]
            acc = (
                f"acc {100 * right / seen:.0f}% (this session)"
                if seen
                else (f"{p.skipped} already done" if p.skipped else "")
            )
            bar.update(tasks[key], completed=p.done, acc=acc)

        answered = asyncio.run(runner.run(settings, config, store, report, planned))
    store.close()
    print(f"answered {answered} items; `smallfirst eval report --run {args.run}` summarises")
    return 0


def cmd_eval_report(args: argparse.Namespace) -> int:
    from smallfirst.evals import report
    from smallfirst.store.eval_results import EvalStore
    from smallfirst.store.eval_summary import summarize

    settings = settings_from(args)
    store = EvalStore(settings.database)
    if args.import_file:
        try:
            count = store.import_file(args.import_file)
        except StoreError as exc:
            store.close()
            raise SystemExit(f"smallfirst: {exc}") from None
        print(f"imported {count} results from {args.import_file}")
    results = store.results(args.run)
    store.close()
    if not results:
        raise SystemExit(
            "smallfirst: no evaluation results"
            + (f" for run {args.run!r}" if args.run else "")
            + "; `smallfirst eval run` makes some"
        )
    rows = summarize(results)
    if args.format == "json":
        print(json.dumps(report.as_json(rows), indent=2))
    elif args.format == "md":
        print(report.markdown(rows))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"evaluation {args.run or '(all runs)'}")
        for h in report.HEADERS:
            table.add_column(h)
        for cells in report.table_cells(rows):
            table.add_row(*cells)
        Console(width=table_width()).print(table)
    if args.plot:
        print(f"plot: {report.plot_frontier(rows, args.plot)}", file=sys.stderr)
    return 0


def cmd_eval_export(args: argparse.Namespace) -> int:
    from smallfirst.store.eval_results import EvalStore

    store = EvalStore(settings_from(args).database)
    count = store.export(args.out, args.run)
    store.close()
    print(f"exported {count} results to {args.out}")
    return 0


def cmd_eval_rescore(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from smallfirst.evals import runner
    from smallfirst.store.eval_results import EvalStore

    settings = settings_from(args)
    benchmarks = [b for b in (args.benchmarks or "").split(",") if b] or None
    store = EvalStore(settings.database)
    try:
        with Progress("rescoring", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
            task = bar.add_task("rescore", total=None)
            done = runner.rescore(
                settings,
                store,
                args.run,
                benchmarks,
                lambda n, total: bar.update(task, completed=n, total=total),
            )
    except SmallfirstError as exc:
        raise SystemExit(f"smallfirst: {exc}") from None
    finally:
        store.close()
    if not done.checked:
        raise SystemExit(f"smallfirst: no results for run {args.run!r}")
    print(
        f"rescored {done.checked} results of run {args.run!r}: {done.changed} changed "
        f"({done.flipped} between right and wrong), {done.skipped} left as they were"
    )
    return 0
