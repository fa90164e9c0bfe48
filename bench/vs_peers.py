"""smallfirst's batched engine against llama.cpp's own server and its batched-bench, same llama.cpp.

The peers are built from the llama.cpp vendored in the installed llama-cpp-python's sdist
(``smallfirst.peers``; built and cached on first use, about 15 minutes on 2 cores). For each
model (default Qwen2.5-Coder 0.5B and 1.5B, Q4_K_M, the same GGUF file everywhere) and each
round, for each client count N (``--clients``, default 1 2 4 8):

* **smallfirst**: one gateway per N, as llama-server has, ``engine_batching = true``,
  ``parallel`` = N, n_ctx 2048 per request, ``--threads`` threads (``--shared-gateway``: one
  gateway for the whole run with ``parallel`` = the largest N, the measurements before
  2026-12-03 11:00);
* **llama-server**: ``llama-server -np N -c N*2048 -t T -tb T`` (one server per N, started
  once and kept for the run; everything else its defaults, continuous batching and flash
  attention (``auto``, on for CPUs) included; ours follows its ``flash_attention`` setting,
  on by default, unless ``--flash-attention off``); with ``--peers-like-ours`` the peers get
  our flash attention and our OpenMP spin instead (``-fa``, ``GOMP_SPINCOUNT``): the serving
  code alone compared;

each serves N concurrent greedy chat completions (non-streamed, ``max_tokens``, each with a
prompt of its own so that no answer is cached), and the order of the two alternates by
round. Figures per side and N, medians over rounds:

* aggregate tok/s: completion tokens of all N / wall time from the first request sent to
  the last answer (prompt reading included, on both sides);
* CPU ms per output token: the server process's CPU time (from /proc) over the same span /
  completion tokens;
* smallfirst only: energy per output token from its receipts (method ``estimated``: CPU
  time times the machine's per-core power profile, plus RAM; see docs), and the ratio to
  its one-stream figure.

And once per round, ``llama-batched-bench -npp 128 -ntg MAX_TOKENS -npl N...`` on the same
GGUF and threads: its decode rate ``S_TG`` (generated tokens/s of all N streams, prompt
excluded) at each N, the ceiling the issue compares against.

Targets from issue #14: one stream >= 0.95x llama-server; every N >= 1.0x llama-server; at
4 clients >= 0.9x llama-batched-bench's decode rate at batch 4; smallfirst's energy per
output token at 4 clients <= 0.8x its one-stream figure.

    .venv/bin/python bench/vs_peers.py [--quick] [--models NAME...] [--clients 1 2 4 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from harness import script
from harness.gateway import Gateway, model_path, running_gateway
from harness.procs import Child, process_cpu_seconds, scratch_dir
from harness.sse import StreamStats, openai_client, stream_chat
from harness.stats import fmt, median, ratio
from smallfirst.engines.openmp import SPIN_COUNT
from smallfirst.peers import Peers, ensure_peers
from smallfirst.settings import Settings
from smallfirst.testing import free_port

SIDES = ("smallfirst", "llama-server")


def body(model: str, round_no: int, client: int, max_tokens: int) -> dict[str, Any]:
    # a coding task: the coder models answer it at length (a story prompt got 13-token refusals)
    text = (
        f"Request {round_no}.{client}: write a Python class for a bank account with deposit, "
        "withdraw, a transaction history and docstrings."
    )
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def burst(url: str, pid: int, bodies: list[dict[str, Any]], stream: bool = False) -> dict[str, Any]:
    """The bodies sent at once (a thread and connection each); tokens, wall, CPU, energy.

    With ``stream``, the answers are streamed and the decode-only rate is added: the sum over
    the streams of (tokens - 1) / (last chunk - first chunk), prompt reading left out as in
    llama-batched-bench's S_TG. Streamed answers carry no receipt, so no energy then.
    """
    answers: list[dict[str, Any]] = [{} for _ in bodies]
    streams: list[StreamStats | None] = [None] * len(bodies)
    errors: list[str] = []

    def one(i: int) -> None:
        b = bodies[i]
        try:
            if stream:
                with openai_client(url + "/v1", 900) as client:
                    streams[i] = stream_chat(client, b["model"], b["messages"], b["max_tokens"])
                return
            r = httpx.post(url + "/v1/chat/completions", json=b, timeout=900)
            r.raise_for_status()
            answers[i] = r.json()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    cpu = process_cpu_seconds(pid)
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    cpu = process_cpu_seconds(pid) - cpu
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {errors[0]}")
    done = [st for st in streams if st is not None]
    if stream:
        texts = [st.text for st in done]
        tokens = sum(st.tokens for st in done)
    else:
        texts = [a["choices"][0]["message"]["content"] for a in answers]
        tokens = sum(a["usage"]["completion_tokens"] for a in answers)
    receipts = [a["smallfirst"] for a in answers if "smallfirst" in a]
    energy = sum(r["energy"]["energy_j"] for r in receipts) if receipts else None
    return {
        "tokens": tokens,
        "wall_s": wall,
        "tok_s": ratio(tokens, wall),
        "decode_tok_s": sum(st.decode_tps for st in done) if stream else None,
        "cpu_ms_per_token": ratio(cpu * 1000, tokens),
        "energy_j_per_token": ratio(energy, tokens) if energy is not None else None,
        "energy_methods": sorted({r["energy"]["method"] for r in receipts}),
        "texts": texts,
    }


def peer_config(args: argparse.Namespace) -> tuple[tuple[str, ...], dict[str, str] | None]:
    """The peers' extra flags and environment: their defaults, or with ``--peers-like-ours``
    our flash attention and our OpenMP spin (what our gateway sets, ``GOMP_SPINCOUNT``)."""
    if not args.peers_like_ours:
        return (), None
    spin = args.openmp_spin_count if args.openmp_spin_count is not None else SPIN_COUNT
    flags = ("-fa", "on" if ours_flash_attention(args) else "off")
    return flags, {**os.environ, "GOMP_SPINCOUNT": str(spin)}


@contextlib.contextmanager
def llama_servers(
    peers: Peers,
    gguf: Path,
    clients: list[int],
    threads: int,
    logs: Path,
    config: tuple[tuple[str, ...], dict[str, str] | None] = ((), None),
) -> Iterator[dict[int, Child]]:
    """One ``llama-server -np N`` per client count, all ready (``config``: extra flags and
    environment, :func:`peer_config`)."""
    flags, env = config
    with contextlib.ExitStack() as stack:
        servers: dict[int, tuple[Child, int]] = {}
        for n in clients:
            port = free_port()
            cmd = peers.server_command(
                gguf, port=port, threads=threads, n_ctx=2048 * n, extra=("-np", str(n), *flags)
            )
            child = stack.enter_context(
                Child(f"llama-server-np{n}", cmd, log_path=logs / f"np{n}.log", env=env)
            )
            servers[n] = (child, port)
        for child, port in servers.values():
            child.wait_ready(f"http://127.0.0.1:{port}/health", 300)
        yield {n: child for n, (child, _) in servers.items()}


def batched_bench(
    peers: Peers,
    gguf: Path,
    clients: list[int],
    threads: int,
    max_tokens: int,
    logs: Path,
    config: tuple[tuple[str, ...], dict[str, str] | None] = ((), None),
) -> dict[int, float]:
    """llama-batched-bench's decode rate S_TG (tok/s) at each batch size."""
    flags, env = config
    cmd = [
        str(peers.batched_bench),
        "-m", str(gguf),
        "-c", str(max(clients) * (128 + max_tokens) + 256),
        "-b", "2048", "-ub", "512",
        "-npp", "128", "-ntg", str(max_tokens),
        "-npl", ",".join(str(n) for n in clients),
        "-t", str(threads), "-tb", str(threads),
        *flags,
    ]  # fmt: skip
    log_path = logs / "batched-bench.log"
    with Child(
        "llama-batched-bench", cmd, log_path=log_path, capture_stdout=True, env=env
    ) as child:
        out = child.communicate(1800)
    rates: dict[int, float] = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and all(re.fullmatch(r"[\d.]+", c) for c in cells[:8]):
            rates[int(cells[2])] = float(cells[7])
    if set(rates) != set(clients):
        raise RuntimeError(f"could not read llama-batched-bench's table:\n{out[-2000:]}")
    return rates


def bench_model(args: argparse.Namespace, peers: Peers, name: str, logs: Path) -> dict[str, Any]:
    gguf = model_path(name)
    runs: list[dict[str, Any]] = []
    peer_rates: list[dict[int, float]] = []
    config = peer_config(args)
    with (
        gateways(args, name, logs) as ours,
        llama_servers(peers, gguf, args.clients, args.threads, logs, config) as servers,
    ):
        urls = {n: f"http://127.0.0.1:{_port(c)}" for n, c in servers.items()}
        mine = {n: (gw.url, gw.child.pid) for n, gw in ours.items()}
        theirs = {n: (u, servers[n].pid) for n, u in urls.items()}
        for side_url, pid in [*set(mine.values()), *theirs.values()]:
            burst(side_url, pid, [body(name, -1, 0, 8)])  # warm-up
        for round_no in range(args.rounds):
            order = SIDES if round_no % 2 == 0 else tuple(reversed(SIDES))
            for n in args.clients:
                bodies = [body(name, round_no, c, args.max_tokens) for c in range(n)]
                for side in order:
                    url, pid = mine[n] if side == "smallfirst" else theirs[n]
                    figures = burst(url, pid, bodies, args.stream)
                    runs.append({"side": side, "clients": n, "round": round_no, **figures})
                    print(
                        f"  {name} round {round_no} {side:>12} x{n}: {figures['tok_s']:.1f} tok/s, "
                        f"{figures['cpu_ms_per_token']:.1f} CPU ms/token",
                        flush=True,
                    )
            rates = batched_bench(
                peers, gguf, args.clients, args.threads, args.max_tokens, logs, config
            )
            print(f"  {name} round {round_no} llama-batched-bench S_TG: {rates}", flush=True)
            peer_rates.append(rates)
    return {"model": name, "runs": runs, "batched_bench_s_tg": peer_rates}


def ours_flash_attention(args: argparse.Namespace) -> bool:
    """Whether our gateway runs flash attention: ``--flash-attention``, else the default."""
    if args.flash_attention is not None:
        return bool(args.flash_attention == "on")
    return bool(Settings.model_fields["flash_attention"].default)


def batched_settings(
    parallel: int, flash_attention: bool | None = None, spin_count: int | None = None
) -> dict[str, bool | int]:
    """Our gateway's settings against the peers: the batched engine, ``parallel`` slots of
    2048 tokens each (and ``flash_attention``, ``openmp_spin_count`` where given)."""
    settings: dict[str, bool | int] = {"engine_batching": True, "parallel": parallel, "n_ctx": 2048}
    if flash_attention is not None:
        settings["flash_attention"] = flash_attention
    if spin_count is not None:
        settings["openmp_spin_count"] = spin_count
    return settings


@contextlib.contextmanager
def gateways(args: argparse.Namespace, name: str, logs: Path) -> Iterator[dict[int, Gateway]]:
    """Our gateway for each N: one per N with ``parallel`` = N, or with
    ``--shared-gateway`` the same one (``parallel`` = the largest N) for every N."""
    counts = [max(args.clients)] if args.shared_gateway else args.clients
    with contextlib.ExitStack() as stack:
        started = {
            n: stack.enter_context(
                running_gateway(
                    logs,
                    name=f"gw-{name}-p{n}",
                    settings=batched_settings(
                        n, ours_flash_attention(args), args.openmp_spin_count
                    ),
                    threads=args.threads,
                )
            )
            for n in counts
        }
        yield {n: started[max(counts)] if args.shared_gateway else started[n] for n in args.clients}


def _port(child: Child) -> int:
    return int(child.cmd[child.cmd.index("--port") + 1])


def streamed(runs: list[dict[str, Any]]) -> bool:
    return any(r.get("decode_tok_s") is not None for r in runs)


def summary(result: dict[str, Any], clients: list[int]) -> list[dict[str, Any]]:
    rows = []
    runs = result["runs"]
    for n in clients:
        row: dict[str, Any] = {"model": result["model"], "clients": n}
        for side in SIDES:
            mine = [r for r in runs if r["side"] == side and r["clients"] == n]
            row[f"{side}:tok_s"] = median([r["tok_s"] for r in mine])
            row[f"{side}:cpu_ms_per_token"] = median([r["cpu_ms_per_token"] for r in mine])
        ours = [r for r in runs if r["side"] == "smallfirst" and r["clients"] == n]
        energies = [r["energy_j_per_token"] for r in ours if r["energy_j_per_token"] is not None]
        row["energy_j_per_token"] = median(energies) if energies else None
        theirs = {r["round"]: r for r in runs if r["side"] == "llama-server" and r["clients"] == n}
        # the ratio of each round (both sides measured back to back), then their median
        row["ours/server"] = median([ratio(r["tok_s"], theirs[r["round"]]["tok_s"]) for r in ours])
        row["batched_bench_s_tg"] = median([rates[n] for rates in result["batched_bench_s_tg"]])
        row["ours/batched_bench"] = ratio(row["smallfirst:tok_s"], row["batched_bench_s_tg"])
        if streamed(runs):
            # decode only on both sides: the fair comparison with S_TG
            row["smallfirst:decode_tok_s"] = median([r["decode_tok_s"] for r in ours])
            row["ours decode/batched_bench"] = ratio(
                row["smallfirst:decode_tok_s"], row["batched_bench_s_tg"]
            )
        rows.append(row)
    one = next((r for r in rows if r["clients"] == 1), None)
    for row in rows:
        known = one and row["energy_j_per_token"] and one["energy_j_per_token"]
        row["energy_vs_one_stream"] = (
            ratio(row["energy_j_per_token"], one["energy_j_per_token"]) if known and one else None
        )
    return rows


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        label = f"{r['model']} x{r['clients']}"
        bar = 0.95 if r["clients"] == 1 else 1.0
        ok = r["ours/server"] >= bar
        out.append(
            f"{'PASS' if ok else 'MISS'} {label}: {fmt(r['ours/server'])} x llama-server "
            f"(target >= {bar})"
        )
        if r["clients"] == 4:
            key = "ours decode/batched_bench" if "ours decode/batched_bench" in r else None
            key = key or "ours/batched_bench"
            ok = r[key] >= 0.9
            what = "our decode-only rate" if key.startswith("ours decode") else "our aggregate"
            out.append(
                f"{'PASS' if ok else 'MISS'} {label}: {what} {fmt(r[key])} x "
                "llama-batched-bench's decode rate (target >= 0.9)"
            )
            e = r["energy_vs_one_stream"]
            if e is None:
                continue
            ok = e is not None and e <= 0.8
            out.append(
                f"{'PASS' if ok else 'MISS'} {label}: energy per output token {fmt(e)} x one "
                "stream's (target <= 0.8)"
            )
    return out


def main() -> int:
    p = script.parser(
        __doc__, area="serving", quick="Qwen-0.5B, 1 round, clients 1 and 4, 32 tokens"
    )
    p.add_argument("--models", nargs="+", help="catalog names (default: Qwen-Coder 0.5B and 1.5B)")
    p.add_argument("--clients", nargs="+", type=int, help="client counts (default 1 2 4 8)")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, every side")
    p.add_argument("--rounds", type=int, help="rounds (default 3; quick 1)")
    p.add_argument("--max-tokens", type=int, help="tokens per answer (default 96; quick 32)")
    p.add_argument(
        "--stream",
        action="store_true",
        help="stream the answers and add each side's decode-only tok/s (no receipts, no energy)",
    )
    p.add_argument(
        "--shared-gateway",
        action="store_true",
        help="one gateway for every N (parallel = the largest N) instead of one per N",
    )
    p.add_argument(
        "--flash-attention",
        choices=["on", "off"],
        help="flash attention in our engine (default: the setting's default, on, as the "
        "peers' llama.cpp default, auto, is on CPUs)",
    )
    p.add_argument(
        "--openmp-spin-count",
        type=int,
        help=f"our gateway's openmp_spin_count setting (default: its default, {SPIN_COUNT}); "
        "the peers keep libgomp's default unless --peers-like-ours",
    )
    p.add_argument(
        "--peers-like-ours",
        action="store_true",
        help="run the peers with our llama.cpp settings (flash attention as ours, "
        "GOMP_SPINCOUNT = our spin) instead of their defaults: the serving code alone compared",
    )
    args = p.parse_args()
    quick = args.quick
    args.models = args.models or (
        ["qwen2.5-coder-0.5b-instruct"]
        if quick
        else ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
    )
    args.clients = sorted(args.clients or ([1, 4] if quick else [1, 2, 4, 8]))
    args.rounds = args.rounds or (1 if quick else 3)
    args.max_tokens = args.max_tokens or (32 if quick else 96)
    peers = ensure_peers(progress=print)
    run = script.start(
        "vs_peers", "smallfirst (batched) vs llama-server and llama-batched-bench", args
    )
    results, rows = [], []
    with scratch_dir() as logs:
        for name in args.models:
            result = bench_model(args, peers, name, logs)
            results.append(result)
            rows += summary(result, args.clients)
    headers = [
        "model", "clients", "smallfirst tok/s", "llama-server tok/s", "ours/server",
        "batched-bench S_TG", "ours/S_TG", "CPU ms/tok ours / server",
        "J per token (est.)", "J/token vs 1 stream", "ours decode-only tok/s", "decode/S_TG",
    ]  # fmt: skip
    table = [
        [
            r["model"],
            str(r["clients"]),
            fmt(r["smallfirst:tok_s"], 1),
            fmt(r["llama-server:tok_s"], 1),
            fmt(r["ours/server"]),
            fmt(r["batched_bench_s_tg"], 1),
            fmt(r["ours/batched_bench"]),
            " / ".join(fmt(r[f"{side}:cpu_ms_per_token"], 1) for side in SIDES),
            fmt(r["energy_j_per_token"], 3),
            fmt(r["energy_vs_one_stream"]),
            fmt(r.get("smallfirst:decode_tok_s"), 1),
            fmt(r.get("ours decode/batched_bench")),
        ]
        for r in rows
    ]
    notes = [
        f"llama-cpp-python {peers.version}; the peers built from its sdist's llama.cpp",
        f"{args.rounds} rounds, {args.max_tokens} tokens per answer, greedy, {args.threads} "
        "threads, medians; ours/server is the median of per-round ratios",
        "aggregate tok/s includes prompt reading (both servers); llama-batched-bench's S_TG "
        "excludes it (prompt 128 tokens per stream), so ours/S_TG is a ceiling comparison",
        "J per token: smallfirst's receipts, method estimated (CPU time x per-core power + RAM)",
        f"ours: flash attention {'on' if ours_flash_attention(args) else 'off'}, openmp_spin_count "
        f"{args.openmp_spin_count if args.openmp_spin_count is not None else SPIN_COUNT}, "
        f"adaptive_threads {'on' if Settings.model_fields['adaptive_threads'].default else 'off'} "
        "(the default); peers: "
        + (
            "like ours (-fa and GOMP_SPINCOUNT the same)"
            if args.peers_like_ours
            else "their defaults (flash attention auto = on, libgomp's own spin)"
        ),
    ]
    run.finish(
        {"results": results, "summary": rows},
        headers=headers,
        rows=table,
        notes=notes,
        verdicts=verdicts(rows),
        title="smallfirst (batched engine) vs llama-server and llama-batched-bench",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
