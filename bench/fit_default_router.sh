#!/usr/bin/env bash
# The router shipped in the package, and its held-out report, from the committed evaluation
# baseline (bench/results/evals/baseline.jsonl.gz): anyone can re-make both from the repo.
#
#   bash bench/fit_default_router.sh
#
# Writes src/smallfirst/routing/default_router.json.gz (what `auto` uses until a router is
# fitted locally) and bench/results/routing/{report.md,report.json,routing.png}.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RESULTS=bench/results/evals/baseline.jsonl.gz
ROUTER=src/smallfirst/routing/default_router.json.gz
OUT=bench/results/routing
mkdir -p "$OUT"
"$BIN/smallfirst" router fit --results "$RESULTS" --seed 0 --save-as "$ROUTER" | tee "$OUT/fit.txt"
"$BIN/smallfirst" router eval --router "$ROUTER" --results "$RESULTS" --out "$OUT" | tee "$OUT/eval.txt"
