"""``smallfirst keys``: create, list, show, revoke and rotate API keys in the local store.

    smallfirst keys create --name NAME [--budget-usd X] [--budget-wh Y] [--budget-co2-g Z]
        [--window 1h|1d|7d|30d|total] [--rpm N] [--tpm N] [--models PATTERN,...]
        [--expires DATE] [--admin]
    smallfirst keys list | show KEY | revoke KEY | rotate KEY      (KEY: id or name)

``create`` and ``rotate`` print the secret once; nothing can show it again. The same
operations are the admin HTTP API (``/smallfirst/v1/keys``). Thin: the store does the work.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from smallfirst.cli.common import settings_from

__all__ = ["add_parser"]


def _store(args: argparse.Namespace) -> Any:
    from smallfirst.store.keys import KeyStore

    settings = settings_from(args)
    return KeyStore(settings.database, settings.data_dir)


def _fail(exc: Exception) -> SystemExit:
    return SystemExit(f"smallfirst: {getattr(exc, 'message', exc)}")


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def _print_key(public: dict[str, Any]) -> None:
    status = "revoked" if public["revoked_at"] else "active"
    kind = "admin" if public["admin"] else "client"
    print(f"{public['name']}  id {public['id']}  {kind}  {status}")
    print(f"  models: {', '.join(public['models'] or ['*'])}")
    print(f"  rpm: {public['rpm'] or '-'}  tpm: {public['tpm'] or '-'}")
    if public["expires_at"]:
        from datetime import UTC, datetime

        print(f"  expires: {datetime.fromtimestamp(public['expires_at'], UTC).isoformat()}")
    budgets = public["budgets"]
    print(f"  window: {public['window']} (resets {budgets['resets_at'] or 'never'})")
    for unit in ("usd", "wh", "co2_g"):
        b = budgets[unit]
        print(
            f"  {b['unit']:>4}: budget {_num(b['budget'])}  spent {_num(b['spent'])}  "
            f"reserved {_num(b['reserved'])}  left {_num(b['left'])}"
        )


def cmd_keys_create(args: argparse.Namespace) -> int:
    from smallfirst.errors import SmallfirstError
    from smallfirst.server.keys_api import KeyCreate

    store = _store(args)
    try:
        body = KeyCreate(
            name=args.name,
            budget_usd=args.budget_usd,
            budget_wh=args.budget_wh,
            budget_co2_g=args.budget_co2_g,
            window=args.window,
            rpm=args.rpm,
            tpm=args.tpm,
            models=args.models.split(",") if args.models else None,
            expires=args.expires,
            admin=args.admin,
        )
        key, secret = store.create(body.spec())
    except (SmallfirstError, ValueError) as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    if args.json:
        print(json.dumps({**key.public(), "secret": secret}, indent=2))
        return 0
    _print_key(key.public())
    print(f"\nsecret (shown once, store it now):\n{secret}")
    return 0


def _one(args: argparse.Namespace, action: str) -> int:
    from smallfirst.errors import SmallfirstError

    store = _store(args)
    secret = None
    try:
        if action == "show":
            key = store.get(args.key)
        elif action == "revoke":
            key = store.revoke(args.key)
        else:
            key, secret = store.rotate(args.key)
    except SmallfirstError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    public = key.public()
    if args.json:
        print(json.dumps({**public, **({"secret": secret} if secret else {})}, indent=2))
        return 0
    _print_key(public)
    if secret:
        print(f"\nnew secret (shown once; the old one no longer works):\n{secret}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        keys = [k.public() for k in store.list()]
    finally:
        store.close()
    if args.json:
        print(json.dumps(keys, indent=2))
    elif not keys:
        print("no keys: the gateway is open on loopback (smallfirst keys create --name NAME)")
    for public in [] if args.json else keys:
        _print_key(public)
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    keys = sub.add_parser("keys", help="API keys: budgets, rate limits, models")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--json", action="store_true", help="machine-readable output")
    cr = ksub.add_parser(
        "create",
        parents=[common, out],
        help="make a key and print its secret once",
        description="Once any key exists, every /v1 request needs one (Authorization: Bearer).",
    )
    cr.add_argument("--name", required=True)
    cr.add_argument("--budget-usd", type=float, help="dollars per window")
    cr.add_argument("--budget-wh", type=float, help="watt-hours per window")
    cr.add_argument("--budget-co2-g", type=float, help="grams of CO2 per window")
    cr.add_argument("--window", default="total", choices=("1h", "1d", "7d", "30d", "total"))
    cr.add_argument("--rpm", type=int, help="requests per minute")
    cr.add_argument("--tpm", type=int, help="tokens per minute")
    cr.add_argument("--models", help="comma-separated glob patterns, e.g. 'smollm2-*,qwen*'")
    cr.add_argument("--expires", help="ISO date or time, unix seconds, or e.g. 30d")
    cr.add_argument("--admin", action="store_true", help="may see everything and manage keys")
    cr.set_defaults(func=cmd_keys_create)
    ls = ksub.add_parser("list", parents=[common, out], help="every key and its budgets")
    ls.set_defaults(func=cmd_keys_list)
    for action, text in (
        ("show", "one key: spent, reserved and left per budget"),
        ("revoke", "stop a key at once (it stays listed)"),
        ("rotate", "a new secret for a key; the old one stops working"),
    ):
        p = ksub.add_parser(action, parents=[common, out], help=text)
        p.add_argument("key", help="the key's id or name")
        p.set_defaults(func=lambda a, action=action: _one(a, action))
