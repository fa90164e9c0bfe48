#!/usr/bin/env bash
# The evaluation baseline: every ladder chat model on HumanEval (164), MBPP (500),
# GSM8K (400), ARC-Challenge (400) and MMLU (20 per subject, 1,140), plus OLMES's basic
# skills (50 per subject, 300: easy items, so the router also sees where small models are
# right), run as one resumable run ("baseline"). Stop it at any point and start it again: finished items are skipped.
# After each step the per-item results are exported (gzipped JSON lines) and the report
# rewritten under bench/results/evals/, so partial results can be committed as they come.
#
#   bash bench/run_baseline.sh            # everything, in the order below
#   STEPS="humaneval" bash bench/run_baseline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=bench/results/evals
RUN=baseline
SEED=0
S=smollm2-135m-instruct
Q05=qwen2.5-coder-0.5b-instruct
Q15=qwen2.5-coder-1.5b-instruct
mkdir -p "$OUT"

export_results() {
  "$BIN/smallfirst" eval export --run "$RUN" --out "$OUT/baseline.jsonl.gz"
  "$BIN/smallfirst" eval report --run "$RUN" --format md > "$OUT/baseline-report.md"
  "$BIN/smallfirst" eval report --run "$RUN" --format json > "$OUT/baseline-report.json"
  "$BIN/smallfirst" eval report --run "$RUN" --format table --plot "$OUT/baseline-frontier.png" >/dev/null
}

step() {  # step NAME MODELS BENCHMARKS [LIMIT]
  local name=$1 models=$2 benchmarks=$3 limit=${4:-}
  case " ${STEPS:-all} " in *" all "*|*" $name "*) ;; *) return 0 ;; esac
  echo "== $name: $models on $benchmarks ${limit:+(limit $limit)} $(date -u +%FT%TZ)"
  "$BIN/smallfirst" eval run --run "$RUN" --seed "$SEED" --models "$models" \
    --benchmarks "$benchmarks" ${limit:+--limit "$limit"}
  export_results
}

# HumanEval first for the two Qwen models: their published pass@1 is the check on the harness.
step humaneval "$Q05,$Q15,$S" humaneval
# Then the cheap multiple-choice ARC, GSM8K (the router's hard-math case), MMLU, and MBPP
# last (the most generation per item). The runner is item-major, so a step cut short
# still leaves results paired across the three models.
step arc "$S,$Q05,$Q15" arc-challenge 400
step gsm8k "$S,$Q05,$Q15" gsm8k 400
step basic "$S,$Q05,$Q15" basic-skills 50
step mmlu "$S,$Q05,$Q15" mmlu 20
step mbpp "$S,$Q05,$Q15" mbpp
