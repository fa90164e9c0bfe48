"""Does EvalPlus's exact chat prompt close Qwen-0.5B's HumanEval gap? (issue #4's check)

The check behind the HumanEval loader's pre-filled prompt (``smallfirst.evals.benchmarks``);
bench/README.md has its figures. EvalPlus's ``make_raw_chat_prompt`` ends the prompt inside
the assistant turn with "Below is a Python script with a self-contained function that
solves the problem and passes corresponding tests:\\n```python\\n", so the model starts
writing code at once. This script drives llama.cpp directly with that prompt (same GGUF,
greedy, 768 tokens, stop at the closing fence) and scores with the harness's own code
scorer. Resumable: items already in the output file are skipped.

    .venv/bin/python bench/humaneval_prefill_check.py qwen2.5-coder-0.5b-instruct

Prints accuracy on the items done beside the accuracy of the run ``baseline`` in the
database on the same items (the prompt that run used), and writes
``bench/results/evals/prefill-check-<model>.jsonl`` (one line per item).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import script
from harness.gateway import model_path
from harness.procs import install_signal_handlers
from smallfirst.evals.benchmarks import load
from smallfirst.evals.code_benchmarks import EVALPLUS_INSTRUCTION
from smallfirst.evals.scorers import score_code
from smallfirst.settings import Settings

RESPONSE_PREFIX = (
    "Below is a Python script with a self-contained function that solves the problem and "
    "passes corresponding tests:"
)


def generate(model: str, out: Path, settings: Settings, limit: int | None) -> dict[str, Any]:
    """Pre-filled completions of the HumanEval items not yet in ``out``; all rows by item."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = llama_cpp.Llama(
        model_path=str(model_path(model)), n_ctx=4096, n_threads=2, n_threads_batch=2, verbose=False
    )
    tokenizer = llm._model
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=tokenizer.token_get_text(tokenizer.token_eos()),
        bos_token=tokenizer.token_get_text(tokenizer.token_bos())
        if tokenizer.token_bos() != -1
        else "",
    )
    done = {json.loads(line)["id"]: json.loads(line) for line in out.open()} if out.exists() else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        for item in load("humaneval", settings)[:limit]:
            if item.item_id in done:
                continue
            assert item.code_prompt is not None
            user = f"{EVALPLUS_INSTRUCTION}\n```\n{item.code_prompt.strip()}\n```"
            prompt = formatter(messages=[{"role": "user", "content": user}]).prompt
            prompt += f"{RESPONSE_PREFIX}\n```python\n"
            tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
            started = time.perf_counter()
            reply: Any = llm.create_completion(
                tokens, max_tokens=768, temperature=0.0, top_k=1, stop=["\n```"]
            )
            text = reply["choices"][0]["text"]
            row = {"id": item.item_id, "text": text, "s": time.perf_counter() - started}
            f.write(json.dumps(row) + "\n")
            f.flush()
            done[item.item_id] = row
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = script.parser(__doc__, area="evals")
    parser.add_argument("model", help="catalog name of a chat model")
    parser.add_argument("--limit", type=int, help="stop after this many items")
    args = parser.parse_args(argv)
    install_signal_handlers()
    settings = Settings()
    done = generate(
        args.model, args.out / f"prefill-check-{args.model}.jsonl", settings, args.limit
    )
    by_id = {i.item_id: i for i in load("humaneval", settings)}
    right = {
        i: score_code(by_id[i], f"```python\n{r['text']}\n```").correct for i, r in done.items()
    }
    db = sqlite3.connect(settings.db_path)
    base = dict(
        db.execute(
            "SELECT item_id, correct FROM eval_results WHERE run_id = 'baseline' "
            "AND benchmark = 'humaneval' AND model = ?",
            (args.model,),
        ).fetchall()
    )
    same = [i for i in right if i in base]
    n = len(same)
    if not n:
        print(f"{args.model}: {len(right)} items done; the run 'baseline' has none of them")
        return 0
    print(
        f"{args.model}, {n} HumanEval items: EvalPlus prefill {sum(right[i] for i in same)}/{n} "
        f"({100 * sum(right[i] for i in same) / n:.1f}%), baseline prompt "
        f"{sum(base[i] for i in same)}/{n} ({100 * sum(base[i] for i in same) / n:.1f}%); "
        f"right only with prefill {sum(right[i] and not base[i] for i in same)}, "
        f"only with the baseline prompt {sum(base[i] and not right[i] for i in same)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
