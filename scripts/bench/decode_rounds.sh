#!/usr/bin/env bash
# Decode ratio to the bandwidth probe over several rounds (the host is shared: one run of
# scripts/bench/bench.sh catches one moment). Per round, for q8_0, q4_0 and q4_0x8 on 2 threads:
# 128 prompt + 128 decoded tokens, and llama-bench's tg128 (128 tokens from an empty context).
# Each `run bench` already reports the median over its 5 reps of the rep's decode GB/s ÷ the
# probe reads around that rep; this prints those per round and their median over rounds.
#
#   scripts/bench/decode_rounds.sh [WORK_DIR] [ROUNDS]     (models from scripts/bench/bench.sh; default 5 rounds)
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-/tmp/quantlm-bench}"
rounds="${2:-5}"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "error: ROUNDS must be a positive integer, got '$rounds'" >&2; exit 2; }
B="$here/.build/release"
for t in q8_0 q4_0 q4_0x8; do
  [ -f "$work/gpt2-small-$t.qlm" ] || { echo "error: $work/gpt2-small-$t.qlm is missing: run scripts/bench/bench.sh $work first" >&2; exit 2; }
done
(cd "$here" && swift build -c release >&2)
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo "# each cell: bandwidth_ratio (weights) / bandwidth_ratio_with_kv, decode tok/s; command:"
echo "#   run bench WORK/gpt2-small-TYPE.qlm --threads 2 --prompt-tokens P --gen-tokens 128 --reps 5 --json"
res=$(mktemp)
for r in $(seq "$rounds"); do
  line="round $r:"
  for t in q8_0 q4_0 q4_0x8; do
    for p in 128 1; do
      out=$("$B/run" bench "$work/gpt2-small-$t.qlm" --threads 2 --prompt-tokens "$p" --gen-tokens 128 --reps 5 --json \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.3f %.3f %.1f" % (r["bandwidth_ratio"], r["bandwidth_ratio_with_kv"], r["decode_tokens_per_second"]["median"]))')
      echo "$t $p $out" >> "$res"
      line+=" | $t P=$p $(echo "$out" | awk '{printf "%.2f/%.2f %.0f", $1, $2, $3}')"
    done
  done
  echo "$line"
done
python3 - "$res" <<'PY'
import sys, statistics as st
rows = {}
for l in open(sys.argv[1]):
    t, p, a, b, c = l.split()
    rows.setdefault((t, p), []).append((float(a), float(b), float(c)))
print("\nmedian over rounds (min-max):")
for (t, p), v in rows.items():
    a = [x[0] for x in v]; b = [x[1] for x in v]; c = [x[2] for x in v]
    name = "128+128" if p == "128" else "tg128"
    print("  %-6s %-7s ratio %.2f (%.2f-%.2f), with KV %.2f (%.2f-%.2f), decode %.0f tok/s (%.0f-%.0f)" % (
        t, name, st.median(a), min(a), max(a), st.median(b), min(b), max(b), st.median(c), min(c), max(c)))
PY
rm -f "$res"
