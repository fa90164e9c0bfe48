"""Synthetic evaluation results with a known structure, for the routing tests.

Three models, cheapest first: XS right on easy items, S on easy and medium ones, M on most.
An item's difficulty is visible in its prompt (its length, and "hard" topic words), so the
features carry signal. Energy grows with the model and the prompt; cost is proportional
to energy. Some prompts repeat under two ids (as MMLU's do) to exercise grouped splits.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from smallfirst.routing.artifact import ItemKey
from smallfirst.routing.training.table import Table, build_table
from smallfirst.store.eval_results import EvalResult
from smallfirst.types import Message, prompt_hash

MODELS = ("tiny-xs", "small-s", "medium-m")
CAPACITY = (0.35, 0.6, 0.9)  # an item is solved (mostly) when its difficulty is below this
JOULES = (10.0, 40.0, 100.0)
USD_PER_J = 1e-6
BENCHMARKS = ("arith", "prose", "code")
EASY_WORDS = ("apple", "blue", "cat", "sun", "tree", "book", "milk", "door")
HARD_WORDS = ("integral", "theorem", "recursion", "entropy", "manifold", "eigenvalue")


def _prompt(rng: random.Random, benchmark: str) -> tuple[str, float]:
    clauses = rng.randint(1, 8)
    hard = rng.random() < 0.3
    words = HARD_WORDS if hard else EASY_WORDS
    sentences = [" ".join(rng.choice(words) for _ in range(5)) + "." for _ in range(clauses)]
    if benchmark == "arith":
        text = f"What is {rng.randint(1, 99)} + {rng.randint(1, 99)}? " + " ".join(sentences)
    elif benchmark == "code":
        text = "Write a python function that " + " ".join(sentences) + "\n```python\ndef f():\n```"
    else:
        text = "Explain: " + " ".join(sentences)
    difficulty = clauses / 9 + (0.25 if hard else 0.0)
    return text, difficulty


def synthetic(
    n_items: int = 300, seed: int = 0, run_id: str = "synth", benchmark_prefix: str = ""
) -> tuple[list[EvalResult], dict[ItemKey, tuple[Message, ...]]]:
    """Results for every model on ``n_items`` items, and the items' prompts."""
    rng = random.Random(seed)
    results: list[EvalResult] = []
    prompts: dict[ItemKey, tuple[Message, ...]] = {}
    previous: list[tuple[str, float]] = []
    for i in range(n_items):
        benchmark = benchmark_prefix + BENCHMARKS[i % len(BENCHMARKS)]
        if previous and rng.random() < 0.05:
            text, difficulty = rng.choice(previous)  # a duplicate prompt under a new id
            benchmark = benchmark_prefix + BENCHMARKS[0]
        else:
            text, difficulty = _prompt(rng, BENCHMARKS[i % len(BENCHMARKS)])
            previous.append((text, difficulty))
        messages = (Message(role="user", content=text),)
        item_id = f"{benchmark}/{i}"
        prompts[(benchmark, item_id)] = messages
        digest = prompt_hash(messages)
        for model, capacity, joules in zip(MODELS, CAPACITY, JOULES, strict=True):
            p_right = 1 / (1 + math.exp(-(capacity - difficulty) * 14))
            correct = rng.random() < p_right
            # the answer's shape tells (mostly) whether it is right: the output verifier's signal
            looks_right = correct != (rng.random() < 0.15)
            energy_j = joules * (0.8 + 0.4 * rng.random()) * (1 + len(text) / 2000)
            results.append(
                EvalResult(
                    run_id=run_id,
                    benchmark=benchmark,
                    item_id=item_id,
                    model=model,
                    subject=None,
                    prompt_hash=digest,
                    correct=correct,
                    extracted=None,
                    detail=None,
                    output="The answer is: 4." if looks_right else "blah " * 30,
                    prompt_tokens=len(text) // 4,
                    completion_tokens=20,
                    duration_s=0.1,
                    energy_j=energy_j,
                    energy_method="estimated",
                    cost_usd=energy_j * USD_PER_J,
                    co2_g=None,
                    created_at=1_700_000_000.0 + i,
                )
            )
    return results, prompts


def synthetic_table(n_items: int = 300, seed: int = 0) -> Table:
    results, prompts = synthetic(n_items, seed)
    return build_table(results, prompts)


def write_jsonl_benchmark(
    path: Path, prompts: dict[ItemKey, tuple[Message, ...]], benchmark: str
) -> dict[ItemKey, tuple[Message, ...]]:
    """Write the prompts of one benchmark as a jsonl benchmark file; return them re-keyed
    under ``jsonl:<path>`` as :func:`smallfirst.evals.benchmarks.load` names them."""
    import json

    lines = []
    out: dict[ItemKey, tuple[Message, ...]] = {}
    for (b, item_id), messages in prompts.items():
        if b != benchmark:
            continue
        lines.append(json.dumps({"id": item_id, "prompt": messages[0].content, "answer": "x"}))
        out[(f"jsonl:{path}", item_id)] = messages
    path.write_text("\n".join(lines) + "\n")
    return out
