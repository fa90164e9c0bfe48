"""Which ladder model should embed by default? A small similarity check of each one.

40 triplets written for this check (``bench/data/embedding_triplets.jsonl``): an anchor
sentence, a paraphrase of it, and an unrelated sentence. In 20 (``topic``) the unrelated
sentence is about something else entirely; in the other 20 (``overlap``) it reuses the
anchor's words with another meaning ("the bank raised its rates" / "the river bank"), which
a bag of words gets wrong. A model scores a triplet when the paraphrase is closer to the
anchor than the unrelated sentence (cosine of the unit vectors); the figure is the share
of triplets it scores, with the mean margin (cosine to the paraphrase minus cosine to the
unrelated sentence) beside it. The default is the cheapest model (time per input) whose
share is within one triplet of the best: on 40 triplets one triplet is noise.

Vectors come from smallfirst's own embedding engine (:mod:`smallfirst.engines.embedding`:
llama.cpp's embedding mode, mean pooling, L2-normalised), as ``/v1/embeddings`` serves
them. Cost: all 120 sentences embedded as one request per model, in interleaved rounds
(``--rounds``), median wall time, and milliseconds per input.

    .venv/bin/python bench/embedding_similarity.py [--models a,b] [--rounds 3]

Writes ``bench/results/embeddings/embedding_similarity-<stamp>.{md,json}``; the choice of
``embedding_model`` and its figures are in README.md and bench/README.md.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness import BENCH_DIR, script
from harness.gateway import model_path
from harness.stats import fmt
from smallfirst.catalog import Catalog
from smallfirst.engines.embedding import EmbeddingEngine
from smallfirst.settings import Settings

TRIPLETS = BENCH_DIR / "data" / "embedding_triplets.jsonl"
MODELS = (
    "smollm2-135m-instruct",
    "gemma-3-270m",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-1.5b-instruct",
)


def parse_args(argv: Sequence[str] | None = None) -> Any:
    p = script.parser(__doc__, area="embeddings")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated catalog models")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per model (interleaved)")
    p.add_argument("--triplets", type=Path, default=TRIPLETS)
    return p.parse_args(argv)


def load_triplets(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def open_engine(name: str, settings: Settings) -> tuple[EmbeddingEngine, float]:
    spec = Catalog(settings).get(name)
    engine = EmbeddingEngine(spec, model_path(name), settings)
    started = time.perf_counter()
    engine.load()
    return engine, time.perf_counter() - started


def embed(engine: EmbeddingEngine, texts: list[str]) -> tuple[np.ndarray, float, int]:
    """The unit vectors of ``texts`` as one request, its wall time, and its tokens."""
    started = time.perf_counter()
    tokens = engine.token_lists(texts)
    vectors = asyncio.run(engine.embed(tokens))
    return np.stack(vectors), time.perf_counter() - started, sum(len(t) for t in tokens)


def score(vectors: np.ndarray, triplets: list[dict[str, str]]) -> dict[str, Any]:
    """Per triplet: cosine to the paraphrase and to the unrelated sentence."""
    rows: list[tuple[str, float, float]] = []  # kind, to the paraphrase, to the unrelated
    for i, t in enumerate(triplets):
        a, p, u = vectors[3 * i], vectors[3 * i + 1], vectors[3 * i + 2]
        rows.append((t["kind"], float(a @ p), float(a @ u)))

    def share(kind: str | None) -> float:
        picked = [r for r in rows if kind is None or r[0] == kind]
        return sum(para > unrel for _, para, unrel in picked) / len(picked)

    return {
        "share": share(None),
        "share_topic": share("topic"),
        "share_overlap": share("overlap"),
        "mean_margin": statistics.fmean(para - unrel for _, para, unrel in rows),
        "per_triplet": [{"kind": k, "para": p, "unrel": u} for k, p, u in rows],
    }


def main() -> None:
    args = parse_args()
    run = script.start("embedding_similarity", "Which ladder model embeds best?", args)
    triplets = load_triplets(args.triplets)
    texts = [t[k] for t in triplets for k in ("anchor", "paraphrase", "unrelated")]
    settings = Settings()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    engines: dict[str, EmbeddingEngine] = {}
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        engine, load_s = open_engine(name, settings)
        engines[name] = engine
        vectors, _, tokens = embed(engine, texts)  # also the warm-up
        results[name] = {
            **score(vectors, triplets),
            "n_embd": engine.n_embd,
            "load_s": load_s,
            "tokens": tokens,
            "times_s": [],
        }
    for _ in range(args.rounds):  # interleaved: each round times every model once
        for name in names:
            results[name]["times_s"].append(embed(engines[name], texts)[1])
    for engine in engines.values():
        engine.unload()
    rows = []
    for name in names:
        r = results[name]
        r["median_s"] = statistics.median(r["times_s"])
        rows.append(
            [
                name,
                str(r["n_embd"]),
                f"{r['share']:.0%}",
                f"{r['share_topic']:.0%}",
                f"{r['share_overlap']:.0%}",
                fmt(r["mean_margin"], 3),
                fmt(r["median_s"] * 1000 / len(texts), 1),
            ]
        )
    # one triplet is 2.5 points: within that of the best, the cheapest model is the default
    top = max(results[n]["share"] for n in names)
    near = [n for n in names if results[n]["share"] >= top - 1 / len(triplets) - 1e-9]
    best = min(near, key=lambda n: results[n]["median_s"])
    run.finish(
        {"triplets": len(triplets), "texts": len(texts), "models": results, "best": best},
        headers=[
            "model",
            "dims",
            "paraphrase closer (40)",
            "topic (20)",
            "word overlap (20)",
            "mean margin",
            "ms / input",
        ],
        rows=rows,
        notes=[
            f"{len(triplets)} triplets, {len(texts)} sentences embedded as one request per "
            f"model; time: median of {args.rounds} interleaved rounds, embedding context "
            f"{settings.embedding_n_ctx} tokens, {settings.threads} threads.",
            "margin: cosine(anchor, paraphrase) - cosine(anchor, unrelated), mean over triplets.",
        ],
        verdicts=[
            f"best share {top:.0%}; the cheapest within one triplet of it: {best} "
            "(the default embedding_model)"
        ],
    )


if __name__ == "__main__":
    main()
