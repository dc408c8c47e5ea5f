#!/usr/bin/env bash
# stories260K (trained at 512 positions) generating 4,096 tokens with banded:128 attention and
# a 128+S-slot ring KV cache, with and without attention sinks. Reports peak RSS at 512 and
# 4,096 generated tokens, their ratio, the KV bytes, and the perplexity the DENSE model gives
# the last 512 generated tokens (scored as one window from position 0). Baseline: the dense
# model's own 507-token generation (prompt 5 + 507 = its full 512 context), scored the same way.
# Sampling: temperature 0.8, top-p 0.9, seed 7; --ignore-eos (a new story follows BOS).
# Usage: scripts/quality/long_generation.sh   (needs ../shared or QUANTLM_SHARED, jq, a release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED="${QUANTLM_SHARED:-$(cd .. && pwd)/shared}"
RUN=.build/release/run
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
.build/release/convert "$SHARED/models/stories260K/stories260K.bin" --tokenizer "$SHARED/models/stories260K/tok512.bin" \
    -o "$TMP/s.qlm" --type f32 >/dev/null
GEN=(--prompt "Once upon a time" --temperature 0.8 --top-p 0.9 --seed 7 --ignore-eos --threads 1 --kv-type f32 --json)

score() { # json file -> dense-model perplexity of its last 512 generated tokens
    jq -r '.result.tokens[-512:] | map(tostring) | join(",")' "$1" > "$TMP/ids.txt"
    local n; n=$(tr ',' '\n' < "$TMP/ids.txt" | wc -l)
    "$RUN" perplexity "$TMP/s.qlm" --ids-file "$TMP/ids.txt" --ctx "$n" --stride "$n" --kv-type f32 --json | jq -r '.models[0].perplexity | . * 1000 | round / 1000'
}

echo "| run | tokens | stop | KV cache bytes | peak RSS | ppl of last 512 (dense model) |"
echo "|---|---:|---|---:|---:|---:|"
"$RUN" generate "$TMP/s.qlm" "${GEN[@]}" --max-tokens 507 > "$TMP/dense.json"
jq -r --arg p "$(score "$TMP/dense.json")" '"| dense (baseline, full 512 context) | \(.result.tokens|length) | \(.result.stop_reason) | \(.kv_cache_bytes) | \(.result.memory.peak_rss_bytes) | \($p) |"' "$TMP/dense.json"
for s in 4 0; do
    for n in 512 4096; do
        "$RUN" generate "$TMP/s.qlm" "${GEN[@]}" --attention banded:128 --sinks "$s" --max-tokens "$n" > "$TMP/g$s-$n.json"
        jq -r --arg p "$(score "$TMP/g$s-$n.json")" --arg s "$s" \
            '"| banded:128, sinks \($s) | \(.result.tokens|length) | \(.result.stop_reason) | \(.kv_cache_bytes) | \(.result.memory.peak_rss_bytes) | \($p) |"' "$TMP/g$s-$n.json"
    done
    a=$(jq .result.memory.peak_rss_bytes "$TMP/g$s-512.json"); b=$(jq .result.memory.peak_rss_bytes "$TMP/g$s-4096.json")
    echo "| sinks $s: peak RSS 4096 / 512 | | | | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", b / a }') | |"
done
echo
echo "Last 300 characters at 4,096 tokens, sinks 4:"
echo '```'
jq -r .result.text "$TMP/g4-4096.json" | tail -c 300
echo
echo '```'
echo "Sinks 0:"
echo '```'
jq -r .result.text "$TMP/g0-4096.json" | tail -c 300
echo
echo '```'
