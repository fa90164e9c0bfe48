"""json_schema: the share of schema-valid replies with the grammar and without, and its cost.

For each model (default SmolLM2-135M and Qwen2.5-Coder-0.5B; ``--models``) one gateway runs
(``smallfirst serve``, default engine, ``--threads``). Each of the 50 committed prompts
(``bench/data/structured/json_schema_prompts.json``: objects, arrays, enums, nested objects,
tuples, maps, patterns, a date format, a nullable field) is asked twice, streamed, greedy,
``--max-tokens`` at most:

- **on**: ``response_format`` ``json_schema`` (strict), so the gateway's grammar holds the
  reply to the schema;
- **off**: no ``response_format``: no grammar.

Both carry the schema in the system message ("reply with JSON only, matching this schema"),
so the grammar is the only difference. The two sides alternate which goes first, item by
item (interleaved), on the same warm gateway.

Figures per model and side: the share of replies whose whole text parses as JSON, the share
that also validates against the schema (``jsonschema_rs``), for **off** also the lenient
share (the JSON found inside a code fence or surrounding prose), the replies cut by
``max_tokens``, and the median decode rate (tokens/s between the first and the last content
chunk, client side) with the on/off ratio of the medians and the median of the per-item
ratios (items where both replies have at least 8 tokens).

    .venv/bin/python bench/json_schema_check.py [--quick] [--models A,B] [--max-tokens N]
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs

from harness import BENCH_DIR, script
from harness.gateway import model_path, running_gateway
from harness.procs import scratch_dir
from harness.sse import StreamStats, openai_client, stream_chat
from harness.stats import fmt, median, ratio

DATA = BENCH_DIR / "data" / "structured" / "json_schema_prompts.json"
SIDES = ("on", "off")
MIN_TOKENS_FOR_RATE = 8
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def system_prompt(schema: dict[str, Any]) -> str:
    return "Reply with JSON only, no prose, that matches this JSON schema:\n" + json.dumps(
        schema, separators=(",", ":")
    )


def parsed(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def lenient(text: str) -> tuple[bool, Any]:
    """The JSON in a code fence, or between the first opening and the last closing bracket."""
    fence = _FENCE.search(text)
    if fence:
        ok, value = parsed(fence.group(1))
        if ok:
            return ok, value
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    end = max(text.rfind("}"), text.rfind("]"))
    if not starts or end < min(starts):
        return False, None
    return parsed(text[min(starts) : end + 1])


def ask(client: Any, model: str, item: dict[str, Any], side: str, max_tokens: int) -> StreamStats:
    messages = [
        {"role": "system", "content": system_prompt(item["schema"])},
        {"role": "user", "content": item["prompt"]},
    ]
    extra: dict[str, Any] = {}
    if side == "on":
        extra["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": item["id"], "schema": item["schema"], "strict": True},
        }
    return stream_chat(client, model, messages, max_tokens, extra_body=extra)


def judge(item: dict[str, Any], stats: StreamStats) -> dict[str, Any]:
    validator = jsonschema_rs.validator_for(item["schema"])
    ok, value = parsed(stats.text)
    loose_ok, loose = (ok, value) if ok else lenient(stats.text)
    return {
        "parses": ok,
        "valid": ok and validator.is_valid(value),
        "lenient_valid": loose_ok and validator.is_valid(loose),
        "text": stats.text[:400],
        **stats.summary(),
    }


def run_model(
    model: str, items: list[dict[str, Any]], args: Any, logs: Path
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    stem = model.replace(".", "-")
    with (
        running_gateway(logs, name=stem, default_model=model, threads=args.threads) as gw,
        openai_client(gw.base_url) as client,
    ):
        stream_chat(client, model, [{"role": "user", "content": "Hi"}], 2)  # load and warm
        for n, item in enumerate(items):
            order = SIDES if n % 2 == 0 else tuple(reversed(SIDES))
            for side in order:
                result = judge(item, ask(client, model, item, side, args.max_tokens))
                runs.append({"model": model, "item": item["id"], "side": side, **result})
            pair = runs[-2:]
            print(
                f"  {model} {item['id']}: "
                + "  ".join(
                    f"{r['side']} {'valid' if r['valid'] else 'parses' if r['parses'] else 'bad'}"
                    f" {r['tokens']} tok {r['decode_tps']:.1f} tok/s"
                    for r in sorted(pair, key=lambda r: r["side"] != "on")
                ),
                flush=True,
            )
    return runs


def summarize(model: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    mine = {side: [r for r in runs if r["model"] == model and r["side"] == side] for side in SIDES}
    row: dict[str, Any] = {"model": model, "items": len(mine["on"])}
    for side, rs in mine.items():
        n = len(rs) or 1
        rates = [r["decode_tps"] for r in rs if r["tokens"] >= MIN_TOKENS_FOR_RATE]
        row[side] = {
            "parses": sum(r["parses"] for r in rs) / n,
            "valid": sum(r["valid"] for r in rs) / n,
            "lenient_valid": sum(r["lenient_valid"] for r in rs) / n,
            "cut_by_max_tokens": sum(r["finish_reason"] == "length" for r in rs),
            "median_tokens": median([r["tokens"] for r in rs]),
            "median_decode_tps": median(rates) if rates else float("nan"),
        }
    by_item = {(r["item"], r["side"]): r for side in SIDES for r in mine[side]}
    pairs = [
        by_item[(i, "on")]["decode_tps"] / by_item[(i, "off")]["decode_tps"]
        for i in {r["item"] for r in mine["on"]}
        if (i, "off") in by_item
        and min(by_item[(i, s)]["tokens"] for s in SIDES) >= MIN_TOKENS_FOR_RATE
        and by_item[(i, "off")]["decode_tps"] > 0
    ]
    row["tps_ratio_of_medians"] = ratio(
        row["on"]["median_decode_tps"], row["off"]["median_decode_tps"]
    )
    row["tps_median_item_ratio"] = statistics.median(pairs) if pairs else float("nan")
    row["rate_pairs"] = len(pairs)
    return row


def main() -> int:
    p = script.parser(__doc__, area="structured", quick="10 prompts")
    p.add_argument(
        "--models",
        default="smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct",
        help="comma-separated catalog names",
    )
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    p.add_argument("--max-tokens", type=int, default=128, help="per reply")
    args = p.parse_args()
    models = [m for m in args.models.split(",") if m]
    for m in models:
        model_path(m)
    items = json.loads(DATA.read_text())
    if args.quick:
        items = items[:10]
    run = script.start("json_schema_check", "json_schema: valid share and grammar cost", args)
    runs: list[dict[str, Any]] = []
    with scratch_dir() as logs:
        for model in models:
            runs += run_model(model, items, args, logs)
    summary = [summarize(m, runs) for m in models]
    rows = [
        [
            s["model"],
            fmt(100 * s["on"]["valid"], 0) + " %",
            fmt(100 * s["off"]["parses"], 0) + " %",
            fmt(100 * s["off"]["valid"], 0) + " %",
            fmt(100 * s["off"]["lenient_valid"], 0) + " %",
            f"{s['on']['cut_by_max_tokens']} / {s['off']['cut_by_max_tokens']}",
            fmt(s["on"]["median_decode_tps"], 1),
            fmt(s["off"]["median_decode_tps"], 1),
            fmt(s["tps_ratio_of_medians"]),
            fmt(s["tps_median_item_ratio"]),
        ]
        for s in summary
    ]
    run.finish(
        {"items": len(items), "max_tokens": args.max_tokens, "summary": summary, "runs": runs},
        headers=[
            "model",
            "valid (grammar)",
            "parses (no grammar)",
            "valid (no grammar)",
            "valid lenient (no grammar)",
            "cut by max_tokens on / off",
            "tok/s on",
            "tok/s off",
            "on/off (medians)",
            "on/off (median per item)",
        ],
        rows=rows,
        notes=[
            f"{len(items)} prompts with schemas ({DATA.relative_to(BENCH_DIR.parent)}), "
            f"greedy, streamed, max_tokens {args.max_tokens}, {args.threads} threads; the "
            "schema is in the system message on both sides, the grammar only on 'on'; the "
            "sides alternate which goes first, item by item",
            "valid: the whole reply parses and validates (jsonschema_rs); lenient: the JSON "
            "inside a code fence or surrounding prose; tok/s: client-side decode rate "
            f"(replies of at least {MIN_TOKENS_FOR_RATE} tokens)",
        ],
        title="json_schema: schema-valid replies with and without the grammar",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
