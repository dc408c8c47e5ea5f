#!/usr/bin/env bash
# What decoding T sequences at once costs in the weight products (scripts/bench/harness/rows_cost.c):
# SmolLM2-135M's 211 decode products through qlm_matmul with T activation rows, T = 1 and each T
# asked, alternated N rounds in one process; per T the median pass and its ratio to T = 1.
#
#   scripts/bench/rows_cost.sh [--threads T] [--rounds N] [TYPE] [T ...]     (default q8_0, 2 threads, 5 rounds, T 2 3 4 8)
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
threads=2 rounds=5 type=q8_0 ts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="${2:?--threads needs a number}"; shift 2;;
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2;;
    -h|--help) sed -n '2,6p' "$0"; exit 0;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2;;
    [0-9]*) ts+=("$1"); shift;;
    *) type="$1"; shift;;
  esac
done
[ ${#ts[@]} -gt 0 ] || ts=(2 3 4 8)
CC="${CC:-clang}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$CC" -O2 -I"$here/Sources/CKernels/include" -I"$here/Sources/CKernels" -o "$tmp/rows_cost" \
  "$here/scripts/bench/harness/rows_cost.c" "$here"/Sources/CKernels/*.c -lpthread -lm
"$tmp/rows_cost" "$type" "$threads" "$rounds" "${ts[@]}"
