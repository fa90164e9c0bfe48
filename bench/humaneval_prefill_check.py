"""Does EvalPlus's exact chat prompt close Qwen-0.5B's HumanEval gap? (issue #4's check)

Kept as the record of the check that led the HumanEval loader to adopt this prompt (it now
does: ``smallfirst.evals.benchmarks``); its "baseline prompt" column means the earlier,
un-prefilled prompt only while the database still holds those results.

The baseline's HumanEval prompt uses EvalPlus's instruction but neither its plain ``` fence
nor its *assistant prefill*: EvalPlus's ``make_raw_chat_prompt`` ends the prompt inside the
assistant turn with "Below is a Python script with a self-contained function that solves
the problem and passes corresponding tests:\\n```python\\n", so the model starts writing code
at once. The gateway cannot prefill an assistant turn, so this script drives llama.cpp
directly (same GGUF, greedy, 768 tokens, stop at the closing fence) and scores with the
harness's own code scorer. Resumable: items already in the output file are skipped.

    .venv/bin/python bench/humaneval_prefill_check.py qwen2.5-coder-0.5b-instruct

Prints accuracy on the items done beside the baseline run's accuracy on the same items
and writes bench/results/evals/prefill-check-<model>.jsonl (one line per item).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from smallfirst.catalog import Catalog
from smallfirst.evals.benchmarks import load
from smallfirst.evals.code_benchmarks import EVALPLUS_INSTRUCTION
from smallfirst.evals.scorers import score_code
from smallfirst.settings import Settings

RESPONSE_PREFIX = (
    "Below is a Python script with a self-contained function that solves the problem and "
    "passes corresponding tests:"
)
OUT = Path(__file__).parent / "results" / "evals"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="catalog name of a chat model")
    parser.add_argument("--limit", type=int, help="stop after this many items")
    args = parser.parse_args()
    settings = Settings()
    catalog = Catalog(settings)
    path = catalog.file_path(catalog.get(args.model))
    if path is None or not path.exists():
        raise SystemExit(f"{args.model} is not installed: smallfirst models pull {args.model}")
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=4096, n_threads=2, n_threads_batch=2, verbose=False
    )
    model = llm._model
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=model.token_get_text(model.token_eos()),
        bos_token=model.token_get_text(model.token_bos()) if model.token_bos() != -1 else "",
    )
    out = OUT / f"prefill-check-{args.model}.jsonl"
    done = {json.loads(line)["id"]: json.loads(line) for line in out.open()} if out.exists() else {}
    items = load("humaneval", settings)
    with out.open("a") as f:
        for item in items[: args.limit]:
            if item.item_id in done:
                continue
            assert item.code_prompt is not None
            user = f"{EVALPLUS_INSTRUCTION}\n```\n{item.code_prompt.strip()}\n```"
            prompt = formatter(messages=[{"role": "user", "content": user}]).prompt
            prompt += f"{RESPONSE_PREFIX}\n```python\n"
            tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
            started = time.perf_counter()
            reply = llm.create_completion(
                tokens, max_tokens=768, temperature=0.0, top_k=1, stop=["\n```"]
            )
            text = reply["choices"][0]["text"]  # type: ignore[index]
            row = {"id": item.item_id, "text": text, "s": time.perf_counter() - started}
            f.write(json.dumps(row) + "\n")
            f.flush()
            done[item.item_id] = row
    by_id = {i.item_id: i for i in items}
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
    print(
        f"{args.model}, {n} HumanEval items: EvalPlus prefill {sum(right[i] for i in same)}/{n} "
        f"({100 * sum(right[i] for i in same) / n:.1f}%), baseline prompt "
        f"{sum(base[i] for i in same)}/{n} ({100 * sum(base[i] for i in same) / n:.1f}%); "
        f"right only with prefill {sum(right[i] and not base[i] for i in same)}, "
        f"only with the baseline prompt {sum(base[i] and not right[i] for i in same)}"
    )


if __name__ == "__main__":
    main()
