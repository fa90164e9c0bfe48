"""Flash attention off against on in our batched engine, side by side (issue #14).

llama.cpp's own server turns flash attention on for CPUs (its ``auto``); our engines follow
the ``flash_attention`` setting. For each model (``--models``) and client count N
(``--clients``), two gateways run at once, one with flash attention off and one with it on
(``engine_batching = true``, ``parallel`` = N, n_ctx 2048 per request, ``--threads``), and
each round sends both, in turn (the order alternating by round), N concurrent greedy chat
requests of ``--max-tokens`` tokens, each with a prompt of its own (the ones
``bench/vs_peers.py`` sends). Figures per model and N: each side's aggregate tok/s (prompt
reading included) per round and median, and the median of the per-round ratios on / off,
the figure that the machine's load cancels from.

    .venv/bin/python bench/flash_attention.py [--quick] [--models NAME...] [--clients 1 4]
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from harness import script
from harness.gateway import running_gateway
from harness.procs import scratch_dir
from harness.stats import fmt, median
from vs_peers import batched_settings, body

SIDES = ("off", "on")


def burst(url: str, bodies: list[dict[str, Any]]) -> float:
    """The bodies sent at once; completion tokens of all of them per wall second."""
    tokens = [0] * len(bodies)

    def one(i: int) -> None:
        r = httpx.post(url + "/v1/chat/completions", json=bodies[i], timeout=900)
        r.raise_for_status()
        tokens[i] = r.json()["usage"]["completion_tokens"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(tokens) / (time.perf_counter() - began)


def bench(model: str, n: int, args: Any, logs: Path) -> dict[str, Any]:
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    with contextlib.ExitStack() as stack:
        urls = {
            side: stack.enter_context(
                running_gateway(
                    logs,
                    name=f"gw-{model}-{n}-{side}",
                    settings=batched_settings(n, side == "on"),
                    threads=args.threads,
                )
            ).url
            for side in SIDES
        }
        for url in urls.values():
            burst(url, [body(model, -1, 0, 8)])  # warm-up
        for round_no in range(args.rounds):
            bodies = [body(model, round_no, c, args.max_tokens) for c in range(n)]
            for side in SIDES if round_no % 2 == 0 else SIDES[::-1]:
                rates[side].append(burst(urls[side], bodies))
            print(
                f"  {model} x{n} round {round_no}: off {rates['off'][-1]:.1f}, "
                f"on {rates['on'][-1]:.1f} tok/s",
                flush=True,
            )
    ratios = [on / off for on, off in zip(rates["on"], rates["off"], strict=True)]
    return {"model": model, "clients": n, "rates": rates, "on/off": median(ratios)}


def main() -> int:
    p = script.parser(__doc__, area="serving", quick="Qwen-0.5B, one client, 2 rounds, 32 tokens")
    p.add_argument("--models", nargs="+", help="catalog names (default: Qwen-Coder 0.5B and 1.5B)")
    p.add_argument("--clients", nargs="+", type=int, help="client counts (default 1 4)")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    p.add_argument("--rounds", type=int, help="rounds (default 4; quick 2)")
    p.add_argument("--max-tokens", type=int, help="tokens per answer (default 96; quick 32)")
    args = p.parse_args()
    default_models = ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
    args.models = args.models or (default_models[:1] if args.quick else default_models)
    args.clients = sorted(args.clients or ([1] if args.quick else [1, 4]))
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.max_tokens = args.max_tokens or (32 if args.quick else 96)
    run = script.start("flash_attention", "flash attention off vs on, our batched engine", args)
    results = []
    with scratch_dir() as logs:
        for model in args.models:
            for n in args.clients:
                results.append(bench(model, n, args, logs))
    headers = ["model", "clients", "off tok/s (median)", "on tok/s (median)", "on / off"]
    rows = [
        [
            r["model"],
            str(r["clients"]),
            fmt(median(r["rates"]["off"]), 1),
            fmt(median(r["rates"]["on"]), 1),
            fmt(r["on/off"]),
        ]
        for r in results
    ]
    notes = [
        f"{args.rounds} rounds, {args.max_tokens} tokens per answer, greedy, {args.threads} "
        "threads; on / off is the median of per-round ratios",
        "per-round figures: " + "; ".join(
            f"{r['model']} x{r['clients']}: off {[round(x, 1) for x in r['rates']['off']]}, "
            f"on {[round(x, 1) for x in r['rates']['on']]}"
            for r in results
        ),
    ]  # fmt: skip
    run.finish({"results": results}, headers=headers, rows=rows, notes=notes, verdicts=[])
    return 0


if __name__ == "__main__":
    sys.exit(main())
