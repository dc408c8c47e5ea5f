#!/usr/bin/env bash
# `run serve` with and without --speculative lookup on SmolLM2-135M (the shipped Q4_1 kept as is),
# same load: scripts/bench/serve_load.py --task repeat (ChatML "repeat this story word for word"
# prompts, greedy, MAXTOK tokens), 1 and 4 concurrent streaming clients x REQUESTS requests; the
# two servers alternate ROUNDS times. Needs scripts/fetch_models.sh and ../shared.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
OUT=${OUT:-/tmp/quantlm-spec}
REQUESTS=${REQUESTS:-10} MAXTOK=${MAXTOK:-128} ROUNDS=${ROUNDS:-2} CLIENTS=${CLIENTS:-1,4}
PORT=18093
mkdir -p "$OUT"
Q=$OUT/smollm2-keep.qlm
[ -f "$Q" ] || .build/release/convert "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" -o "$Q" --type keep --quiet > /dev/null
for r in $(seq "$ROUNDS"); do
  for mode in plain lookup; do
    extra=(); [ $mode = lookup ] && extra=(--speculative lookup)
    .build/release/run serve "$Q" --port $PORT --parallel 4 --ctx 512 --threads 2 "${extra[@]}" > "$OUT/serve-$mode.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.2; done
    python3 scripts/bench/serve_load.py --url "http://127.0.0.1:$PORT" --model "$(basename "$Q")" --pid $pid --clients "$CLIENTS" \
      --requests "$REQUESTS" --max-tokens "$MAXTOK" --task repeat --label "round $r $mode"
    kill -TERM $pid; wait $pid || true
  done
done
