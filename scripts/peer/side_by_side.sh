#!/usr/bin/env bash
# QuantLM vs llama.cpp on SmolLM2-135M, alternating rounds in one run, 2 threads:
# llama-bench -t 2 -p 512 -n 128 against `run bench --prompt-tokens 512 --gen-tokens 128`,
# Q8_0 and Q4_0 (llama.cpp's files requantized from the shipped Q4_1 with llama-quantize
# --allow-requantize; QuantLM's converted from the same GGUFs: Q8_0 becomes q8_0x8 and Q4_0
# q4_0x8, the same numbers in QuantLM's 8-row layout; Q8_0=keep converts with --type keep, which
# since issue 28's kperf5 also stores q8_0 matrices as q8_0x8, the same blocks regrouped).
# llama-bench's tg128 decodes from an empty context; `run bench --prompt-tokens 512` decodes after
# the 512-token prompt, so a third run (--prompt-tokens 1 --gen-tokens 128) gives QuantLM's tg128.
# Needs scripts/peer/build_llamacpp.sh's build and scripts/fetch_models.sh's model.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEER=${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}/build/bin
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-3} # reps per llama-bench / run bench call
OUT=${OUT:-/tmp/quantlm-peer}
B=.build/release
mkdir -p "$OUT"
report() { # llama-bench json, run bench json (512+128), run bench json (1+128), round, label
  python3 - "$@" <<'PY'
import json, sys
ll = json.load(open(sys.argv[1])); q = json.load(open(sys.argv[2])); g = json.load(open(sys.argv[3]))
pp = next(x["avg_ts"] for x in ll if x["n_prompt"] > 0); tg = next(x["avg_ts"] for x in ll if x["n_gen"] > 0)
qp = q["prefill_tokens_per_second"]["median"]; qt = q["decode_tokens_per_second"]["median"]
q0 = g["decode_tokens_per_second"]["median"]
print(f"round {sys.argv[4]} {sys.argv[5]}: prefill llama.cpp {pp:.1f} QuantLM {qp:.1f} ratio {qp/pp:.2f} | "
      f"decode llama.cpp {tg:.1f} QuantLM tg128 {q0:.1f} ratio {q0/tg:.2f}, after the 512 prompt {qt:.1f} ratio {qt/tg:.2f}")
PY
}
# GGUFS="a.gguf b.gguf ...": those files instead, each against QuantLM's `--type keep` conversion
# of it (the K-quant mixes: Q4_K_M, Q5_K_M, Q6_K, ...), the same alternating rounds.
if [ -n "${GGUFS:-}" ]; then
  for g in $GGUFS; do $B/convert "$g" -o "$OUT/$(basename "$g" .gguf)-keep.qlm" --type keep --quiet; done
  for r in $(seq "$ROUNDS"); do
    for g in $GGUFS; do
      t=$(basename "$g" .gguf); q=$OUT/$t-keep.qlm
      "$PEER/llama-bench" -m "$g" -t 2 -p 512 -n 128 -r "$REPS" -o json > "$OUT/llama-$t-$r.json" 2>/dev/null
      $B/run bench "$q" --threads 2 --prompt-tokens 512 --gen-tokens 128 --reps "$REPS" --json > "$OUT/qlm-$t-$r.json" 2>/dev/null
      $B/run bench "$q" --threads 2 --prompt-tokens 1 --gen-tokens 128 --reps "$REPS" --json > "$OUT/qlm-tg-$t-$r.json" 2>/dev/null
      report "$OUT/llama-$t-$r.json" "$OUT/qlm-$t-$r.json" "$OUT/qlm-tg-$t-$r.json" "$r" "$t"
    done
  done
  exit 0
fi
src=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
for t in Q8_0 Q4_0; do
  [ -f "$MODELS/SmolLM2-135M-Instruct.$t-from-Q4_1.gguf" ] || "$PEER/llama-quantize" --allow-requantize "$src" "$MODELS/SmolLM2-135M-Instruct.$t-from-Q4_1.gguf" "$t" >/dev/null
done
Q8=${Q8_0:-q8_0x8}
$B/convert "$MODELS/SmolLM2-135M-Instruct.Q8_0-from-Q4_1.gguf" -o "$OUT/smol-q8_0.qlm" --type keep --quiet
$B/convert "$MODELS/SmolLM2-135M-Instruct.Q8_0-from-Q4_1.gguf" -o "$OUT/smol-q8_0x8.qlm" --type q8_0x8 --quiet
$B/convert "$MODELS/SmolLM2-135M-Instruct.Q4_0-from-Q4_1.gguf" -o "$OUT/smol-q4_0x8.qlm" --type q4_0x8 --quiet
for r in $(seq "$ROUNDS"); do
  for t in Q8_0 Q4_0; do
    q=q8_0x8; [ "$Q8" = keep ] && q=q8_0; [ $t = Q4_0 ] && q=q4_0x8
    "$PEER/llama-bench" -m "$MODELS/SmolLM2-135M-Instruct.$t-from-Q4_1.gguf" -t 2 -p 512 -n 128 -r "$REPS" -o json > "$OUT/llama-$t-$r.json" 2>/dev/null
    $B/run bench "$OUT/smol-$q.qlm" --threads 2 --prompt-tokens 512 --gen-tokens 128 --reps "$REPS" --json > "$OUT/qlm-$q-$r.json" 2>/dev/null
    $B/run bench "$OUT/smol-$q.qlm" --threads 2 --prompt-tokens 1 --gen-tokens 128 --reps "$REPS" --json > "$OUT/qlm-tg-$q-$r.json" 2>/dev/null
    report "$OUT/llama-$t-$r.json" "$OUT/qlm-$q-$r.json" "$OUT/qlm-tg-$q-$r.json" "$r" "$t"
  done
done
