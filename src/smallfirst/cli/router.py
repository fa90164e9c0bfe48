"""``smallfirst router``: fit the router on stored evaluation results, and evaluate it.

    smallfirst router fit  [--run RUN]... [--results FILE]... [--models A,B,C] [--seed 0]
                           [--heldout 0.25] [--save-as FILE.json.gz]
    smallfirst router eval [--router FILE] [--results FILE]... [--out DIR]
                           [--format table|json]

``fit`` builds the routing table from the results (prompts re-created from the benchmarks),
holds out a seeded, prompt-grouped share of each benchmark, fits and calibrates the
predictive router and the cascades on the rest, scores them on the held-out items, and
writes ``<data_dir>/routers/router-<timestamp>.json`` and ``router-latest.json`` (or, with
``--save-as``, one gzipped file anywhere: how the packaged default router is made from the
committed baseline export, read with ``--results`` instead of the database).
``eval`` re-scores a router file on its held-out items and writes report.md, report.json
and a plot of quality against energy and cost.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smallfirst.cli.common import settings_from, table_width
from smallfirst.errors import EvaluationError, RoutingError, StoreError

if TYPE_CHECKING:
    from smallfirst.routing.training.evaluation import Evaluation
    from smallfirst.routing.training.table import Table
    from smallfirst.settings import Settings


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``router fit`` and ``router eval`` to the top-level subparsers."""
    router = sub.add_parser("router", help="fit and evaluate the model router")
    rsub = router.add_subparsers(dest="router_command", required=True)
    fit = rsub.add_parser(
        "fit",
        parents=[common],
        help="train and calibrate the router on stored evaluation results",
        description="Fit P(correct | prompt) per model on the training split of stored "
        "evaluation results, calibrate the thresholds of the predictive router and the "
        "cascades for a grid of policies, score them on the held-out split, and save the "
        "router to <data_dir>/routers/.",
    )
    fit.add_argument(
        "--run", action="append", help="evaluation run to train on (repeatable; default all)"
    )
    fit.add_argument(
        "--results",
        action="append",
        type=Path,
        help="exported results (.jsonl.gz from `eval export`) to train on instead of the "
        "database (repeatable)",
    )
    fit.add_argument("--models", help="comma-separated candidates (default: every model)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the split and the folds")
    fit.add_argument("--heldout", type=float, default=0.25, help="share of prompts held out")
    fit.add_argument("--folds", type=int, default=5, help="folds for out-of-fold calibration")
    fit.add_argument(
        "--l2",
        type=float,
        help="L2 penalty of the logistic regressions (default: chosen out-of-fold on the "
        "training split, by log-loss)",
    )
    fit.add_argument(
        "--spend-l2",
        type=float,
        help="L2 penalty of the per-prompt energy regressions (default: chosen out-of-fold, "
        "by squared error of log joules)",
    )
    fit.add_argument("--iterations", type=int, default=300, help="gradient steps per fit")
    fit.add_argument(
        "--save-as",
        type=Path,
        help="write the router here (gzipped JSON) instead of <data_dir>/routers/",
    )
    fit.set_defaults(func=cmd_router_fit)
    ev = rsub.add_parser(
        "eval",
        parents=[common],
        help="score a fitted router on its held-out items",
        description="Sweep each strategy's threshold on the router's held-out items and "
        "report APGR, CPT(50%%), CPT(80%%) and AIQ on the energy and the cost axes beside "
        "random, every single model and the oracle, and what the calibrated policies give.",
    )
    ev.add_argument("--router", type=Path, help="router file (default: the latest fitted)")
    ev.add_argument(
        "--results",
        action="append",
        type=Path,
        help="exported results (.jsonl.gz) to score on instead of the database (repeatable)",
    )
    ev.add_argument("--out", type=Path, help="write report.md, report.json and routing.png here")
    ev.add_argument("--format", choices=("table", "json"), default="table")
    ev.set_defaults(func=cmd_router_eval)


def _table(
    settings: Settings,
    runs: list[str] | None,
    models: list[str] | None,
    files: list[Path] | None = None,
) -> Table:
    from smallfirst.routing.training.table import build_table, load_prompts
    from smallfirst.store.eval_results import EvalStore, read_export

    if files:
        try:
            results = [r for path in files for r in read_export(path)]
        except StoreError as exc:
            raise SystemExit(f"smallfirst: cannot read results: {exc}") from None
        if runs:
            results = [r for r in results if r.run_id in runs]
    else:
        store = EvalStore(settings.database)
        try:
            results = [r for run in runs for r in store.results(run)] if runs else store.results()
        finally:
            store.close()
    if not results:
        raise SystemExit(
            "smallfirst: no evaluation results"
            + (f" for run(s) {', '.join(runs)}" if runs else "")
            + "; `smallfirst eval run` makes some"
        )
    prompts = load_prompts({r.benchmark for r in results}, settings)
    try:
        return build_table(results, prompts.messages, models, prefixes=prompts.prefixes)
    except (RoutingError, EvaluationError) as exc:
        raise SystemExit(f"smallfirst: {exc}") from None


def _print_tables(evaluation: Evaluation) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    from smallfirst.routing.training import report as ev

    console = Console(width=table_width())
    for title, headers, rows in (
        (
            "single models (held-out)",
            ["model", "accuracy", "energy", "cost"],
            ev.model_rows(evaluation),
        ),
        ("routing metrics (held-out)", list(ev.METRIC_HEADERS), ev.metric_rows(evaluation)),
        (
            "calibrated policies (held-out)",
            list(ev.CALIBRATED_HEADERS),
            ev.calibrated_rows(evaluation),
        ),
        (
            "ceilings: oracles in hindsight (held-out; auto captures = share of the saving)",
            list(ev.CEILING_HEADERS),
            ev.ceiling_rows(evaluation),
        ),
        (
            "ROC AUC of predicted P(correct) (held-out; 0.5 = chance)",
            ev.discrimination_headers(evaluation),
            ev.discrimination_rows(evaluation),
        ),
    ):
        table = RichTable(title=title)
        for h in headers:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        console.print(table)


def cmd_router_fit(args: argparse.Namespace) -> int:
    from smallfirst.catalog import Catalog
    from smallfirst.routing import artifact
    from smallfirst.routing.training.train import train

    settings = settings_from(args)
    models = [m for m in (args.models or "").split(",") if m] or None
    table = _table(settings, args.run, models, args.results)
    print(
        f"routing table: {len(table)} items × {len(table.models)} models "
        f"({', '.join(table.models)}, cheapest first) from runs {', '.join(table.run_ids)}"
    )
    tiers = {spec.name: spec.tier for spec in Catalog(settings)}
    try:
        fitted, evaluation = train(
            table,
            tiers=tiers,
            seed=args.seed,
            heldout_fraction=args.heldout,
            folds=args.folds,
            l2=args.l2,
            spend_l2=args.spend_l2,
            iterations=args.iterations,
            progress=lambda step: print(f"  {step}", file=sys.stderr, flush=True),
        )
    except (RoutingError, EvaluationError) as exc:
        raise SystemExit(f"smallfirst: {exc}") from None
    _print_tables(evaluation)
    if args.save_as:
        artifact.write_default(fitted, args.save_as)
        print(f"router saved to {args.save_as}")
    else:
        path = artifact.save(fitted, settings.data_dir)
        latest = artifact.routers_dir(settings.data_dir) / artifact.LATEST
        print(f"router saved to {path} (and {latest})")
    return 0


def cmd_router_eval(args: argparse.Namespace) -> int:
    from smallfirst.routing import artifact
    from smallfirst.routing.training import evaluation, plot, report

    settings = settings_from(args)
    try:
        if args.router:
            fitted = artifact.load(args.router)
        else:
            latest = artifact.load_latest(settings.data_dir)
            if latest is None:
                raise SystemExit("smallfirst: no router fitted yet; run `smallfirst router fit`")
            fitted = latest
    except RoutingError as exc:
        raise SystemExit(f"smallfirst: {exc}") from None
    names = [c.name for c in fitted.candidates]
    table = _table(settings, list(fitted.training_run_ids), names, args.results)
    wanted = set(fitted.heldout_keys)
    rows = [i for i, key in enumerate(table.keys) if key in wanted]
    if not rows:
        raise SystemExit("smallfirst: none of the router's held-out items have results now")
    if len(rows) < len(wanted):
        print(
            f"note: {len(wanted) - len(rows)} held-out items have no results now", file=sys.stderr
        )
    result = evaluation.evaluate(fitted, table.take(rows))
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2, allow_nan=False))
    else:
        _print_tables(result)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        png = plot.plot(result, args.out / "routing.png")
        (args.out / "report.json").write_text(
            json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n"
        )
        (args.out / "report.md").write_text(report.markdown(result, fitted, png.name))
        print(f"report: {args.out / 'report.md'}", file=sys.stderr)
    return 0
