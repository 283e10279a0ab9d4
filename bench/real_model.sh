#!/usr/bin/env bash
# Every seed system on the real pretrained SmolLM2-135M-Instruct (`smollm2:135m`), sized for 2 CPU cores.
# The figures and timings are in bench/RESULTS.md, section "real model".
#
#   bash bench/real_model.sh all                   # ~70 minutes on 2 cores; or one of:
#   bash bench/real_model.sh subpop|politune|distill|w2s|gradex
#
# subpop is `make demo-real`; politune and gradex reuse its splits and adapter, w2s uses distill's classifier.
set -euo pipefail
cd "$(dirname "$0")/.."
DS=.venv/bin/demoscope
PY=.venv/bin/python
M=smollm2:135m
DEMO=${DEMO:-runs/demo-real}
OUT=${OUT:-runs/real}

# /usr/bin/time reports the driver process only: Ray workers are separate processes.
step() { echo; echo "== $* =="; /usr/bin/time -f "   (started $(date -u +%H:%M), %e s wall, driver peak RSS %M KiB)" "$@"; }

subpop() {
  step "$DS" demo --out "$DEMO" --model "$M"
}

politune() {
  step "$DS" survey-pairs --split "$DEMO/prepare/opnqa_QA_train.parquet" --out "$OUT/pairs/left.jsonl"
  step "$DS" survey-pairs --split "$DEMO/prepare/opnqa_QA_train.parquet" --out "$OUT/pairs/right.jsonl" \
      --toward POLPARTY=Republican --toward POLIDEOLOGY=Conservative --away POLPARTY=Democrat --away POLIDEOLOGY=Liberal
  for side in left right; do
    step "$DS" train --objective dpo --model "$M" --train-file "$OUT/pairs/$side.jsonl" --out "$OUT/dpo-$side" \
        --epochs 1 --lr 5e-4 --batch-size 4 prompt_template=chat --restart
  done
  step "$DS" audit --model "$M" adapters.left="$OUT/dpo-left/adapter" adapters.right="$OUT/dpo-right/adapter" \
      --statements bench/compass_statements.txt --test-file "$DEMO/sampled/opnqa_QA_test.parquet" \
      --max-new-tokens 48 --out "$OUT/audit"
}

distill() {
  step "$DS" distill --synthetic 1200 --teacher "$M" --students bow --students cnn --students hf \
      --lr 5e-3 --epochs 6 --out "$OUT/distill"
}

w2s() {
  mkdir -p "$OUT/sentiment"
  step "$PY" -c "from demoscope.bias.synthetic import sentiment_pairs
sentiment_pairs(400, seed=0).to_json('$OUT/sentiment/pairs.jsonl', orient='records', lines=True)
sentiment_pairs(16, seed=1)[['prompt']].drop_duplicates().to_json('$OUT/sentiment/prompts.jsonl', orient='records', lines=True)"
  step "$DS" train --objective dpo --model "$M" --train-file "$OUT/sentiment/pairs.jsonl" --out "$OUT/dpo-positive" \
      --epochs 1 --lr 5e-4 --batch-size 8 prompt_template=none --restart
  step "$DS" generate --prompts "$OUT/sentiment/prompts.jsonl" --model "$M" --tuned "$M" \
      --tuned-adapter "$OUT/dpo-positive/adapter" --reward-model "$OUT/distill/students/hf-baseline/student" \
      --methods base --methods bon:4 --methods cbs:2,2,4 --methods eft:1.0 --max-new-tokens 12 --out "$OUT/generate"
}

gradex() {
  step "$DS" select --task subpop --model "$M" --adapter "$DEMO/train/adapter" --sources wave \
      --train-file "$DEMO/sampled/opnqa_QA_train.parquet" --val-file "$DEMO/sampled/opnqa_QA_val.parquet" \
      --n-subsets 8 --verify 2 --verify-epochs 1 --verify-lr 1e-3 --verify-workers 2 --verify-batch-size 8 \
      --out "$OUT/select"
}

case "${1:-all}" in
  all) subpop; politune; distill; w2s; gradex ;;
  subpop|politune|distill|w2s|gradex) "$1" ;;
  *) echo "usage: $0 [all|subpop|politune|distill|w2s|gradex]" >&2; exit 2 ;;
esac
