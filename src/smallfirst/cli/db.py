"""``smallfirst db``: the store's schema, where it stands and bringing it up to date.

    smallfirst db status  [--database-url URL] [--json]   the schema's version, what is pending
    smallfirst db migrate [--database-url URL] [--json]   run the pending ones
    smallfirst db copy --from sqlite:PATH --to postgresql://...   move an installation

The database is ``database_url`` (settings, ``SMALLFIRST_DATABASE_URL`` or the flag), by
default the SQLite file in the data directory. ``status`` reads without changing anything;
``migrate`` is what every gateway does when it starts, run ahead of a rollout (several
replicas starting together also migrate once: PostgreSQL's migrations hold a lock). URLs
are printed with their password masked. Thin: :mod:`smallfirst.store.database` does the work.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from smallfirst.cli.common import settings_from

__all__ = ["add_parser"]


def _status(args: argparse.Namespace) -> Any:
    from smallfirst.errors import SmallfirstError
    from smallfirst.store.database import schema_status

    settings = settings_from(args, database_url=args.database_url)
    try:
        return settings.database, schema_status(settings.database)
    except SmallfirstError as exc:
        raise SystemExit(f"smallfirst: {exc.message}") from None


def _print(status: Any, as_json: bool, **extra: Any) -> None:
    if as_json:
        print(json.dumps({**dataclasses.asdict(status), "pending": status.pending, **extra}))
        return
    state = "up to date" if not status.pending else f"{status.pending} migration(s) pending"
    print(f"{status.url} ({status.dialect}): schema {status.version} of {status.latest}, {state}")


def cmd_db_status(args: argparse.Namespace) -> int:
    _, status = _status(args)
    _print(status, args.json)
    if status.pending and not args.json:
        print("  run `smallfirst db migrate` (or start the gateway) to apply them")
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from smallfirst.errors import SmallfirstError
    from smallfirst.store.database import open_backend, schema_status

    database, before = _status(args)
    try:
        open_backend(database).close()  # opening a backend migrates it
        after = schema_status(database)
    except SmallfirstError as exc:
        raise SystemExit(f"smallfirst: {exc.message}") from None
    if not args.json:
        ran = after.version - before.version
        print(f"applied {ran} migration(s)" if ran else "nothing to apply")
    _print(after, args.json, applied=after.version - before.version)
    return 0


def cmd_db_copy(args: argparse.Namespace) -> int:
    from smallfirst.errors import SmallfirstError
    from smallfirst.store.backend import mask_url
    from smallfirst.store.copy import copy_database
    from smallfirst.store.database import open_backend

    if args.source == args.target:
        raise SystemExit("smallfirst: --from and --to name the same database")
    try:
        source = open_backend(args.source)
        try:
            target = open_backend(args.target)
            try:
                counts = copy_database(source, target)
            finally:
                target.close()
        finally:
            source.close()
    except SmallfirstError as exc:
        raise SystemExit(f"smallfirst: {exc.message}") from None
    if args.json:
        print(json.dumps(counts))
        return 0
    print(f"copied {mask_url(args.source)} -> {mask_url(args.target)}")
    for table, c in counts.items():
        print(f"  {table:<13} {c['read']:>8} read  {c['added']:>8} added")
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    db = sub.add_parser("db", help="the store's database: schema status and migrations")
    dsub = db.add_subparsers(dest="db_command", required=True)
    opts = argparse.ArgumentParser(add_help=False)
    opts.add_argument("--database-url", help="sqlite:PATH or postgresql://... (default: settings)")
    opts.add_argument("--json", action="store_true", help="machine-readable output")
    st = dsub.add_parser(
        "status", parents=[common, opts], help="schema version, pending migrations"
    )
    st.set_defaults(func=cmd_db_status)
    mi = dsub.add_parser("migrate", parents=[common, opts], help="apply pending migrations")
    mi.set_defaults(func=cmd_db_migrate)
    cp = dsub.add_parser(
        "copy",
        help="copy receipts, keys and evaluation results to another database (idempotent)",
        description="Move an installation, e.g. --from sqlite:~/.local/share/smallfirst/"
        "smallfirst.db --to postgresql://...; run with the old gateway stopped. Rows the "
        "target has are kept; open budget reservations are not copied.",
    )
    cp.add_argument("--from", dest="source", required=True, help="sqlite:PATH or postgresql://")
    cp.add_argument("--to", dest="target", required=True, help="sqlite:PATH or postgresql://")
    cp.add_argument("--json", action="store_true", help="machine-readable output")
    cp.set_defaults(func=cmd_db_copy)
