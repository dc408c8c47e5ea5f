#!/usr/bin/env bash
# Decode products against a read of the same bytes (scripts/bench/harness/products_vs_read.c): GPT-2-small's
# 49 decode matrices through qlm_matvec, alternated N times in one process with a sequential read of
# those bytes: products GB/s / read GB/s, median of N pairs (1.0 = as fast as a plain read).
#
#   scripts/bench/products_vs_read.sh [--base REV] [--rounds R] [--n N] [--threads T] [TYPE ...]
#
# Types default to q8_0 q4_0 q4_0x8. With --base REV the harness is also built from REV's
# Sources/CKernels (git archive into a temporary folder) and the two builds are run alternately,
# R rounds (default 3), so a kernel or scheduling change is measured against the code before it.
# Also prints what an empty pool job costs (scripts/bench/harness/pool_cost.c, this tree). Needs clang (or CC) and git.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
base="" rounds=3 n=60 threads=2 types=()
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="${2:?--base needs a revision}"; shift 2;;
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2;;
    --n) n="${2:?--n needs a number}"; shift 2;;
    --threads) threads="${2:?--threads needs a number}"; shift 2;;
    -h|--help) sed -n '2,12p' "$0"; exit 0;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2;;
    *) types+=("$1"); shift;;
  esac
done
for v in "$rounds" "$n" "$threads"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "error: --rounds, --n and --threads take positive integers, got '$v'" >&2; exit 2; }
done
[ ${#types[@]} -gt 0 ] || types=(q8_0 q4_0 q4_0x8)
CC="${CC:-clang}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
build() { # MAIN.c SRC_DIR OUT
  "$CC" -O2 -I"$2/include" -I"$2" -o "$3" "$here/scripts/bench/harness/$1" "$2"/*.c -lpthread -lm
}
build products_vs_read.c "$here/Sources/CKernels" "$tmp/head"
bins=(head)
if [ -n "$base" ]; then
  mkdir -p "$tmp/base-src"
  git -C "$here" archive "$base" Sources/CKernels | tar -x -C "$tmp/base-src" || { echo "error: cannot read Sources/CKernels at $base" >&2; exit 2; }
  build products_vs_read.c "$tmp/base-src/Sources/CKernels" "$tmp/base"
  bins=(base head)
fi
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# head: $(git -C "$here" rev-parse --short HEAD)$(git -C "$here" diff --quiet -- Sources/CKernels || echo ' + uncommitted changes')${base:+, base: $base}; $threads threads, N = $n per run, $rounds rounds"
if [ "$threads" -ge 2 ]; then
  build pool_cost.c "$here/Sources/CKernels" "$tmp/pool_cost"
  "$tmp/pool_cost" "$threads" 100000
fi
for r in $(seq "$rounds"); do
  for t in "${types[@]}"; do
    for b in "${bins[@]}"; do
      line="$("$tmp/$b" "$t" "$threads" "$n")"
      echo "round $r $b: $line"
      echo "$t $b ${line##* }" >> "$tmp/ratios"
    done
  done
done
python3 - "$tmp/ratios" <<'PY'
import sys, statistics as st
v = {}
for l in open(sys.argv[1]):
    t, b, r = l.split()
    v.setdefault((t, b), []).append(float(r))
print("products GB/s / read GB/s, median over rounds (min-max):")
for (t, b), r in v.items():
    print("  %-7s %-4s %.3f (%.3f-%.3f)" % (t, b, st.median(r), min(r), max(r)))
PY
