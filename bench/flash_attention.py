"""Flash attention off against on in our batched engine, side by side (issue #14).

llama.cpp's own server turns flash attention on for CPUs (its ``auto``); our engines follow
the ``flash_attention`` setting. For each model (``--models``) and client count N
(``--clients``), two gateways run at once, one with flash attention off and one with it on
(bench/side_by_side.py: ``engine_batching = true``, ``parallel`` = N, n_ctx 2048 per
request, ``--threads``), and each round sends both, in turn (the order alternating by
round), N concurrent greedy chat requests of ``--max-tokens`` tokens, each with a prompt of
its own (the ones ``bench/vs_peers.py`` sends). Figures per model and N: each side's
aggregate tok/s (prompt reading included) and CPU ms per output token (the gateway's, i.e.
the estimated energy's basis), medians over rounds; the median of the per-round ratios
on / off, the figure that the machine's load cancels from; and in how many rounds the
greedy answers differed (flash attention changes float rounding inside attention).

    .venv/bin/python bench/flash_attention.py [--quick] [--models NAME...] [--clients 1 4]
"""

from __future__ import annotations

import sys

from harness import script
from harness.procs import scratch_dir
from harness.stats import fmt
from side_by_side import Defaults, Side, interleaved, summary

SIDES = [Side("off", {"flash_attention": False}), Side("on", {"flash_attention": True})]
DEFAULTS = Defaults(
    clients=(1, 4),
    models=("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"),
    quick_clients=(1,),
)


def main() -> int:
    p = script.parser(__doc__, area="serving", quick="Qwen-0.5B, one client, 2 rounds, 32 tokens")
    DEFAULTS.add_to(p)
    args = p.parse_args()
    DEFAULTS.fill(args)
    run = script.start("flash_attention", "flash attention off vs on, our batched engine", args)
    results, rows = [], []
    labels = [s.label for s in SIDES]
    with scratch_dir() as logs:
        for model in args.models:
            runs = interleaved(
                SIDES, model, args.clients, args.rounds, args.max_tokens, logs,
                threads=args.threads,
            )  # fmt: skip
            results.append({"model": model, "runs": runs})
            rows += summary(runs, labels, model)
    headers = [
        "model", "clients", "flash attention", "tok/s", "CPU ms/token",
        "tok/s vs off (median of rounds)", "rounds whose answers differed from off's",
    ]  # fmt: skip
    table = [
        [
            r["model"],
            str(r["clients"]),
            r["side"],
            fmt(r["tok_s"], 1),
            fmt(r["cpu_ms_per_token"], 1),
            fmt(r["vs_first"]),
            str(r["answers_differ"]),
        ]
        for r in rows
    ]
    notes = [
        f"{args.rounds} rounds, {args.max_tokens} tokens per answer, greedy, {args.threads} "
        "threads, medians; tok/s includes prompt reading",
        "per-round ratios on / off: "
        + "; ".join(
            f"{r['model']} x{r['clients']}: {[round(x, 2) for x in r['round_ratios']]}"
            for r in rows
            if r["side"] == "on"
        ),
    ]
    run.finish(
        {"results": results, "summary": rows},
        headers=headers,
        rows=table,
        notes=notes,
        title="flash attention off vs on, our batched engine",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
