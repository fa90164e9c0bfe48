"""smallfirst side by side with llama-cpp-python's own OpenAI server, same model and settings.

Each server runs in its own subprocess, one at a time: start A, measure, stop; start B,
measure, stop; the next round starts with the other one. Both get the same model file, n_ctx
2048, ``T`` threads (prompt and decode), and the same sequence of chat messages; every
request is a streamed chat completion with temperature 0 and max_tokens 128, sent with the
same plain httpx SSE client (see ``harness.sse``). Per server and round:

* warm-up: one short request (loads the model);
* ``--n`` single streams, one after another: time to first token (request sent to first
  content chunk) and decode tokens/s ((tokens - 1) / (last - first content chunk));
* ``--concurrent-reps`` bursts of ``--concurrency`` streams at once (threads, one connection
  each): aggregate tokens/s = all completion tokens / wall time from the first request sent
  to the last stream's end.

Each request's user message carries its number ("... (Story 3.)"), so the prompt is never
a full KV-cache hit and time to first token includes prompt processing; both servers see the
same numbers in the same order (``--same-prompt`` sends one message every time instead).

llama_cpp.server is started with ``--interrupt_requests False``: by default it aborts a
running stream as soon as another request arrives, which would cut the concurrent streams
short. Everything else is its default (``--llama-server-args`` adds flags). Every request
also carries ``repeat_penalty: 1.0``, a llama-cpp-python extension that smallfirst ignores
(it never penalises repeats): llama_cpp.server would otherwise apply 1.1, which changes the
completions. With it, both servers sample greedily from the same distribution.

Target: smallfirst at least as fast on every figure (TTFT: lower is better).

    .venv/bin/python bench/vs_llama_server.py [--quick] [--model NAME] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness import PYTHON, script
from harness.gateway import LADDER_DEFAULT, STORY_PROMPT, model_path, running_gateway
from harness.procs import Child, scratch_dir
from harness.sse import StreamStats, openai_client, stream_chat
from harness.stats import fmt, median, ratio
from smallfirst.testing import free_port

SMALLFIRST = "smallfirst"
LLAMA_SERVER = "llama_cpp.server"
SERVERS = (SMALLFIRST, LLAMA_SERVER)


def messages_for(args: argparse.Namespace, i: int) -> list[dict[str, str]]:
    content = args.prompt if args.same_prompt else f"{args.prompt} (Story {i}.)"
    return [{"role": "user", "content": content}]


@contextlib.contextmanager
def running_server(
    kind: str, args: argparse.Namespace, path: Path, log_dir: Path, round_no: int
) -> Iterator[tuple[str, list[str]]]:
    """Start ``kind`` and wait until it answers; its base URL (ending in /v1) and command."""
    if kind == SMALLFIRST:
        with running_gateway(
            log_dir,
            name=f"{kind}-round{round_no}",
            default_model=args.model,
            settings={"n_ctx": args.n_ctx},
            threads=args.threads,
            ready_timeout_s=300,
        ) as gateway:
            yield gateway.base_url, gateway.command
        return
    port = free_port()
    flags = {
        "--model": str(path),
        "--model_alias": args.model,
        "--n_ctx": str(args.n_ctx),
        "--n_threads": str(args.threads),
        "--n_threads_batch": str(args.threads),
        "--host": "127.0.0.1",
        "--port": str(port),
        "--interrupt_requests": "False",
    }
    cmd = [PYTHON, "-m", "llama_cpp.server", *(x for kv in flags.items() for x in kv)]
    cmd += shlex.split(args.llama_server_args)
    base_url = f"http://127.0.0.1:{port}/v1"
    with Child(kind, cmd, log_path=log_dir / f"{kind}-round{round_no}.log") as server:
        server.wait_ready(base_url + "/models", timeout_s=300)
        yield base_url, cmd


def burst(
    base_url: str, args: argparse.Namespace, message_sets: list[list[dict[str, str]]]
) -> dict[str, Any]:
    """``len(message_sets)`` streams started together; aggregate completion tokens/s."""
    clients = [openai_client(base_url) for _ in message_sets]
    barrier = threading.Barrier(len(message_sets))

    def one(k: int) -> StreamStats:
        barrier.wait()
        return stream_chat(
            clients[k], args.model, message_sets[k], args.max_tokens, extra_body=args.extra_body
        )

    pool = ThreadPoolExecutor(max_workers=len(message_sets))
    try:
        futures = [pool.submit(one, k) for k in range(len(message_sets))]
        streams = [f.result() for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for client in clients:
            client.close()
    wall = max(s.end for s in streams) - min(s.start for s in streams)
    tokens = sum(s.tokens for s in streams)
    return {
        "aggregate_tps": round(tokens / wall, 3),
        "wall_s": round(wall, 4),
        "total_tokens": tokens,
        "streams": [s.summary() for s in streams],
        "texts": [s.text for s in streams],
    }


def measure_server(
    kind: str, args: argparse.Namespace, path: Path, log_dir: Path, round_no: int
) -> dict[str, Any]:
    started = time.perf_counter()
    with running_server(kind, args, path, log_dir, round_no) as (base_url, cmd):
        client = openai_client(base_url)
        try:
            stream_chat(
                client,
                args.model,
                messages_for(args, 0),
                args.warmup_tokens,
                extra_body=args.extra_body,
            )
            ready_s = time.perf_counter() - started
            singles = [
                stream_chat(
                    client,
                    args.model,
                    messages_for(args, i),
                    args.max_tokens,
                    extra_body=args.extra_body,
                )
                for i in range(1, args.n + 1)
            ]
        finally:
            client.close()
        bursts = []
        for rep in range(args.concurrent_reps):
            first = 1000 + rep * args.concurrency
            sets = [messages_for(args, first + k) for k in range(args.concurrency)]
            bursts.append(burst(base_url, args, sets))
    ttft = median([s.ttft_s * 1000 for s in singles])
    tps = median([s.decode_tps for s in singles])
    agg = median([b["aggregate_tps"] for b in bursts])
    print(
        f"  round {round_no} {kind:16s} TTFT {ttft:7.1f} ms   decode {tps:7.2f} tok/s   "
        f"{args.concurrency} streams {agg:7.2f} tok/s   (tokens {[s.tokens for s in singles]})",
        flush=True,
    )
    return {
        "server": kind,
        "round": round_no,
        "command": cmd,
        "startup_and_warmup_s": round(ready_s, 3),
        "ttft_ms_median": round(ttft, 3),
        "decode_tps_median": round(tps, 3),
        "aggregate_tps_median": round(agg, 3),
        "singles": [s.summary() for s in singles],
        "single_texts": [s.text for s in singles],
        "bursts": bursts,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = script.parser(__doc__, area="serving", quick="2 rounds, 3 streams, 1 burst")
    p.add_argument("--model", default=LADDER_DEFAULT[0], help="catalog model name")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, both servers")
    p.add_argument("--rounds", type=int, help="rounds, alternating order (default 4; quick 2)")
    p.add_argument("--n", type=int, help="single streams per server and round (default 5; quick 3)")
    p.add_argument("--concurrency", type=int, default=4, help="streams at once in a burst")
    p.add_argument(
        "--concurrent-reps", type=int, help="bursts per server and round (default 2; quick 1)"
    )
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--warmup-tokens", type=int, default=16)
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--prompt", default=STORY_PROMPT, help="the user message")
    p.add_argument(
        "--same-prompt",
        action="store_true",
        help="send exactly the same message every time (cached-prompt TTFT)",
    )
    p.add_argument(
        "--llama-server-args",
        default="",
        help="extra flags for llama_cpp.server, e.g. '--logits_all False'",
    )
    p.add_argument(
        "--server-sampling-defaults",
        action="store_true",
        help="do not send repeat_penalty=1.0 (llama_cpp.server then applies 1.1)",
    )
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.n = args.n or (3 if args.quick else 5)
    args.concurrent_reps = args.concurrent_reps or (1 if args.quick else 2)
    # llama_cpp.server defaults repeat_penalty to 1.1 (not an OpenAI parameter); smallfirst
    # uses 1.0 and ignores the field, so sending 1.0 makes both sample alike.
    args.extra_body = None if args.server_sampling_defaults else {"repeat_penalty": 1.0}
    return args


def compare(runs: list[dict[str, Any]], concurrency: int) -> tuple[dict[str, Any], list[list[str]]]:
    """Each figure pooled over all rounds, per server: the summary and the table's rows."""

    def pooled(kind: str) -> dict[str, float]:
        mine = [run for run in runs if run["server"] == kind]
        singles = [s for run in mine for s in run["singles"]]
        bursts = [b for run in mine for b in run["bursts"]]
        return {
            "ttft_ms": median([s["ttft_ms"] for s in singles]),
            "decode_tps": median([s["decode_tps"] for s in singles]),
            "aggregate_tps": median([b["aggregate_tps"] for b in bursts]),
        }

    sf, ls = pooled(SMALLFIRST), pooled(LLAMA_SERVER)
    figures = [
        ("ttft_ms", "time to first token, ms (median)", "lower", 1),
        ("decode_tps", "decode tok/s, 1 stream (median)", "higher", 2),
        ("aggregate_tps", f"aggregate tok/s, {concurrency} streams (median)", "higher", 2),
    ]
    summary: dict[str, Any] = {}
    rows = []
    for key, label, better, digits in figures:
        rat = ratio(sf[key], ls[key])
        ok = sf[key] <= ls[key] if better == "lower" else sf[key] >= ls[key]
        summary[key] = {
            SMALLFIRST: round(sf[key], 3),
            LLAMA_SERVER: round(ls[key], 3),
            "ratio_smallfirst_over_llama_server": round(rat, 4),
            "better": better,
            "smallfirst_at_least_as_fast": ok,
        }
        ok_text = "yes" if ok else "NO"
        rows.append(
            [label, fmt(sf[key], digits), fmt(ls[key], digits), fmt(rat, 3), better, ok_text]
        )
    return summary, rows


def describe(args: argparse.Namespace) -> list[str]:
    """The notes that say how the figures were made."""
    ttft = (
        "TTFT: request sent to first content chunk, the same prompt every time"
        if args.same_prompt
        else "TTFT: request sent to first content chunk, the prompt differing from the previous "
        "request's (not a full KV-cache hit)"
    )
    penalty = (
        ""
        if args.server_sampling_defaults
        else "; requests carry repeat_penalty 1.0 "
        "(llama_cpp.server's default is 1.1; smallfirst ignores the field)"
    )
    return [
        f"{args.rounds} rounds, order alternating; per server and round {args.n} single "
        f"streams and {args.concurrent_reps} burst(s) of {args.concurrency} concurrent streams; "
        f"medians over all rounds",
        f"model {args.model}, {args.threads} threads, n_ctx {args.n_ctx}, temperature 0, "
        f"max_tokens {args.max_tokens}",
        "ratio = smallfirst / llama_cpp.server: below 1 is better for time to first token, "
        "above 1 is better for tokens/s",
        ttft,
        "llama_cpp.server runs with --interrupt_requests False (otherwise concurrent streams "
        "are cut short)" + penalty,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    path = model_path(args.model)
    run = script.start("vs_llama_server", f"smallfirst vs llama_cpp.server on {args.model}", args)
    runs: list[dict[str, Any]] = []
    with scratch_dir() as log_dir:
        for r in range(1, args.rounds + 1):
            order = SERVERS if r % 2 == 1 else SERVERS[::-1]
            for kind in order:
                runs.append(measure_server(kind, args, path, log_dir, r))
    summary, rows = compare(runs, args.concurrency)
    texts = {
        kind: [t for r in runs if r["server"] == kind for t in r.pop("single_texts")]
        for kind in SERVERS
    }
    same_text = texts[SMALLFIRST] == texts[LLAMA_SERVER]
    for one in runs:
        for b in one["bursts"]:
            b.pop("texts")
    result = {
        "parameters": {k: v for k, v in vars(args).items() if k != "out"},
        "model_path": str(path),
        "target": "smallfirst at least as fast on every figure (TTFT lower is better)",
        "summary": summary,
        "same_text": same_text,
        "runs": runs,
    }
    run.finish(
        result,
        headers=["figure", SMALLFIRST, LLAMA_SERVER, "ratio sf/llama", "better", "sf as fast"],
        rows=rows,
        notes=describe(args),
        verdicts=[f"same completions from both servers: {'yes' if same_text else 'NO'}"],
        title=f"smallfirst vs llama_cpp.server ({args.model})",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
