#!/usr/bin/env bash
# `run serve` vs llama-server on SmolLM2-135M Q8_0 (the same GGUF weights: QuantLM's file is
# `convert --type q8_0x8` of llama.cpp's Q8_0 GGUF, the same numbers in 8-row groups; QTYPE=keep
# for the q8_0 blocks as stored), one after the other in one run, same load:
# scripts/bench/serve_load.py, 1, 2, 4, 8 concurrent streaming clients x REQUESTS (default 50)
# completions of MAXTOK (default 64) greedy tokens each. Both servers: 8 slots of 512 positions,
# 2 threads (run serve --parallel 8 --ctx 512; llama-server -np 8 -c 4096 -t 2, continuous batching its default). Prints one
# JSON line per level and server. Needs side_by_side.sh's files and ../shared (prompts).
set -euo pipefail
cd "$(dirname "$0")/../.."
PEER=${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}/build/bin
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
OUT=${OUT:-/tmp/quantlm-peer}
REQUESTS=${REQUESTS:-50} MAXTOK=${MAXTOK:-64} CLIENTS=${CLIENTS:-1,2,4,8} ORDER=${ORDER:-"quantlm llama"}
PORT=18091
G=$MODELS/SmolLM2-135M-Instruct.Q8_0-from-Q4_1.gguf
QTYPE=${QTYPE:-q8_0x8}
Q=$OUT/smol-$QTYPE.qlm
[ -f "$Q" ] || .build/release/convert "$G" -o "$Q" --type $QTYPE --quiet > /dev/null
wait_up() { for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && return 0; sleep 0.2; done; echo "error: server did not come up" >&2; return 1; }
for who in $ORDER; do
  if [ "$who" = quantlm ]; then
    .build/release/run serve "$Q" --port $PORT --parallel 8 --ctx 512 --threads 2 > "$OUT/serve-quantlm.log" 2>&1 &
    model=$(basename "$Q")
  else
    "$PEER/llama-server" -m "$G" --port $PORT -np 8 -c 4096 -t 2 > "$OUT/serve-llama.log" 2>&1 &
    model=smol
  fi
  pid=$!
  wait_up
  python3 scripts/bench/serve_load.py --url "http://127.0.0.1:$PORT" --model "$model" --pid $pid --clients "$CLIENTS" \
    --requests "$REQUESTS" --max-tokens "$MAXTOK" --label "$who"
  kill -TERM $pid; wait $pid || true
done
