#!/bin/bash
# Two builds of `run`, each with its own `convert --type keep` file of the same GGUF, alternating
# rounds: decode (tg128, tok/s and run bench's bandwidth_ratio, 3 reps) or prefill (512 tokens,
# 2 reps), the load average next to every line. For a layout change: OLD = main's build and keep
# files, NEW = the branch's build and the keep files it wrote.
#   OLD=.../run NEW=.../run OLD_DIR=dir NEW_DIR=dir [THREADS=1] [MODE=decode|prefill] [ROUNDS=2] \
#     bash scripts/bench/keep_ab.sh NAME...
# NAME: the file name between "SmolLM2-135M-Instruct." and "-keep.qlm" in both dirs (e.g. Q2_K-from-Q4_1),
# or set PREFIX / SUFFIX. One thread runs on CPU 0 (taskset), two threads unpinned.
set -euo pipefail
: "${OLD:?OLD=path of the old run}" "${NEW:?NEW=path of the new run}" "${OLD_DIR:?}" "${NEW_DIR:?}"
T=${THREADS:-1}; MODE=${MODE:-decode}; R=${ROUNDS:-2}
PREFIX=${PREFIX:-SmolLM2-135M-Instruct.}; SUFFIX=${SUFFIX:--keep.qlm}
PIN=(); [ "$T" = 1 ] && PIN=(taskset -c 0)
J=$(mktemp); trap 'rm -f "$J"' EXIT
for r in $(seq 1 "$R"); do for n in "$@"; do for side in old new; do
  if [ $side = old ]; then B=$OLD; F=$OLD_DIR/$PREFIX$n$SUFFIX; else B=$NEW; F=$NEW_DIR/$PREFIX$n$SUFFIX; fi
  [ -f "$F" ] || { echo "keep_ab.sh: $F: no such file" >&2; exit 1; }
  L=$(cut -d' ' -f1 /proc/loadavg)
  if [ "$MODE" = decode ]; then
    "${PIN[@]}" "$B" bench "$F" --threads "$T" --prompt-tokens 1 --gen-tokens 128 --reps 3 --json > "$J"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('round $r $n $side threads $T load $L decode %.1f tok/s decode/probe %.3f probe %.1f GB/s' % (d['decode_tokens_per_second']['median'], d['bandwidth_ratio'], d['bandwidth']['gb_per_second']['median']))" "$J"
  else
    "${PIN[@]}" "$B" bench "$F" --threads "$T" --prompt-tokens 512 --gen-tokens 1 --reps 2 --json > "$J"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('round $r $n $side threads $T load $L prefill %.1f tok/s products %.0f ms' % (d['prefill_tokens_per_second']['median'], d['prefill_ms']['products']))" "$J"
  fi
done; done; done
