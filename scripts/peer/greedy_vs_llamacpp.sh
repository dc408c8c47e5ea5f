#!/usr/bin/env bash
# Greedy text of QuantLM and llama.cpp from the same GGUF weights (SmolLM2-135M Q8_0: QuantLM's
# file is `convert --type keep` of it, so both multiply the same int8 blocks), a few plain-text
# prompts, 64 tokens: `run generate --temperature 0` against `llama-completion --temp 0 -no-cnv`.
# Prints how many characters of the continuations agree before they first differ. Both quantize
# activations to 8 bits, in different block orders and float sums, so near-ties can go
# either way; the number says where. Needs side_by_side.sh's files.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEER=${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}/build/bin
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
OUT=${OUT:-/tmp/quantlm-peer}
G=$MODELS/SmolLM2-135M-Instruct.Q8_0-from-Q4_1.gguf
Q=$OUT/smol-q8_0.qlm
[ -f "$Q" ] || .build/release/convert "$G" -o "$Q" --type keep --quiet > /dev/null
i=0
while IFS= read -r p; do
  i=$((i + 1))
  "$PEER/llama-completion" -m "$G" -p "$p" -n 64 --temp 0 -no-cnv -t 2 --ignore-eos > "$OUT/greedy-llama-$i.txt" 2> /dev/null < /dev/null
  .build/release/run generate "$Q" --prompt "$p" --max-tokens 64 --temperature 0 --threads 2 --ignore-eos > "$OUT/greedy-qlm-$i.txt" 2> /dev/null
  python3 - "$OUT/greedy-llama-$i.txt" "$OUT/greedy-qlm-$i.txt" "$p" <<'PY'
import sys
a = open(sys.argv[1], encoding="utf-8", errors="replace").read(); b = open(sys.argv[2], encoding="utf-8", errors="replace").read(); p = sys.argv[3]
a = a[len(p):] if a.startswith(p) else a; b = b[len(p):] if b.startswith(p) else b
n = 0
while n < min(len(a), len(b)) and a[n] == b[n]: n += 1
print(f"{p!r}: {n} characters agree of {len(a)} / {len(b)}" + ("" if n == len(a) == len(b) else f"; first difference after {a[:n][-40:]!r}: llama.cpp {a[n:n+30]!r} | QuantLM {b[n:n+30]!r}"))
PY
done <<'PROMPTS'
Once upon a time, there was a little girl named Lily. She loved to play outside in the park.
The capital of France is
def fibonacci(n):
The three primary colors are
PROMPTS
