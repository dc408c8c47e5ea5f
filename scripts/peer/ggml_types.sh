#!/usr/bin/env bash
# SmolLM2-135M requantized by llama-quantize to ggml types QuantLM stores natively (default:
# Q5_0 Q5_1 IQ4_XS Q3_K_M Q2_K; TYPES="..." to choose), each converted with `convert --type keep`
# (every block copied unchanged): file bytes against the GGUF's, perplexity (llama.cpp protocol,
# 512-token chunks of WikiText-2, first $CHUNKS) against llama-perplexity on the same GGUF, and
# ROUNDS alternating llama-bench / run bench rounds (2 threads, prefill 512, decode 128).
# The only SmolLM2 GGUF fetched is Q4_1 (scripts/fetch_models.sh), so the files are requantized
# from it (--allow-requantize). Rows of 576 are not whole 256-weight blocks: llama-quantize stores
# those matrices of the K / IQ4_XS files as IQ4_NL (its fallback), so those types are mixes.
# Needs scripts/peer/build_llamacpp.sh's build and a release build of QuantLM.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${QUANTLM_SHARED:-../shared}
PEER=${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}/build/bin
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
TYPES=${TYPES:-Q5_0 Q5_1 IQ4_XS Q3_K_M Q2_K}
CHUNKS=${CHUNKS:-20}
ROUNDS=${ROUNDS:-1}
OUT=${OUT:-/tmp/quantlm-ggml-types}
WIKI=$SHARED/data/wikitext-2-raw/wiki.test.raw
B=.build/release
src=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
for f in "$src" "$WIKI" "$PEER/llama-quantize" "$PEER/llama-perplexity" "$PEER/llama-bench" "$B/convert" "$B/run"; do
  [ -e "$f" ] || { echo "missing $f" >&2; exit 1; }
done
mkdir -p "$OUT"
for t in $TYPES; do
  g=$MODELS/SmolLM2-135M-Instruct.$t-from-Q4_1.gguf
  [ -f "$g" ] || "$PEER/llama-quantize" --allow-requantize "$src" "$g" "$t" 2 >/dev/null
  q=$OUT/smol-$t.qlm
  $B/convert "$g" -o "$q" --type keep --json > "$OUT/convert-$t.json"
  python3 - "$g" "$q" "$OUT/convert-$t.json" "$t" <<'PY'
import json, os, sys
g, q, j, t = sys.argv[1:]
c = json.load(open(j))
gb, qb = os.path.getsize(g), os.path.getsize(q)
print(f"{t}: GGUF {gb} bytes, .qlm {qb} bytes ({qb / gb:.4f}); {len(c['passthrough_tensors'])} tensors copied, converted {c['converted_tensors'] or 'none'}")
PY
done
for t in $TYPES; do
  g=$MODELS/SmolLM2-135M-Instruct.$t-from-Q4_1.gguf
  lp=$("$PEER/llama-perplexity" -m "$g" -f "$WIKI" -c 512 --chunks "$CHUNKS" -t 2 2>&1 | grep -o "Final estimate: PPL = [0-9.]*" | grep -o "[0-9.]*$")
  qp=$($B/run perplexity "$OUT/smol-$t.qlm" --text "$WIKI" --protocol chunks --ctx 512 --chunks "$CHUNKS" --threads 2 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['models'][0]['perplexity'])")
  python3 -c "import sys; l, q = map(float, sys.argv[1:]); print(f'$t: perplexity llama.cpp {l:.4f} QuantLM {q:.4f} ratio {q / l:.5f}')" "$lp" "$qp"
done
for r in $(seq "$ROUNDS"); do
  for t in $TYPES; do
    g=$MODELS/SmolLM2-135M-Instruct.$t-from-Q4_1.gguf
    "$PEER/llama-bench" -m "$g" -t 2 -p 512 -n 128 -r 3 -o json > "$OUT/llama-$t-$r.json" 2>/dev/null
    $B/run bench "$OUT/smol-$t.qlm" --threads 2 --prompt-tokens 512 --gen-tokens 1 --reps 3 --json > "$OUT/qlm-pp-$t-$r.json" 2>/dev/null
    $B/run bench "$OUT/smol-$t.qlm" --threads 2 --prompt-tokens 1 --gen-tokens 128 --reps 3 --json > "$OUT/qlm-tg-$t-$r.json" 2>/dev/null
    python3 - "$OUT/llama-$t-$r.json" "$OUT/qlm-pp-$t-$r.json" "$OUT/qlm-tg-$t-$r.json" "$r" "$t" <<'PY'
import json, sys
ll = json.load(open(sys.argv[1])); p = json.load(open(sys.argv[2])); g = json.load(open(sys.argv[3]))
pp = next(x["avg_ts"] for x in ll if x["n_prompt"] > 0); tg = next(x["avg_ts"] for x in ll if x["n_gen"] > 0)
qp = p["prefill_tokens_per_second"]["median"]; qt = g["decode_tokens_per_second"]["median"]
print(f"round {sys.argv[4]} {sys.argv[5]}: prefill 512 llama.cpp {pp:.1f} QuantLM {qp:.1f} ratio {qp / pp:.2f} | decode 128 llama.cpp {tg:.1f} QuantLM {qt:.1f} ratio {qt / tg:.2f}")
PY
  done
done
uptime
