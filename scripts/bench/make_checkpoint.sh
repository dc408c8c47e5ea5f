#!/usr/bin/env bash
# Synthetic checkpoints with real shapes, in Hugging Face GPT-2 safetensors layout, weights
# from a fixed seed (Tests/reference/make_gpt2_checkpoint.py, streaming: never the whole model
# in memory). For measuring memory and speed at realistic sizes without real weights.
#
#   scripts/bench/make_checkpoint.sh SHAPE [OUT_DIR] [--seed N] [--dtype f32|f16|bf16] [extra args]
#
# SHAPE: small (124M), medium (355M), large (774M), xl (1.5B)  -- GPT-2, n_ctx 1024
#        gpt3-xl (1.3B: 24 layers, d 2048, 16 heads, n_ctx 2048) -- GPT-3 "XL" shapes, dense attention
# OUT_DIR defaults to /tmp/quantlm-ckpt; the checkpoint goes to OUT_DIR/gpt2-SHAPE (or gpt3-xl).
# Refuses to write inside the git repository (keep generated files out of git).
# Then: .build/release/convert OUT_DIR/gpt2-medium -o /tmp/gpt2-medium-q4_0-z3.qlm --type q4_0 --zstd 3
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
shape="${1:-}"
[ -n "$shape" ] || { sed -n '2,13p' "$0"; exit 2; }
shift
out="/tmp/quantlm-ckpt"
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then out="$1"; shift; fi
seed=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) seed="$2"; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
case "$shape" in
  small|medium|large|xl) name="gpt2-$shape"; args=(--shape "$shape") ;;
  gpt3-xl) name="gpt3-xl"; args=(--n-layer 24 --n-embd 2048 --n-head 16 --n-ctx 2048) ;;
  *) echo "unknown shape '$shape' (small, medium, large, xl, gpt3-xl)" >&2; exit 2 ;;
esac
mkdir -p "$out"
abs_out="$(cd "$out" && pwd)"
case "$abs_out/" in
  "$here"/*) echo "refusing to write inside the repository ($abs_out); use e.g. /tmp/quantlm-ckpt" >&2; exit 2 ;;
esac
python3 "$here/Tests/reference/make_gpt2_checkpoint.py" --out "$abs_out/$name" "${args[@]}" --seed "$seed" \
  --no-mask-buffer ${extra[@]+"${extra[@]}"}
echo "$abs_out/$name"
