#!/usr/bin/env bash
# Calibration cost on SmolLM2-135M (issue 27): `convert --calibrate` with imatrix and GPTQ
# statistics, two convert builds in alternating rounds; prints each run's wall time and the
# phases convert reports (temporary model, forward passes, statistics, the rest of the convert).
#   OLD=path/to/old/convert NEW=.build/release/convert [ROUNDS=2] [THREADS=2] [METHODS="imatrix gptq"]
#   [NEW_FLAGS="--calibrate-forward q8_0x8"] bash scripts/bench/calibration_cost.sh [WORK_DIR]
# CAL = the last 300 KB of wikitext-2's test text (16,384 tokens = 32 chunks of 512 by default).
set -euo pipefail
WORK=${1:-${TMPDIR:-/tmp}/quantlm-calcost}
MODEL=${MODEL:-$HOME/.cache/quantlm/models/SmolLM2-135M-Instruct.F32-from-Q4_1.gguf}
TEXT=${TEXT:-$(dirname "$0")/../../../shared/data/wikitext-2-raw/wiki.test.raw}
OLD=${OLD:?OLD=path to the baseline convert}
NEW=${NEW:-.build/release/convert}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
METHODS=${METHODS:-"imatrix gptq"}
TYPE=${TYPE:-q4_0}
[ -f "$MODEL" ] || { echo "missing $MODEL" >&2; exit 1; }
[ -f "$TEXT" ] || { echo "missing $TEXT (set TEXT=)" >&2; exit 1; }
mkdir -p "$WORK"
tail -c 300000 "$TEXT" > "$WORK/cal.txt"
echo "load: $(uptime)"
for r in $(seq 1 "$ROUNDS"); do
  for m in $METHODS; do
    for side in old new; do
      bin=$OLD; flags=${OLD_FLAGS:-}
      if [ $side = new ]; then bin=$NEW; flags=${NEW_FLAGS:-}; fi
      out="$WORK/$side-$m.qlm"
      t0=$(date +%s.%N)
      # shellcheck disable=SC2086
      log=$("$bin" "$MODEL" --type "$TYPE" --calibrate "$WORK/cal.txt" --calibrate-method "$m" --threads "$THREADS" -q $flags -o "$out" 2>&1)
      t1=$(date +%s.%N)
      cal=$(echo "$log" | grep -o 'importance, [0-9.]* s[^;]*$' | head -1)
      printf 'round %d %-7s %s: wall %.2f s | %s\n' "$r" "$m" "$side" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$cal"
    done
  done
done
echo "load: $(uptime)"
