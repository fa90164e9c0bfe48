"""Would a ladder model's embedding of the prompt let the router tell easy items from hard?

The packaged router reads cheap text features, and within a benchmark they barely separate
the reference model's right answers from its wrong ones: that is what limits APGR. A ladder
model's embedding through llama.cpp might separate them better. This script measures what
it would buy before anything is built into the router: the same
split, the same trainer and the same held-out evaluation, once with the cheap features and
once with the cheap features plus a PCA of the embedding, side by side.

Embedding: the last user message (the question itself; MMLU's five shots are earlier
turns), mean-pooled over tokens by llama.cpp, from ``--embedder`` (default SmolLM2-135M,
the cheapest), L2-normalised, then reduced to ``--dims`` principal components fitted on the
training split only. Embeddings are cached under the data directory by prompt hash, so a
stopped run resumes.

    .venv/bin/python bench/embedding_router_check.py [--embedder MODEL] [--dims 64]

Writes ``bench/results/routing/embedding_router_check-<stamp>.{md,json}``; the figures are in
bench/README.md. A measurement, not a feature: the router does not embed anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from harness import script
from harness.gateway import LADDER_DEFAULT, model_path
from harness.results import results_dir
from harness.stats import fmt

DEFAULT_RESULTS = results_dir("evals") / "baseline.jsonl.gz"
MAX_CHARS = 2000  # the head of a long message is enough to say what it is about


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = script.parser(__doc__, area="routing")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="exported results")
    p.add_argument("--embedder", default=LADDER_DEFAULT[0], help="catalog model that embeds")
    p.add_argument("--dims", type=int, default=64, help="principal components kept")
    p.add_argument("--seed", type=int, default=0, help="the split's seed")
    return p.parse_args(argv)


def last_user_text(messages: Any) -> str:
    users = [m.content for m in messages if m.role == "user"]
    return (users[-1] if users else "")[:MAX_CHARS]


def embed_all(texts: dict[str, str], model: str, cache: Path) -> dict[str, np.ndarray]:
    """``{prompt hash: unit vector}``, computing only what the cache lacks (saved as it goes)."""
    import llama_cpp

    done: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache) as z:
            done = {k: z[k] for k in z.files}
    todo = [k for k in texts if k not in done]
    if todo:
        llm = llama_cpp.Llama(
            str(model_path(model)),
            embedding=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            n_ctx=1024,
            n_batch=1024,
            n_threads=2,
            verbose=False,
        )
        started = time.perf_counter()
        for n, key in enumerate(todo, 1):
            vector = np.asarray(llm.embed(texts[key], truncate=True), dtype=np.float64)
            done[key] = vector / (np.linalg.norm(vector) or 1.0)
            if n % 200 == 0 or n == len(todo):
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, **done)  # type: ignore[arg-type]  # the stub lets **kwds fill allow_pickle
                rate = n / (time.perf_counter() - started)
                print(f"embedded {n}/{len(todo)} ({rate:.1f}/s)", file=sys.stderr, flush=True)
    return done


def with_embedding(table: Any, vectors: np.ndarray, train_rows: np.ndarray, dims: int) -> Any:
    """The table with ``dims`` principal components (fitted on ``train_rows``) appended."""
    mean = vectors[train_rows].mean(axis=0)
    _, _, vt = np.linalg.svd(vectors[train_rows] - mean, full_matrices=False)
    components = (vectors - mean) @ vt[:dims].T
    components /= components[train_rows].std(axis=0) + 1e-9
    return dataclasses.replace(table, features=np.hstack([table.features, components]))


def summarise(evaluation: Any) -> dict[str, Any]:
    predictive = evaluation.curve("predictive").metrics["energy"]
    point = next(
        p
        for p in evaluation.calibrated
        if p.strategy == "predictive" and p.policy == "auto:quality=0.95"
    )
    return {
        "apgr_energy": predictive.apgr,
        "cpt50_energy": predictive.cpt50,
        "auto_quality_ratio": point.quality_ratio,
        "auto_energy_fraction": point.energy_fraction,
        "auc": evaluation.discrimination,
    }


def main(argv: Sequence[str] | None = None) -> int:
    from smallfirst.routing import strategies
    from smallfirst.routing.training.splits import split
    from smallfirst.routing.training.table import build_table, load_prompts
    from smallfirst.routing.training.train import DEFAULT_HELDOUT, train
    from smallfirst.settings import load_settings
    from smallfirst.store.eval_results import read_export

    args = parse_args(argv)
    run = script.start(
        "embedding_router_check", f"Cheap features against cheap + {args.embedder} embedding", args
    )
    settings = load_settings()
    results = list(read_export(args.results))
    prompts = load_prompts({r.benchmark for r in results}, settings)
    table = build_table(results, prompts.messages, None, prefixes=prompts.prefixes)
    texts = {
        h: last_user_text(prompts.messages[k])
        for h, k in zip(table.prompt_hashes, table.keys, strict=True)
    }
    cache = settings.data_dir / "cache" / f"embeddings-{args.embedder}.npz"
    started = time.perf_counter()
    vectors_by_hash = embed_all(texts, args.embedder, cache)
    embed_s = time.perf_counter() - started
    vectors = np.stack([vectors_by_hash[h] for h in table.prompt_hashes])
    # the split train() makes, so that the PCA never sees a held-out prompt
    train_rows = split(table, DEFAULT_HELDOUT, args.seed).train
    widened = with_embedding(table, vectors, train_rows, args.dims)

    runs: dict[str, dict[str, Any]] = {}
    for name, data in (
        ("cheap features", table),
        (f"+ {args.embedder} embedding ({args.dims} dims)", widened),
    ):
        print(f"training on {name}", file=sys.stderr, flush=True)
        # The routers check their width against the prompt featurizer's, which this
        # measurement widens on purpose; the check guards saved artifacts, not this.
        with mock.patch.object(strategies, "N_PROMPT_FEATURES", data.features.shape[1]):
            _, evaluation = train(data, seed=args.seed)
        runs[name] = summarise(evaluation)

    reference = table.models[-1]
    benchmarks = sorted(next(iter(runs.values()))["auc"])
    headers = ["features", "APGR (J)", "auto: quality", "auto: energy"] + [
        f"AUC {b}" for b in benchmarks
    ]
    rows = []
    for name, r in runs.items():
        rows.append(
            [
                name,
                fmt(r["apgr_energy"], 3),
                f"{100 * r['auto_quality_ratio']:.1f}%",
                f"{100 * r['auto_energy_fraction']:.1f}%",
                *[fmt(r["auc"][b].get(reference), 2) for b in benchmarks],
            ]
        )
    run.finish(
        {
            "results": str(args.results),
            "embedder": args.embedder,
            "dims": args.dims,
            "seed": args.seed,
            "items": len(table),
            "embed_s": embed_s,
            "runs": runs,
        },
        headers=headers,
        rows=rows,
        notes=[
            f"{len(table)} items of `{args.results.name}`, split with seed {args.seed} (75% "
            "train, 25% held out); L2 penalties chosen out-of-fold for each feature set.",
            f"AUC: ROC AUC of the reference model's ({reference}) predicted P(correct) on the "
            "held-out items of each benchmark (0.5 is chance).",
            "auto: `auto:quality=0.95` on the held-out items, accuracy and energy as shares "
            "of the reference's.",
            f"Embedding time for items not yet cached: {embed_s:.0f} s.",
        ],
        title=f"Does a {args.embedder} embedding help the router? (held-out, same split)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
