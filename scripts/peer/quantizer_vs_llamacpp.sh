#!/usr/bin/env bash
# QuantLM's quantizer vs llama.cpp's (llama-imatrix + llama-quantize) on one model, judged by
# llama.cpp's own KL tool and by QuantLM's `run compare` (issue 27's table).
#
#   scripts/peer/quantizer_vs_llamacpp.sh                 # SmolLM2-135M, every row
#   MODEL=path.gguf TYPES="Q4_0 Q4_K_M" scripts/peer/quantizer_vs_llamacpp.sh
#
# Reference: the model's weights as F32 (QuantLM `convert --type f32 --format gguf`), which both
# quantizers start from. Calibration: the last 300 KB of wiki.test.raw (llama-imatrix -c 512;
# QuantLM --calibrate, chunks of 512). Evaluation: the first CHUNKS chunks of 512 tokens of
# wiki.test.raw, which the calibration text does not overlap (300 KB of 1.29 MB from the end).
# For each llama.cpp type in TYPES, QuantLM is asked for a file of no more bytes
# (`convert --max-size <llama file's bytes> --format gguf`, its types MIX, ggml's, so llama.cpp
# runs it); both files are scored by llama-perplexity --kl-divergence against the F32 run, and
# QuantLM's by `run compare --protocol chunks` on its .qlm twin (`convert --type keep` of the
# GGUF: the same blocks). Prints a markdown table with both tools' ppl of QuantLM's file.
# Needs: a release build (swift build -c release), llama.cpp in $PEER (build_llamacpp.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-.build/release}
PEER=${PEER:-$HOME/.cache/quantlm/peer/build/bin}
MODEL=${MODEL:-$HOME/.cache/quantlm/models/SmolLM2-135M-Instruct.Q4_1.gguf}
WIKI=${WIKI:-../shared/data/wikitext-2-raw/wiki.test.raw}
TYPES=${TYPES:-"Q4_K_M IQ4_XS Q4_0 Q3_K_M Q2_K"}
CHUNKS=${CHUNKS:-20}
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/quantizer_vs_llamacpp}
# the types QuantLM's size target chooses from (ggml's, so llama.cpp runs the file)
MIX=${MIX:-q8_0,q6_k,q5_k,q5_1,q5_0,q4_k,q4_1,q4_0,iq4_xs,iq4_nl,q3_k,q2_k}
# extra QuantLM convert flags (e.g. "--calibrate-tokens 32768")
QLM_FLAGS=${QLM_FLAGS:-}

for f in "$BIN/convert" "$BIN/run"; do [ -x "$f" ] || { echo "error: $f missing: run swift build -c release" >&2; exit 1; }; done
for f in llama-imatrix llama-quantize llama-perplexity; do
    [ -x "$PEER/$f" ] || { echo "error: $PEER/$f missing: run scripts/peer/build_llamacpp.sh" >&2; exit 1; }
done
[ -f "$MODEL" ] || { echo "error: model $MODEL not found: run scripts/fetch_models.sh" >&2; exit 1; }
[ -f "$WIKI" ] || { echo "error: $WIKI not found (the shared folder ../shared)" >&2; exit 1; }
mkdir -p "$OUT"
CAL=$OUT/calibration.txt
tail -c 300000 "$WIKI" > "$CAL"

REF=$OUT/ref-f32.gguf
[ -f "$REF" ] || "$BIN/convert" "$MODEL" --type f32 --format gguf -o "$REF" -q > /dev/null
[ -f "$OUT/ref.qlm" ] || "$BIN/convert" "$MODEL" --type f32 -o "$OUT/ref.qlm" -q > /dev/null
[ -f "$OUT/imatrix.dat" ] || "$PEER/llama-imatrix" -m "$REF" -f "$CAL" -c 512 -t "$THREADS" -o "$OUT/imatrix.dat" > "$OUT/imatrix.log" 2>&1
[ -f "$OUT/ref.kld" ] || "$PEER/llama-perplexity" -m "$REF" -f "$WIKI" -c 512 --chunks "$CHUNKS" -t "$THREADS" \
    --kl-divergence-base "$OUT/ref.kld" > "$OUT/ref.ppl.log" 2>&1

# llama-perplexity --kl-divergence on FILE: "KL mean<TAB>same top-1 %<TAB>ppl" (the log is kept
# next to FILE and reused while FILE is older than it)
kld() {
    if [ ! -s "$1.kld.log" ] || [ "$1" -nt "$1.kld.log" ] || ! grep -qE "^Mean +KLD:" "$1.kld.log"; then
        "$PEER/llama-perplexity" -m "$1" --kl-divergence-base "$OUT/ref.kld" --kl-divergence -t "$THREADS" > "$1.kld.log" 2>&1
    fi
    local kl top ppl
    kl=$(grep -E "^Mean +KLD:" "$1.kld.log" | awk '{print $3}')
    top=$(grep -E "^Same top p:" "$1.kld.log" | awk '{print $4}')
    ppl=$(grep -E "^Mean PPL\(Q\)" "$1.kld.log" | awk '{print $4}')
    printf '%s\t%s\t%s\n' "$kl" "$top" "$ppl"
}
mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1e6 }'; }

echo "| file | MB | KL mean (llama-perplexity) | same top-1 % | ppl (llama-perplexity) | KL mean (run compare) | same top-1 % (run compare) | ppl (run perplexity) |"
echo "|---|---|---|---|---|---|---|---|"
for T in $TYPES; do
    L=$OUT/llama-$T.gguf
    [ -f "$L" ] || "$PEER/llama-quantize" --imatrix "$OUT/imatrix.dat" "$REF" "$L" "$T" "$THREADS" > "$L.log" 2>&1
    read -r lk lt lp < <(kld "$L")
    echo "| llama.cpp $T + imatrix | $(mb "$L") | $lk | $lt | $lp | | | |"
    SIZE=$(stat -c %s "$L")
    Q=$OUT/quantlm-$T
    # a GGUF for llama.cpp, then its .qlm twin for run compare: every type is ggml's, so
    # `--type keep` copies each tensor's blocks unchanged (the same numbers)
    # shellcheck disable=SC2086
    "$BIN/convert" "$REF" --max-size "$SIZE" --mix-types "$MIX" --calibrate "$CAL" $QLM_FLAGS \
        --format gguf -o "$Q.gguf" -q > "$Q.log" 2>&1
    "$BIN/convert" "$Q.gguf" --type keep -o "$Q.qlm" -q >> "$Q.log" 2>&1
    read -r qk qt qp < <(kld "$Q.gguf")
    # (a refusal, e.g. "different tokenizer", leaves its columns empty; the log keeps the reason)
    "$BIN/run" compare "$OUT/ref.qlm" "$Q.qlm" --text "$WIKI" --protocol chunks --chunks "$CHUNKS" --ctx 512 \
        --threads "$THREADS" > "$Q.compare.log" 2>&1 || true
    read -r cp ck ct < <(awk -v f="$Q.qlm" '$1 == f { print $2, $5, $7 }' "$Q.compare.log") || true
    # QuantLM's own ppl of the same blocks (issue 27: within 0.5% of llama-perplexity's)
    "$BIN/run" perplexity "$Q.qlm" --text "$WIKI" --protocol chunks --chunks "$CHUNKS" --ctx 512 \
        --threads "$THREADS" > "$Q.ppl.log" 2>&1
    rp=$(awk -v f="$Q.qlm" '$1 == f { print $2 }' "$Q.ppl.log")
    echo "| QuantLM --max-size $(mb "$L")M --calibrate | $(mb "$Q.gguf") | $qk | $qt | $qp | $ck | $ct | $rp |"
done
