"""Prefix reuse: time to first token of each turn of a 5-turn chat, with and without reuse.

Two gateways run side by side on the same model (default Qwen2.5-Coder-0.5B), both with the
batched engine (``engine_batching = true``, 4 slots, n_ctx 2048, ``--threads``), one with
``prefix_reuse = true`` (the default) and one with ``prefix_reuse = false`` (every prompt
read in full). In each round, each gateway in turn (the order alternates by round) holds one
5-turn conversation: a system prompt of a few hundred tokens (house rules and worked
examples, as agents and few-shot prompts carry), then five user turns; each turn is a
streamed greedy chat completion of ``--max-tokens`` tokens whose reply is appended to that
gateway's history before the next turn. Each round's conversation has a topic of its own,
so a round finds only the shared system prompt of earlier rounds in the slots.

Figures per side and turn, medians over rounds: time to first token (request sent to first
content chunk: queueing, prompt reading, first sample), prompt tokens and the
``cached_tokens`` the gateway reported.

Target from issue #14: turn 5's time to first token with reuse <= 0.3x without.

    .venv/bin/python bench/prefix_reuse.py [--quick] [--model NAME] [--rounds N]
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from harness import script
from harness.gateway import Gateway, model_path, running_gateway
from harness.procs import scratch_dir
from harness.sse import openai_client, stream_chat
from harness.stats import fmt, median, ratio

SIDES = ("reuse", "no reuse")
TURNS = 5

SYSTEM = """You are the help desk of the Harbour Street lending library. House rules:
1. Answer in at most three sentences, in plain English, without lists.
2. Opening hours are 9:00 to 18:00 on weekdays and 10:00 to 16:00 on Saturdays; closed Sundays.
3. Members may borrow up to eight items for three weeks; renewals are possible twice online.
4. Late returns cost 20 cents per item per day, capped at 5 euros per item.
5. Children under 12 need a guardian's signature to join; membership is free for everyone.
6. The reading room is silent; group rooms can be booked up to a week ahead, two hours a day.
7. Printing costs 10 cents a page in black and white and 50 cents in colour.
8. Never promise what these rules do not say; offer to pass the question to a librarian.

Examples of good answers:
Q: Can I keep a book for a month? A: Loans last three weeks, and you can renew twice online,
so a month is fine if you renew once before the due date.
Q: Is the library open on Sunday? A: No, we are closed on Sundays; on Saturdays we open from
10:00 to 16:00.
Q: My son is nine, can he join? A: Yes, membership is free, and a parent or guardian signs the
form with him at the desk.
Q: How much is a colour print? A: Colour prints cost 50 cents a page, black and white 10 cents.
"""

TOPICS = (
    ("a late book", ["I returned a book five days late.", "What if it was ten items?"]),
    ("group rooms", ["Can I book a group room for Friday?", "For how long?"]),
    ("printing", ["I need to print a 12-page report.", "And if four pages are in colour?"]),
    ("joining", ["My daughter is ten, can she join?", "Does it cost anything?"]),
    ("renewals", ["Can I renew my loans by phone?", "How many times?"]),
)
FOLLOW_UPS = ("Could you say that more briefly?", "Thanks. Anything else I should know?", "Bye!")


def user_turns(round_no: int) -> list[str]:
    topic, first_two = TOPICS[round_no % len(TOPICS)]
    return [f"(Visit {round_no}, about {topic}.) {first_two[0]}", first_two[1], *FOLLOW_UPS]


def conversation(gw: Gateway, model: str, round_no: int, max_tokens: int) -> list[dict[str, Any]]:
    messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
    turns = []
    with openai_client(gw.base_url) as client:
        for text in user_turns(round_no):
            messages.append({"role": "user", "content": text})
            stats = stream_chat(client, model, messages, max_tokens)
            messages.append({"role": "assistant", "content": stats.text})
            turns.append(stats.summary())
    return turns


def main() -> int:
    p = script.parser(__doc__, area="serving", quick="2 rounds, 24 tokens per reply")
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="catalog model name")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, both gateways")
    p.add_argument("--rounds", type=int, help="conversations per side (default 5; quick 2)")
    p.add_argument("--max-tokens", type=int, help="tokens per reply (default 48; quick 24)")
    args = p.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.max_tokens = args.max_tokens or (24 if args.quick else 48)
    model_path(args.model)
    run = script.start("prefix_reuse", "time to first token with and without prefix reuse", args)
    runs: list[dict[str, Any]] = []
    base = {"engine_batching": True, "parallel": 4, "n_ctx": 2048}
    with scratch_dir() as logs, contextlib.ExitStack() as stack:
        gateways = {
            side: stack.enter_context(
                running_gateway(
                    logs,
                    name=side.replace(" ", "-"),
                    settings={**base, "prefix_reuse": side == "reuse"},
                    threads=args.threads,
                )
            )
            for side in SIDES
        }
        for side, gw in gateways.items():  # load and warm each model
            conversation(gw, args.model, -1, 4)
            print(f"  {side}: loaded", flush=True)
        for round_no in range(args.rounds):
            order = SIDES if round_no % 2 == 0 else tuple(reversed(SIDES))
            for side in order:
                turns = conversation(gateways[side], args.model, round_no, args.max_tokens)
                runs.append({"side": side, "round": round_no, "turns": turns})
                print(
                    f"  round {round_no} {side:>8}: TTFT ms "
                    + " ".join(f"{t['ttft_ms']:.0f}" for t in turns)
                    + "; cached "
                    + " ".join(str(t["cached_tokens"]) for t in turns),
                    flush=True,
                )
    rows, summary = [], []
    for turn in range(TURNS):
        row: dict[str, Any] = {"turn": turn + 1}
        for side in SIDES:
            mine = [r["turns"][turn] for r in runs if r["side"] == side]
            row[f"{side}:ttft_ms"] = median([t["ttft_ms"] for t in mine])
            row[f"{side}:prompt_tokens"] = median([t["prompt_tokens"] or 0 for t in mine])
            row[f"{side}:cached_tokens"] = median([t["cached_tokens"] or 0 for t in mine])
        row["ratio"] = ratio(row["reuse:ttft_ms"], row["no reuse:ttft_ms"])
        summary.append(row)
        rows.append(
            [
                str(turn + 1),
                fmt(row["reuse:prompt_tokens"], 0),
                fmt(row["reuse:cached_tokens"], 0),
                fmt(row["reuse:ttft_ms"], 1),
                fmt(row["no reuse:cached_tokens"], 0),
                fmt(row["no reuse:ttft_ms"], 1),
                fmt(row["ratio"]),
            ]
        )
    last = summary[-1]["ratio"]
    verdict = (
        f"{'PASS' if last <= 0.3 else 'MISS'} turn {TURNS}: time to first token with reuse "
        f"{fmt(last)} x without (target <= 0.3)"
    )
    run.finish(
        {"runs": runs, "summary": summary},
        headers=[
            "turn",
            "prompt tokens",
            "cached (reuse)",
            "TTFT ms (reuse)",
            "cached (no reuse)",
            "TTFT ms (no reuse)",
            "reuse / no reuse",
        ],
        rows=rows,
        notes=[
            f"{args.model}, {args.rounds} conversations per side, {args.max_tokens} tokens "
            f"per reply, greedy, {args.threads} threads, medians; the order alternates by round",
            "both gateways: batched engine, 4 slots, n_ctx 2048, response cache off",
        ],
        verdicts=[verdict],
        title="Prefix reuse: time to first token per turn",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
