#!/usr/bin/env bash
# Gemma 3 270M at 512, 4,096 and 32,768 positions in bounded KV memory: a WikiText-2 prefix as
# the prompt (--prompt-file) and sampled continuation up to exactly N positions, with the
# model's own attention (15 local layers banded:512 on ring caches, 3 global layers dense) and,
# for comparison, every layer dense (--attention dense; skipped at 32,768 unless DENSE32K=1:
# 18 dense layers of 32k-position attention take very long on 2 cores). Reports the KV cache
# bytes as allocated, peak RSS, tok/s, and the dense-model perplexity of the last 250 generated
# tokens scored on their own from position 0 (as scripts/quality/long_generation.sh does), then the
# 32k / 4k peak-RSS ratio. Sampling: temperature 0.8, top-p 0.9, seed 7.
# Usage: scripts/bench/gemma3_long.sh   (needs ../shared, jq, a release build; KV="q8_0 f16")
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${QUANTLM_SHARED:-../shared}
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
OUT=${OUT:-work-tmp}
KV=${KV:-q8_0 f16}
RUN=.build/release/run
mkdir -p "$OUT"
[ -f "$OUT/gemma3-keep.qlm" ] || .build/release/convert "$MODELS/gemma-3-270m-q4_k_m.gguf" -o "$OUT/gemma3-keep.qlm" --type keep --quiet > /dev/null
M=$OUT/gemma3-keep.qlm
WIKI=$SHARED/data/wikitext-2-raw/wiki.test.raw
# Prompt files of N - 256ish tokens: a character prefix of the text, trimmed until it fits.
prompt() { # N -> file holding a prefix of at most N - 250 tokens
    local n=$1 f="$OUT/prompt-$1.txt" chars=$(( ($1 - 256) * 43 / 10 ))
    while :; do
        head -c "$chars" "$WIKI" | iconv -c -f utf-8 -t utf-8 > "$f"
        local t; t=$($RUN tokenize --tokenizer "$M" --text "$f" --format json | jq .count)
        [ "$t" -le $(( n - 250 )) ] && { echo "$f $t"; return; }
        chars=$(( chars * 98 / 100 ))
    done
}
score() { # generate json -> dense-model perplexity of its last 250 tokens
    jq -r '.result.tokens[-250:] | map(tostring) | join(",")' "$1" > "$OUT/tail.txt"
    "$RUN" perplexity "$M" --ids-file "$OUT/tail.txt" --ctx 250 --stride 250 --threads 2 --json | jq -r '.models[0].perplexity | . * 100 | round / 100'
}
echo "| attention | KV | positions | KV cache bytes | peak RSS | prefill tok/s | decode tok/s | ppl of last 250 (dense, alone) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for kv in $KV; do
    for n in 512 4096 32768; do
        read -r pf pt < <(prompt "$n")
        for a in model dense; do
            [ "$a" = dense ] && [ "$n" = 32768 ] && [ "${DENSE32K:-0}" != 1 ] && continue
            A=(); [ "$a" = dense ] && A=(--attention dense)
            j="$OUT/long-$a-$kv-$n.json"
            "$RUN" generate "$M" --prompt-file "$pf" --max-tokens $(( n - pt )) --temperature 0.8 --top-p 0.9 --seed 7 \
                --ignore-eos --threads 2 --kv-type "$kv" "${A[@]}" --json > "$j"
            jq -r --arg p "$(score "$j")" --arg a "$a" --arg kv "$kv" --arg n "$n" \
                '"| \($a) | \($kv) | \($n) | \(.kv_cache_bytes) | \(.result.memory.peak_rss_bytes) | \(.result.prompt_tokens_per_second // "-" ) | \(.result.decode_tokens_per_second // "-") | \($p) |"' "$j"
        done
    done
    a=$(jq .result.memory.peak_rss_bytes "$OUT/long-model-$kv-4096.json"); b=$(jq .result.memory.peak_rss_bytes "$OUT/long-model-$kv-32768.json")
    echo "| model pattern, $kv: peak RSS 32768 / 4096 | | | | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }') | | | |"
done
echo
echo "Last 400 characters at 32,768 positions (model pattern, ${KV%% *}):"
echo '```'
jq -r .result.text "$OUT/long-model-${KV%% *}-32768.json" | tail -c 400
echo
echo '```'
