"""Decode speed through the gateway versus the bare llama-cpp-python loop, same model and threads.

For each model: start ``smallfirst serve`` in a subprocess (n_ctx 2048, ``--threads T``) and
warm it up; then, ``--repeats`` times, alternately

* raw: a fresh subprocess loads ``llama_cpp.Llama(path, n_ctx=2048, n_threads=T,
  n_threads_batch=T, verbose=False)``, warms up, and times
  ``create_completion(prompt, max_tokens, temperature=0, stream=True)`` on the model's own
  chat-templated prompt; it exits before the gateway is measured (the gateway sits idle
  meanwhile: its CPU time during the raw run is recorded to show it);
* gateway: one streamed chat completion over loopback HTTP (httpx reading SSE lines)
  (temperature 0, ``stream_options.include_usage``), timed from the first content chunk to
  the last.

Decode tokens/s = (tokens - 1) / (last token time - first token time) on both sides, with
the tokens actually produced (usage on the gateway side; on the raw side the context's token
count). Load time and time to first token are not in the figure. Target: gateway/raw >= 0.95.

    .venv/bin/python bench/gateway_vs_raw.py [--quick] [--models NAME...] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import PYTHON, script
from harness.gateway import LADDER_DEFAULT, STORY_PROMPT, model_path, running_gateway
from harness.procs import Child, scratch_dir
from harness.sse import decode_rate, openai_client, stream_chat
from harness.stats import fmt, median, ratio

TARGET = 0.95
RESULT_MARK = "RESULT "


# --------------------------------------------------------------------------- raw side


def raw_worker(args: argparse.Namespace) -> None:
    """Child process: the bare llama-cpp-python loop, one timed generation, JSON on stdout."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    started = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=args.model_path,
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    load_s = time.perf_counter() - started
    model = llm._model
    eos, bos = model.token_eos(), model.token_bos()
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=model.token_get_text(eos) if eos != -1 else "",
        bos_token=model.token_get_text(bos) if bos != -1 else "",
    )
    prompt = formatter(messages=[{"role": "user", "content": args.prompt}]).prompt
    # The prompt tokens exactly as create_completion builds them (BOS only if the model adds one).
    n_prompt = len(llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
    if model.add_bos_token() and bos != -1:
        n_prompt += 1

    for _ in llm.create_completion(
        prompt, max_tokens=args.warmup_tokens, temperature=0, stream=True
    ):
        pass

    parts: list[str] = []
    first: float | None = None
    last: float | None = None
    chunks = 0
    finish: str | None = None
    chunk: Any  # llama_cpp types the stream as a union with the non-streaming response
    start = time.perf_counter()
    for chunk in llm.create_completion(
        prompt, max_tokens=args.max_tokens, temperature=0, stream=True
    ):
        choice = chunk["choices"][0]
        if choice["text"]:
            now = time.perf_counter()
            if first is None:
                first = now
            last = now
            chunks += 1
            parts.append(choice["text"])
        if choice["finish_reason"]:
            finish = choice["finish_reason"]
    end = time.perf_counter()
    # Every generated token but the last is evaluated into the context; the last one is too
    # when generation ended on an end-of-generation token (which is not counted).
    tokens = llm.n_tokens - n_prompt + (1 if finish == "length" else 0)
    result = {
        "tokens": tokens,
        "token_count_source": "context",
        "content_chunks": chunks,
        "prompt_tokens": n_prompt,
        "finish_reason": finish,
        "ttft_ms": round((first - start) * 1000, 3) if first is not None else None,
        "decode_s": round(last - first, 4) if first is not None and last is not None else None,
        "decode_tps": round(decode_rate(tokens, first, last), 3),
        "total_s": round(end - start, 4),
        "load_s": round(load_s, 3),
        "text": "".join(parts),
    }
    llm.close()
    print(RESULT_MARK + json.dumps(result), flush=True)


def run_raw(args: argparse.Namespace, path: Path, log_dir: Path, tag: str) -> dict[str, Any]:
    cmd = [
        PYTHON,
        str(Path(__file__).resolve()),
        "--raw-worker",
        "--model-path",
        str(path),
        "--threads",
        str(args.threads),
        "--n-ctx",
        str(args.n_ctx),
        "--max-tokens",
        str(args.max_tokens),
        "--warmup-tokens",
        str(args.warmup_tokens),
        "--prompt",
        args.prompt,
    ]
    with Child(
        f"raw {tag}", cmd, log_path=log_dir / f"raw-{tag}.log", capture_stdout=True
    ) as child:
        out = child.communicate(timeout_s=1800)
    for line in out.splitlines():
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    raise RuntimeError(f"raw worker printed no result:\n{out[-2000:]}")


# --------------------------------------------------------------------------- one model


def bench_model(args: argparse.Namespace, name: str, log_dir: Path) -> dict[str, Any]:
    path = model_path(name)
    messages = [{"role": "user", "content": args.prompt}]
    raw_runs: list[dict[str, Any]] = []
    gw_runs: list[dict[str, Any]] = []
    gw_texts: list[str] = []
    with running_gateway(
        log_dir,
        name=f"gateway-{name}",
        default_model=name,
        settings={"n_ctx": args.n_ctx},
        threads=args.threads,
    ) as gw_proc:
        gateway = gw_proc.child
        client = openai_client(gw_proc.base_url)
        t0 = time.perf_counter()
        stream_chat(client, name, messages, args.warmup_tokens)  # loads the model
        print(
            f"  {name}: gateway up, model loaded and warm in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        for rep in range(1, args.repeats + 1):
            cpu_before = gateway.cpu_seconds()
            raw = run_raw(args, path, log_dir, f"{name}-{rep}")
            raw["gateway_cpu_s_during_raw"] = round(gateway.cpu_seconds() - cpu_before, 3)
            raw_runs.append(raw)
            cpu0 = time.process_time()
            gw = stream_chat(client, name, messages, args.max_tokens)
            # this process's own CPU (the client reading the stream): it competes with
            # the gateway for the same cores, and the raw loop has no such client
            gw_runs.append(gw.summary() | {"client_cpu_s": round(time.process_time() - cpu0, 3)})
            gw_texts.append(gw.text)
            print(
                f"  {name} {rep}/{args.repeats}: raw {raw['decode_tps']:7.2f} tok/s "
                f"({raw['tokens']} tok)   gateway {gw.decode_tps:7.2f} tok/s ({gw.tokens} tok)"
                f"   [gateway CPU while raw ran: {raw['gateway_cpu_s_during_raw']:.2f} s]",
                flush=True,
            )
        client.close()
    raw_tps = median([r["decode_tps"] for r in raw_runs])
    gw_tps = median([g["decode_tps"] for g in gw_runs])
    raw_texts = [r.pop("text") for r in raw_runs]
    return {
        "model": name,
        "model_path": str(path),
        "raw_decode_tps_median": round(raw_tps, 3),
        "gateway_decode_tps_median": round(gw_tps, 3),
        "ratio_gateway_over_raw": round(ratio(gw_tps, raw_tps), 4),
        "target_ratio": TARGET,
        "meets_target": ratio(gw_tps, raw_tps) >= TARGET,
        "raw_tokens": [r["tokens"] for r in raw_runs],
        "gateway_tokens": [g["tokens"] for g in gw_runs],
        "same_text": all(t == raw_texts[0] for t in raw_texts + gw_texts),
        "raw_runs": raw_runs,
        "gateway_runs": gw_runs,
        "sample_text": (gw_texts[0] if gw_texts else "")[:300],
        "gateway_command": gw_proc.command,
    }


# --------------------------------------------------------------------------- main


def _spread(values: list[int]) -> str:
    """128 when all runs agree, 97-128 when they do not."""
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = script.parser(__doc__, area="serving", quick="smallest model, 2 repeats")
    p.add_argument(
        "--models",
        nargs="+",
        help="catalog model names (default: the chat ladder; --quick: the smallest)",
    )
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, both sides")
    p.add_argument("--repeats", type=int, help="raw/gateway pairs per model (default 5; quick 2)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--warmup-tokens", type=int, default=16)
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--prompt", default=STORY_PROMPT, help="the user message")
    p.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model-path", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.models is None:
        args.models = [LADDER_DEFAULT[0]] if args.quick else list(LADDER_DEFAULT)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.raw_worker:
        raw_worker(args)
        return 0
    run = script.start("gateway_vs_raw", "gateway vs raw llama-cpp-python: decode tokens/s", args)
    with scratch_dir() as log_dir:
        results = [bench_model(args, name, log_dir) for name in args.models]
    headers = [
        "model",
        "raw tok/s",
        "gateway tok/s",
        "gateway/raw",
        "tokens raw / gw",
        "same text",
        f"≥ {TARGET}",
    ]
    rows = [
        [
            r["model"],
            fmt(r["raw_decode_tps_median"]),
            fmt(r["gateway_decode_tps_median"]),
            fmt(r["ratio_gateway_over_raw"], 3),
            f"{_spread(r['raw_tokens'])} / {_spread(r['gateway_tokens'])}",
            "yes" if r["same_text"] else "NO",
            "yes" if r["meets_target"] else "NO",
        ]
        for r in results
    ]
    notes = [
        f"median of {args.repeats} interleaved runs (raw, gateway, raw, gateway, ...) per model; "
        f"{args.threads} threads both sides; n_ctx {args.n_ctx}; temperature 0; "
        f"max_tokens {args.max_tokens}; prompt {args.prompt!r}",
        "decode tok/s = (tokens - 1) / (last token time - first token time); load time and "
        "time to first token excluded",
        "raw: a fresh llama-cpp-python process per run (create_completion, stream=True), "
        "warmed up, then exited before the gateway run; gateway: `smallfirst serve` in its "
        "own process, httpx SSE client over loopback HTTP",
    ]
    result = {
        "parameters": {
            k: v for k, v in vars(args).items() if k not in ("raw_worker", "model_path", "out")
        },
        "target": f"gateway/raw decode tokens/s >= {TARGET}",
        "models": results,
    }
    run.finish(
        result, headers=headers, rows=rows, notes=notes, title="Gateway vs raw llama-cpp-python"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
