#!/usr/bin/env bash
# The main job on a machine with ../shared: build, convert stories260K to f32, q8_0 and q4_0,
# generate text, and compare the quantized files against the f32 original.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${QUANTLM_SHARED:-../shared}
[ -d "$SHARED/models/stories260K" ] || { echo "error: $SHARED/models/stories260K not found (set QUANTLM_SHARED)" >&2; exit 1; }
OUT=${OUT:-work-tmp}
mkdir -p "$OUT"
swift build -c release
B=.build/release
for t in f32 q8_0 q4_0; do
  $B/convert "$SHARED/models/stories260K/stories260K.bin" --tokenizer "$SHARED/models/stories260K/tok512.bin" \
    -o "$OUT/stories260K-$t.qlm" --type "$t" --quiet
done
$B/run generate "$OUT/stories260K-q8_0.qlm" --prompt "Once upon a time" --temperature 0 --max-tokens 120
$B/run compare "$OUT"/stories260K-{f32,q8_0,q4_0}.qlm \
  --text "$SHARED/data/tinystories/tinystories_valid_first1000.txt" --protocol documents --max-docs 50 --ctx 512
