#!/usr/bin/env bash
# Gemma 3 270M decode with and without the classifier screen (`--screen K`), side by side with
# llama.cpp on the same GGUF, alternating rounds, 2 threads: llama-bench -p 512 -n 128 against
# `run bench --prompt-tokens 512 --gen-tokens 128` on QuantLM's keep file (Q8_0 classifier
# passed through, other matrices q8_0; QTYPE=q8_0x8: the same numbers in 8-row groups), plain
# and with --screen K. Then peak RSS of a 256-token
# greedy generation, plain and screened (the same text is checked). Needs the peer build and
# scripts/fetch_models.sh --gemma.
#   ROUNDS=3 K=64 [QTYPE=keep|q8_0x8] scripts/peer/gemma3_screen.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PEER=${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}/build/bin
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
OUT=${OUT:-/tmp/g3}
ROUNDS=${ROUNDS:-3} K=${K:-64}
G=$MODELS/gemma-3-270m-q4_k_m.gguf
QTYPE=${QTYPE:-keep}
M=$OUT/gemma3-$QTYPE.qlm
B=.build/release
mkdir -p "$OUT"
[ -f "$M" ] || $B/convert "$G" -o "$M" --type "$QTYPE" --quiet > /dev/null
for r in $(seq "$ROUNDS"); do
  "$PEER/llama-bench" -m "$G" -t 2 -p 512 -n 128 -r 2 -o json > "$OUT/ll-$r.json" 2>/dev/null
  $B/run bench "$M" --threads 2 --prompt-tokens 512 --gen-tokens 128 --reps 2 --json > "$OUT/q-$r.json" 2>/dev/null
  $B/run bench "$M" --threads 2 --prompt-tokens 512 --gen-tokens 128 --reps 2 --json --screen "$K" > "$OUT/qs-$r.json" 2>/dev/null
  python3 - "$OUT/ll-$r.json" "$OUT/q-$r.json" "$OUT/qs-$r.json" "$r" "$K" <<'PY'
import json, sys
ll = json.load(open(sys.argv[1])); q = json.load(open(sys.argv[2])); s = json.load(open(sys.argv[3]))
pp = next(x["avg_ts"] for x in ll if x["n_prompt"] > 0); tg = next(x["avg_ts"] for x in ll if x["n_gen"] > 0)
qp, qt = q["prefill_tokens_per_second"]["median"], q["decode_tokens_per_second"]["median"]
st = s["decode_tokens_per_second"]["median"]
print(f"round {sys.argv[4]}: prefill llama.cpp {pp:.1f} QuantLM {qp:.1f} ({qp/pp:.2f}) | decode llama.cpp {tg:.1f} "
      f"QuantLM {qt:.1f} ({qt/tg:.2f}), --screen {sys.argv[5]} {st:.1f} ({st/tg:.2f}; x{st/qt:.2f} of plain)")
PY
done
p="The history of the Roman Empire"
for a in "" "--screen $K"; do
  # shellcheck disable=SC2086
  /usr/bin/time -v $B/run generate "$M" --prompt "$p" --max-tokens 256 --temperature 0 --threads 2 --ignore-eos $a \
    > "$OUT/gen${a:+-screen}.txt" 2> "$OUT/gen${a:+-screen}.err"
  echo "generate 256 ${a:-plain}: peak RSS $(sed -n 's/.*Maximum resident set size (kbytes): //p' "$OUT/gen${a:+-screen}.err") kB; $(grep -o 'decode [0-9]* tok, [0-9.]* tok/s' "$OUT/gen${a:+-screen}.err")"
done
cmp -s "$OUT/gen.txt" "$OUT/gen-screen.txt" && echo "greedy text identical (256 tokens)" || echo "greedy text DIFFERS"
