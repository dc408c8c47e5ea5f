#!/usr/bin/env bash
# Peak RSS of a 256-token greedy generation, QuantLM vs llama.cpp, same GGUF weights, 2 threads:
# `run generate FILE.qlm --max-tokens 256` against `llama-completion -m FILE.gguf -n 256 --temp 0
# -no-cnv`, each under /usr/bin/time -v. llama.cpp sizes its KV cache from -c (default: the model's
# training context), so it runs at its default and at -c 512; QuantLM's cache holds the
# prompt + 256 positions it needs. Needs side_by_side.sh's files, or GGUFS (below).
#   GGUFS="a.gguf b.gguf ..."  those files instead (e.g. Gemma 3's Q4_K_M), each against QuantLM's
#                              `convert --type keep` of it (every block type QuantLM stores
#                              natively passes through: Q4_K, Q5_K, Q6_K, Q5_0, ...)
set -euo pipefail
cd "$(dirname "$0")/../.."
PEER=${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}/build/bin
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
OUT=${OUT:-/tmp/quantlm-peer}
B=.build/release
mkdir -p "$OUT"
prompt="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
rss() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
measure() { # GGUF QLM LABEL: both tools at llama.cpp's default context and at -c 512
  for ctx in default 512; do
    la=()
    [ $ctx = 512 ] && la=(-c 512)
    /usr/bin/time -v "$PEER/llama-completion" -m "$1" -p "$prompt" -n 256 \
      --temp 0 -no-cnv -t 2 --ignore-eos "${la[@]}" > "$OUT/rss-llama-$3-$ctx.txt" 2> "$OUT/rss-llama-$3-$ctx.err" < /dev/null
    /usr/bin/time -v $B/run generate "$2" --prompt "$prompt" --max-tokens 256 --temperature 0 --threads 2 \
      --ignore-eos > "$OUT/rss-qlm-$3-$ctx.txt" 2> "$OUT/rss-qlm-$3-$ctx.err"
    kv=$(grep -o 'llama_kv_cache: size = [^,]*' "$OUT/rss-llama-$3-$ctx.err" | head -1 || true)
    printf '%s ctx %-7s  peak RSS: llama.cpp %6.1f MB  QuantLM %6.1f MB  (llama.cpp %s)\n' "$3" "$ctx" \
      "$(echo "$(rss "$OUT/rss-llama-$3-$ctx.err") / 1024" | bc -l)" "$(echo "$(rss "$OUT/rss-qlm-$3-$ctx.err") / 1024" | bc -l)" "$kv"
  done
}
if [ -n "${GGUFS:-}" ]; then
  for g in $GGUFS; do
    t=$(basename "$g" .gguf)
    [ -f "$OUT/$t-keep.qlm" ] || $B/convert "$g" -o "$OUT/$t-keep.qlm" --type keep --quiet
    measure "$g" "$OUT/$t-keep.qlm" "$t"
  done
  exit 0
fi
for t in Q8_0 Q4_0; do
  q=q8_0; [ $t = Q4_0 ] && q=q4_0x8
  measure "$MODELS/SmolLM2-135M-Instruct.$t-from-Q4_1.gguf" "$OUT/smol-$q.qlm" "$t"
done
