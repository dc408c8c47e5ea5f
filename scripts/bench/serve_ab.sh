#!/usr/bin/env bash
# Before/after for `run serve`: the same load (scripts/bench/serve_load.py) against two builds of `run`,
# alternating ROUNDS times, on one model, after WARMUP unreported rounds of each (the first server
# of a run pays for paging the model in). Prints serve_load.py's JSON lines labelled "round R A|B",
# then the medians of aggregate tok/s and ITL p50 per side and B/A.
#
#   scripts/bench/serve_ab.sh RUN_A RUN_B MODEL.qlm [serve_load.py flags...]
#   e.g. scripts/bench/serve_ab.sh /tmp/old/run .build/release/run /tmp/m.qlm --clients 1,4 --requests 50 --max-tokens 64
# Env: ROUNDS (2), WARMUP (1), THREADS (2), PARALLEL (8), CTX (512), SERVE_FLAGS (extra `run serve` flags for both). Needs ../shared.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 3 ] || { sed -n 2,7p "$0"; exit 2; }
A=$1 B=$2 M=$3; shift 3
for x in "$A" "$B"; do [ -x "$x" ] || { echo "error: $x is not an executable run binary" >&2; exit 2; }; done
[ -f "$M" ] || { echo "error: $M: no such model file" >&2; exit 2; }
ROUNDS=${ROUNDS:-2} WARMUP=${WARMUP:-1} THREADS=${THREADS:-2} PARALLEL=${PARALLEL:-8} CTX=${CTX:-512} PORT=${PORT:-18095}
echo "# $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
res=$(mktemp)
for r in $(seq $((1 - WARMUP)) "$ROUNDS"); do
  for side in A B; do
    bin=$A; [ $side = B ] && bin=$B
    # shellcheck disable=SC2086
    "$bin" serve "$M" --port "$PORT" --parallel "$PARALLEL" --ctx "$CTX" --threads "$THREADS" ${SERVE_FLAGS:-} > "/tmp/serve-ab-$side.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.2; done
    label="round $r $side"; [ "$r" -le 0 ] && label="warmup $side"
    python3 scripts/bench/serve_load.py --url "http://127.0.0.1:$PORT" --model "$(basename "$M")" --pid $pid --label "$label" "$@" \
      | tee -a "$res"
    kill -TERM $pid; wait $pid || true
  done
done
python3 - "$res" <<'PY'
import json, sys, statistics as st
v = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    if not d["label"].startswith("round"): continue
    v.setdefault((d["clients"], d["label"].split()[-1]), []).append(d)
for c in sorted({k[0] for k in v}):
    a, b = v.get((c, "A"), []), v.get((c, "B"), [])
    if not a or not b: continue
    ta, tb = st.median(x["aggregate_tok_s"] for x in a), st.median(x["aggregate_tok_s"] for x in b)
    ia, ib = st.median(x["itl_p50_ms"] for x in a), st.median(x["itl_p50_ms"] for x in b)
    print(f"clients {c}: median A {ta:.1f} tok/s (ITL p50 {ia:.2f} ms), B {tb:.1f} ({ib:.2f} ms), B/A {tb/ta:.3f} over {len(a)} rounds")
PY
rm -f "$res"
