#!/usr/bin/env bash
# Reproduces docs/benchmarks-log.md "## zstd layouts (issue 8)" (summary in docs/benchmarks.md): on-disk vs in-memory bits per
# weight for each zstd chunk filter, per type, at zstd levels 3 and 19, on stories260K and a
# synthetic GPT-2-small (random Gaussian weights: compress worse than trained ones).
#
#   scripts/bench/zstd_layouts.sh [OUTDIR]      (default /tmp/zstd_layouts)
#
# Env: STORIES=dir with stories260K.bin + tok512.bin (default /work/shared/models/stories260K),
#      CONVERT=path of a built convert binary (default: build it),
#      TYPES (default "q8_0 q4_0 q4_1 iq4_k16"), L19_FILTERS (filters measured at level 19 on
#      GPT-2; default every candidate — slow: about a minute per filter and type on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/zstd_layouts}
STORIES=${STORIES:-/work/shared/models/stories260K}
TYPES=${TYPES:-"q8_0 q4_0 q4_1 iq4_k16"}
mkdir -p "$OUT"
if [ -n "${CONVERT:-}" ]; then B=$CONVERT; else swift build -c release --product convert >/dev/null; B=.build/release/convert; fi
[ -f "$OUT/g/model.safetensors" ] || python3 Tests/reference/make_gpt2_checkpoint.py --out "$OUT/g" --shape small >/dev/null
for t in $TYPES; do
  [ -f "$OUT/s_$t.qlm" ] || $B model "$STORIES/stories260K.bin" --tokenizer "$STORIES/tok512.bin" --type "$t" -o "$OUT/s_$t.qlm" -q >/dev/null
  [ -f "$OUT/g_$t.qlm" ] || $B model "$OUT/g" --type "$t" -o "$OUT/g_$t.qlm" -q >/dev/null
done
echo "### stories260K"
for t in $TYPES; do $B zstd-bench "$OUT/s_$t.qlm" --levels 3,19 --label "$t"; echo; done
echo "### GPT-2 small (synthetic, random Gaussian weights)"
for t in $TYPES; do
  $B zstd-bench "$OUT/g_$t.qlm" --levels 3 --label "$t"
  if [ -n "${L19_FILTERS:-}" ]; then
    $B zstd-bench "$OUT/g_$t.qlm" --levels 19 --filters "$L19_FILTERS" --label "$t" | tail -n +3
  else
    $B zstd-bench "$OUT/g_$t.qlm" --levels 19 --label "$t" | tail -n +3
  fi
  echo
done
echo "### end to end: convert --zstd 3 with --zstd-filter planes (the default), auto, none"
for m in s g; do for t in $TYPES; do for f in planes auto none; do
  if [ $m = s ]; then in=("$STORIES/stories260K.bin" --tokenizer "$STORIES/tok512.bin"); else in=("$OUT/g"); fi
  $B model "${in[@]}" --type "$t" --zstd 3 --zstd-filter $f -o "$OUT/z_${m}_${t}_$f.qlm" --json -q \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print('$m $t $f: bits/w %.3f in memory, %.3f on disk, file %d bytes, %.1f s, filters %s' % (d['bits_per_weight'], d['stored_bits_per_weight'], d['bytes_out'], d['seconds'], d.get('zstd_filters')))"
done; done; done
