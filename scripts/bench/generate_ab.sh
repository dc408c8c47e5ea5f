#!/usr/bin/env bash
# Before/after for `run generate`: decode tok/s of two builds of `run` on one model, alternating
# A, B, A, B ... ROUNDS times in one run (greedy, --ignore-eos, 2 threads). Prints each round,
# then the medians and B/A.
#
#   scripts/bench/generate_ab.sh RUN_A RUN_B MODEL.qlm
#   e.g. scripts/bench/generate_ab.sh /work/wt-base/.build/release/run .build/release/run /tmp/smol-q8.qlm
# Env: ROUNDS (8), THREADS (2), TOKENS (128), PROMPT ("Once upon a time").
set -euo pipefail
[ $# -eq 3 ] || { sed -n 2,8p "$0"; exit 2; }
A=$1 B=$2 M=$3
for x in "$A" "$B"; do [ -x "$x" ] || { echo "error: $x is not an executable run binary" >&2; exit 2; }; done
[ -f "$M" ] || { echo "error: $M: no such model file" >&2; exit 2; }
ROUNDS=${ROUNDS:-8} THREADS=${THREADS:-2} TOKENS=${TOKENS:-128} PROMPT=${PROMPT:-Once upon a time}
echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
res=$(mktemp)
for r in $(seq "$ROUNDS"); do
  for side in A B; do
    bin=$A; [ $side = B ] && bin=$B
    tps=$("$bin" generate "$M" --prompt "$PROMPT" --max-tokens "$TOKENS" --temperature 0 --ignore-eos --threads "$THREADS" --json 2>/dev/null \
      | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["result"]["decode_tokens_per_second"])')
    echo "round $r $side decode $tps tok/s"
    echo "$side $tps" >> "$res"
  done
done
python3 - "$res" <<'PY'
import sys, statistics as st
v = {"A": [], "B": []}
for line in open(sys.argv[1]):
    s, x = line.split(); v[s].append(float(x))
a, b = st.median(v["A"]), st.median(v["B"])
print(f"median decode tok/s: A {a:.2f}  B {b:.2f}  B/A {b / a:.3f}")
PY
rm -f "$res"
