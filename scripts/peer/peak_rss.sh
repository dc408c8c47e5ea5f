#!/usr/bin/env bash
# Peak RSS of a 256-token greedy generation, QuantLM vs llama.cpp, same GGUF weights, 2 threads:
# `run generate FILE.qlm --max-tokens 256` against `llama-completion -m FILE.gguf -n 256 --temp 0
# -no-cnv`, each under /usr/bin/time -v. llama.cpp sizes its KV cache from -c (default: the model's
# 8,192 training context), so it runs at its default and at -c 512; QuantLM's cache holds the
# prompt + 256 positions it needs. Needs side_by_side.sh's files.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEER=${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}/build/bin
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
OUT=${OUT:-/tmp/quantlm-peer}
B=.build/release
prompt="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
rss() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
for t in Q8_0 Q4_0; do
  q=q8_0; [ $t = Q4_0 ] && q=q4_0x8
  for ctx in default 512; do
    la=()
    [ $ctx = 512 ] && la=(-c 512)
    /usr/bin/time -v "$PEER/llama-completion" -m "$MODELS/SmolLM2-135M-Instruct.$t-from-Q4_1.gguf" -p "$prompt" -n 256 \
      --temp 0 -no-cnv -t 2 --ignore-eos "${la[@]}" > "$OUT/rss-llama-$t-$ctx.txt" 2> "$OUT/rss-llama-$t-$ctx.err" < /dev/null
    /usr/bin/time -v $B/run generate "$OUT/smol-$q.qlm" --prompt "$prompt" --max-tokens 256 --temperature 0 --threads 2 \
      --ignore-eos > "$OUT/rss-qlm-$q-$ctx.txt" 2> "$OUT/rss-qlm-$q-$ctx.err"
    kv=$(grep -o 'llama_kv_cache: size = [^,]*' "$OUT/rss-llama-$t-$ctx.err" | head -1 || true)
    printf '%s ctx %-7s  peak RSS: llama.cpp %6.1f MB  QuantLM %6.1f MB  (llama.cpp %s)\n' "$t" "$ctx" \
      "$(echo "$(rss "$OUT/rss-llama-$t-$ctx.err") / 1024" | bc -l)" "$(echo "$(rss "$OUT/rss-qlm-$q-$ctx.err") / 1024" | bc -l)" "$kv"
  done
done
