"""Tool-call validity: the right function with valid arguments, grammar on and off, llama-server.

For each model that calls tools (default Qwen2.5-Coder 0.5B and 1.5B; ``--models``) three
servers run side by side on the same GGUF file and ``--threads``:

- **grammar**: ``smallfirst serve`` with ``tool_call_grammar = true`` (the default: under
  ``tool_choice`` ``auto`` a lazy grammar holds a call the model starts to the schema);
- **no grammar**: ``smallfirst serve`` with ``tool_call_grammar = false`` (the call is
  parsed as the model wrote it);
- **llama-server**: llama.cpp's own ``llama-server --jinja`` (the GGUF's chat template, its
  Hermes tool-call parser and its own lazy grammar), built from the llama.cpp vendored in the
  installed llama-cpp-python (``smallfirst.peers``).

Each committed prompt (``bench/data/tool_prompts.jsonl``: 52 that one of the 2-4 offered
functions answers, 10 that none does) goes to all three, ``tool_choice`` ``auto``, greedy,
non-streamed, ``--max-tokens`` at most, ``parallel_tool_calls`` left to each server's
default; the order of the three rotates prompt by prompt (interleaved), so machine noise
hits all alike. The ladder's other models do not call tools: each is asked once, to record
the gateway's 400.

Figures per model and configuration, over the tool prompts: the share whose reply calls the
expected function (every call names it), the share whose calls' arguments all parse and
validate against the called function's schema (``jsonschema_rs``), the share with both (the
headline), the share whose arguments also hold the values the prompt states (strings
compared without case); over the no-tool prompts, the share with a (false) call; on all,
the replies with no call whose text looks like a failed one (``<tool_call>``, or
``"name"``/``"arguments"`` keys), the replies whose calls name a function that was not
offered, the mean completion tokens and the mean seconds per prompt. "As meant" figures
read the JSON calls found in a reply's text (bare, fenced, or in tags the server did not
take) as calls too: what the model meant, whether or not the server returned it as
``tool_calls`` (llama-server takes only the template's ``<tool_call>`` blocks).

``--resume FILE`` appends each finished prompt's runs to FILE and skips the prompts it
holds; ``--time-limit-s`` starts no prompt after that long (the results say they are
partial). Both models, 62 prompts: about 25 minutes on 2 busy cores.

    .venv/bin/python bench/tool_call_check.py [--quick] [--models A,B] [--max-tokens N]
        [--resume FILE] [--time-limit-s S]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs

from harness import BENCH_DIR, script
from harness.gateway import LADDER_DEFAULT, model_path, running_gateway
from harness.procs import Child, scratch_dir
from harness.stats import fmt
from smallfirst.catalog import Catalog
from smallfirst.engines.openmp import SPIN_COUNT
from smallfirst.peers import ensure_peers
from smallfirst.settings import Settings
from smallfirst.testing import free_port

DATA = BENCH_DIR / "data" / "tool_prompts.jsonl"
CONFIGS = ("grammar", "no grammar", "llama-server")
N_CTX = 4096
# text that reads as a call the parser did not take (or the model botched)
_LOOKS_LIKE_CALL = re.compile(r'<tool_call>|"name"\s*:|"arguments"\s*:|"parameters"\s*:')


def load_items(quick: bool) -> list[dict[str, Any]]:
    items = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    if quick:  # 8 tool prompts from different domains and 2 without a tool
        tool = [i for i in items if i["expected_tool"]][::6][:8]
        items = tool + [i for i in items if not i["expected_tool"]][:2]
    return items


def _same(want: Any, got: Any) -> bool:
    if isinstance(want, str) and isinstance(got, str):
        return want.strip().casefold() == got.strip().casefold()
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(map(_same, want, got))
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(want, got, rel_tol=1e-6)
    return bool(want == got)


def score(item: dict[str, Any], calls: list[tuple[str, str]]) -> dict[str, bool]:
    """The verdicts on ``calls`` (name, JSON arguments) as the reply to ``item``."""
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in item["tools"]}
    valid = bool(calls)
    first: Any = None
    for name, arguments in calls:
        try:
            value = json.loads(arguments)
        except ValueError:
            valid, value = False, None
        first = value if first is None else first
        schema = schemas.get(name)
        valid = valid and schema is not None and jsonschema_rs.validator_for(schema).is_valid(value)
    right_name = bool(calls) and all(name == item["expected_tool"] for name, _ in calls)
    first = first if isinstance(first, dict) else {}
    stated = item["expected_arguments"].items()
    return {
        "called": bool(calls),
        "right_name": right_name,
        "valid_arguments": valid,
        "right_and_valid": right_name and valid,
        "right_values": right_name and valid and all(_same(v, first.get(k)) for k, v in stated),
        "unoffered": any(name not in schemas for name, _ in calls),
    }


def meant_calls(content: str) -> list[tuple[str, str]]:
    """The calls a reply's text holds as JSON objects with a ``name`` (bare, in a code fence
    or in tags the server did not take): what the model meant, read leniently."""
    decoder = json.JSONDecoder()
    calls: list[tuple[str, str]] = []
    at = content.find("{")
    while at >= 0:
        try:
            data, end = decoder.raw_decode(content, at)
        except ValueError:
            at = content.find("{", at + 1)
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            arguments = data.get("arguments", data.get("parameters", {}))
            calls.append((data["name"], json.dumps(arguments)))
        at = content.find("{", end)
    return calls


def judge(item: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """One reply's record: its calls and their verdicts, its text, its usage."""
    message = answer["choices"][0]["message"]
    calls = [
        (c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or []
    ]
    content = message.get("content") or ""
    usage = answer.get("usage") or {}
    return {
        **score(item, calls),
        "names": [name for name, _ in calls],
        "arguments": [arguments for _, arguments in calls],
        "malformed": not calls and bool(_LOOKS_LIKE_CALL.search(content)),
        "content": content[:2000],
        "finish_reason": answer["choices"][0].get("finish_reason"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
    }


def ask(
    client: httpx.Client, url: str, model: str, item: dict[str, Any], max_tokens: int
) -> dict[str, Any]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": item["prompt"]}],
        "tools": item["tools"],
        "tool_choice": "auto",
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    began = time.perf_counter()
    response = client.post(url + "/v1/chat/completions", json=body)
    seconds = time.perf_counter() - began
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
    return {"seconds": round(seconds, 3), **judge(item, response.json())}


@contextlib.contextmanager
def servers(model: str, args: argparse.Namespace, logs: Path) -> Iterator[dict[str, str]]:
    """The three configurations' base URLs, all ready."""
    gguf = model_path(model)
    peers = ensure_peers(progress=print)
    stem = model.replace(".", "-")
    common = {"parallel": 1, "n_ctx": N_CTX}
    port = free_port()
    # one slot, as the gateways' parallel = 1; and the gateways' OpenMP wait (a short spin:
    # with libgomp's default, llama-server crawled on this shared machine, 22 s for 25 tokens)
    peer_cmd = peers.server_command(
        gguf, port=port, threads=args.threads, n_ctx=N_CTX, extra=("--jinja", "-np", "1")
    )
    with (
        running_gateway(logs, name=f"{stem}-grammar", threads=args.threads, settings=common) as on,
        running_gateway(
            logs,
            name=f"{stem}-no-grammar",
            threads=args.threads,
            settings={**common, "tool_call_grammar": False},
        ) as off,
        Child(
            f"llama-server-{stem}",
            peer_cmd,
            log_path=logs / f"{stem}-llama-server.log",
            env={"GOMP_SPINCOUNT": str(SPIN_COUNT), **os.environ},
        ) as peer,
    ):
        peer.wait_ready(f"http://127.0.0.1:{port}/health", 300)
        yield {"grammar": on.url, "no grammar": off.url, "llama-server": f"http://127.0.0.1:{port}"}


def done_before(path: Path | None) -> list[dict[str, Any]]:
    """The runs a ``--resume`` file holds (every configuration of an item, or none)."""
    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_all(
    models: list[str], items: list[dict[str, Any]], args: argparse.Namespace, logs: Path
) -> tuple[list[dict[str, Any]], bool]:
    """Every item on every model and configuration, the models in turn item by item (so a
    run stopped by ``--time-limit-s`` has the same prompts for all); the runs, and whether
    every item was done."""
    runs = done_before(args.resume)
    done = {(r["model"], r["item"]) for r in runs}
    if args.time_limit_s <= 0 or all((m, i["id"]) in done for m in models for i in items):
        return runs, all((m, i["id"]) in done for m in models for i in items)
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        urls = {m: stack.enter_context(servers(m, args, logs)) for m in models}
        client = stack.enter_context(httpx.Client(timeout=900))
        warm = {"max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}
        for model, by_config in urls.items():  # load and warm each
            for url in by_config.values():
                reply = client.post(url + "/v1/chat/completions", json={"model": model, **warm})
                reply.raise_for_status()
        for n, item in enumerate(items):
            todo = [m for m in models if (m, item["id"]) not in done]
            if todo and time.monotonic() - began > args.time_limit_s:
                print(f"  time limit: stopping after {n} of {len(items)} prompts", flush=True)
                return runs, False
            for model in todo:
                order = CONFIGS[n % 3 :] + CONFIGS[: n % 3]
                mine = [
                    {
                        "model": model,
                        "item": item["id"],
                        "config": config,
                        **ask(client, urls[model][config], model, item, args.max_tokens),
                    }
                    for config in order
                ]
                runs += mine
                if args.resume is not None:
                    with args.resume.open("a") as out:
                        out.writelines(json.dumps(r) + "\n" for r in mine)
                print(f"  [{n + 1}/{len(items)}] {model} {item['id']}:", flush=True)
                for r in sorted(mine, key=lambda r: CONFIGS.index(r["config"])):
                    print(f"    {r['config']:12} {_verdict(item, r)}", flush=True)
    return runs, True


def _verdict(item: dict[str, Any], r: dict[str, Any]) -> str:
    if r["called"]:
        what = ",".join(r["names"]) + ("" if r["valid_arguments"] else " INVALID-ARGS")
        what += " " + " ".join(a[:80] for a in r["arguments"])
    else:
        what = ("MALFORMED " if r["malformed"] else "text ") + repr(r["content"][:80])
    ok = r["right_and_valid"] if item["expected_tool"] else not r["called"]
    return f"{'ok ' if ok else 'BAD'} {r['seconds']:6.1f}s {what}"


def summarize(
    model: str, config: str, runs: list[dict[str, Any]], items: list[dict[str, Any]]
) -> dict[str, Any]:
    mine = {r["item"]: r for r in runs if r["model"] == model and r["config"] == config}
    tool = [mine[i["id"]] for i in items if i["expected_tool"] and i["id"] in mine]
    none = [mine[i["id"]] for i in items if not i["expected_tool"] and i["id"] in mine]
    every = tool + none

    def share(rs: list[dict[str, Any]], key: str) -> float:
        return sum(bool(r[key]) for r in rs) / len(rs) if rs else float("nan")

    by_id = {i["id"]: i for i in items}
    meant = [
        score(by_id[r["item"]], list(zip(r["names"], r["arguments"], strict=True)))
        if r["called"]
        else score(by_id[r["item"]], meant_calls(r["content"]))
        for r in every
    ]
    meant_tool, meant_none = meant[: len(tool)], meant[len(tool) :]

    tokens = [r["completion_tokens"] for r in every if r["completion_tokens"] is not None]
    return {
        "model": model,
        "config": config,
        "tool_prompts": len(tool),
        "no_tool_prompts": len(none),
        "right_name": share(tool, "right_name"),
        "valid_arguments": share(tool, "valid_arguments"),
        "right_and_valid": share(tool, "right_and_valid"),
        "right_values": share(tool, "right_values"),
        "missed_call": sum(not r["called"] for r in tool),
        "false_call": share(none, "called"),
        "malformed": sum(r["malformed"] for r in every),
        "unoffered": sum(bool(r.get("unoffered")) for r in every),
        "meant_right_and_valid": share(meant_tool, "right_and_valid"),
        "meant_false_call": share(meant_none, "called"),
        "cut_by_max_tokens": sum(r["finish_reason"] == "length" for r in every),
        "mean_completion_tokens": statistics.mean(tokens) if tokens else float("nan"),
        "mean_seconds": statistics.mean(r["seconds"] for r in every) if every else float("nan"),
    }


def refusals(models: list[str], logs: Path) -> dict[str, str]:
    """What the gateway answers a tools request for each ladder model that does not call tools."""
    out: dict[str, str] = {}
    item = load_items(False)[0]
    with running_gateway(logs, name="no-tools") as gw, httpx.Client(timeout=300) as client:
        for model in models:
            body = {"model": model, "messages": [{"role": "user", "content": item["prompt"]}]}
            r = client.post(gw.url + "/v1/chat/completions", json={**body, "tools": item["tools"]})
            error = r.json().get("error", {}) if r.status_code != 200 else {}
            out[model] = f"{r.status_code} {error.get('param')}: {error.get('message', '')[:160]}"
            print(f"  {model}: {out[model]}", flush=True)
    return out


def pct(x: float) -> str:
    return fmt(100 * x, 0) + " %"


def main() -> int:
    p = script.parser(__doc__, area="tools", quick="10 prompts (8 with a tool, 2 without)")
    catalog = Catalog(Settings())
    callers = [m for m in LADDER_DEFAULT if catalog.get(m).tools]
    # the installed local models that do not call tools: each gets one tools request
    others = [s.name for s in catalog if not s.tools and s.pullable and catalog.is_installed(s)]
    p.add_argument("--models", default=",".join(callers), help="comma-separated catalog names")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, every server")
    p.add_argument("--max-tokens", type=int, default=150, help="per reply")
    p.add_argument(
        "--resume",
        type=Path,
        help="a JSONL file: each finished prompt's runs are appended to it, and the prompts "
        "it already holds are not asked again (the results cover both)",
    )
    p.add_argument(
        "--time-limit-s",
        type=float,
        default=math.inf,
        help="start no prompt after this many seconds; the results cover the prompts done",
    )
    args = p.parse_args()
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if not catalog.get(m).tools:
            raise SystemExit(f"bench: {m} does not call tools (GET /v1/models says tools: false)")
        model_path(m)
    items = load_items(args.quick)
    run = script.start("tool_call_check", "Tool-call validity, tool_choice auto", args)
    earlier = len(done_before(args.resume))
    with scratch_dir() as logs:
        refused = refusals(others, logs)
        runs, complete = run_all(models, items, args, logs)
    ids = {r["item"] for r in runs if r["model"] in models}
    items = [i for i in items if i["id"] in ids]
    summary = [summarize(m, c, runs, items) for m in models for c in CONFIGS]
    rows = [
        [
            s["model"],
            s["config"],
            pct(s["right_and_valid"]),
            pct(s["right_name"]),
            pct(s["valid_arguments"]),
            pct(s["right_values"]),
            str(s["missed_call"]),
            pct(s["false_call"]),
            str(s["malformed"]),
            str(s["unoffered"]),
            pct(s["meant_right_and_valid"]),
            pct(s["meant_false_call"]),
            fmt(s["mean_completion_tokens"], 1),
            fmt(s["mean_seconds"], 2),
        ]
        for s in summary
    ]
    rows += [[m, "(no tools)", *["-"] * 11, refused[m][:3]] for m in refused]
    n_tool = sum(1 for i in items if i["expected_tool"])
    asked = len(load_items(args.quick))
    resumed = [f"{earlier} of the {len(runs)} runs were read from {args.resume}"] if earlier else []
    partial = resumed + (
        []
        if complete
        else [
            f"PARTIAL: stopped by --time-limit-s after {len(items)} of {asked} prompts"
            " (the first ones in the file; --resume continues)"
        ]
    )
    run.finish(
        {
            "items": len(items),
            "complete": complete,
            "runs_from_resume_file": earlier,
            "max_tokens": args.max_tokens,
            "threads": args.threads,
            "summary": summary,
            "no_tools": refused,
            "runs": runs,
        },
        headers=[
            "model",
            "config",
            "right tool + valid args",
            "right tool",
            "valid args",
            "right values",
            "no call",
            "false calls",
            "malformed",
            "unoffered",
            "as meant: right + valid",
            "as meant: false calls",
            "mean tokens",
            "s / prompt",
        ],
        rows=rows,
        notes=[
            *partial,
            f"{n_tool} prompts a tool answers and {len(items) - n_tool} none does "
            f"({DATA.relative_to(BENCH_DIR.parent)}), 2-4 functions offered each, tool_choice "
            f"auto, greedy, non-streamed, max_tokens {args.max_tokens}, {args.threads} threads "
            "on every server, one slot each (prompt prefixes reused), the three configurations "
            "in turn prompt by prompt; prompts sharing a tool set come in a row",
            "grammar / no grammar: smallfirst with tool_call_grammar true / false; "
            "llama-server: llama.cpp's llama-server --jinja (same llama.cpp, same GGUF)",
            "right tool: every call names the expected function; valid args: every call's "
            "arguments validate against its function's schema (jsonschema_rs); right values: "
            "also the argument values the prompt states; no call: tool prompts answered in "
            "text; false calls: share of the no-tool prompts with a call; malformed: replies "
            "without a call whose text looks like one; unoffered: replies whose tool_calls name a "
            "function that was not offered; as meant: the same with the JSON calls "
            "found in such text (bare, fenced or in other tags) read as calls, what the model "
            "meant whether or not the server parsed it; s / prompt: wall time per request",
            "the last column of a (no tools) row is the HTTP status the gateway answered",
        ],
        title="Tool-call validity (tool_choice auto)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
