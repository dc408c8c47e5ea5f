#!/usr/bin/env bash
# Before/after for `run serve`: the same load (scripts/bench/serve_load.py) against two builds of `run`,
# alternating ROUNDS times, on one model. Prints serve_load.py's JSON lines labelled "round R A|B".
#
#   scripts/bench/serve_ab.sh RUN_A RUN_B MODEL.qlm [serve_load.py flags...]
#   e.g. scripts/bench/serve_ab.sh /tmp/old/run .build/release/run /tmp/m.qlm --clients 1,4 --requests 50 --max-tokens 64
# Env: ROUNDS (2), PARALLEL (8), CTX (512), SERVE_FLAGS (extra `run serve` flags for both). Needs ../shared.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 3 ] || { sed -n 2,7p "$0"; exit 2; }
A=$1 B=$2 M=$3; shift 3
for x in "$A" "$B"; do [ -x "$x" ] || { echo "error: $x is not an executable run binary" >&2; exit 2; }; done
[ -f "$M" ] || { echo "error: $M: no such model file" >&2; exit 2; }
ROUNDS=${ROUNDS:-2} PARALLEL=${PARALLEL:-8} CTX=${CTX:-512} PORT=${PORT:-18095}
for r in $(seq "$ROUNDS"); do
  for side in A B; do
    bin=$A; [ $side = B ] && bin=$B
    # shellcheck disable=SC2086
    "$bin" serve "$M" --port "$PORT" --parallel "$PARALLEL" --ctx "$CTX" --threads 2 ${SERVE_FLAGS:-} > "/tmp/serve-ab-$side.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.2; done
    python3 scripts/bench/serve_load.py --url "http://127.0.0.1:$PORT" --model "$(basename "$M")" --pid $pid --label "round $r $side" "$@"
    kill -TERM $pid; wait $pid || true
  done
done
