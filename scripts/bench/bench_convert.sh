#!/usr/bin/env bash
# Conversion throughput on a ~500 MB fp32 checkpoint (GPT-2-small shape, 124M parameters,
# synthetic weights with a fixed seed), as recorded in docs/benchmarks.md. The checkpoint is
# read once first so every conversion starts from the page cache.
#
#   scripts/bench/bench_convert.sh [WORK_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-/tmp/quantlm-bench}"
B="$here/.build/release"
case "$work" in "$here"/*) echo "error: WORK_DIR must be outside the repository" >&2; exit 2;; esac
mkdir -p "$work"
(cd "$here" && swift build -c release >&2)
[ -f "$work/gpt2-small/config.json" ] || python3 "$here/Tests/reference/make_gpt2_checkpoint.py" --out "$work/gpt2-small" --shape small --seed 1 >&2
cat "$work/gpt2-small/model.safetensors" > /dev/null
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for args in "--type q8_0" "--type q4_0" "--type q4_1" "--type f16" "--type q8_0 --zstd 3" "--type q4_0 --zstd 3"; do
  for rep in 1 2 3; do
    # shellcheck disable=SC2086
    "$B/convert" "$work/gpt2-small" -o "$work/convert-bench.qlm" $args --threads "$(nproc)" --json
  done | python3 -c '
import json, sys, statistics
rs = [json.loads(l) for l in sys.stdin]
mbs = [r["mb_per_second"] for r in rs]
r = rs[0]
print("convert %-22s %6.0f MB/s median of 3 (min %.0f, max %.0f); %.1f MB in, %.1f MB out, %.3f bits/weight, disk %.3f" % (
    sys.argv[1], statistics.median(mbs), min(mbs), max(mbs), r["bytes_in"] / 1e6, r["bytes_out"] / 1e6, r["bits_per_weight"], r["stored_bits_per_weight"]))
' "$args"
done
rm -f "$work/convert-bench.qlm"
