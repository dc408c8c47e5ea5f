#!/usr/bin/env bash
# Reproduces the table "Decode at the bandwidth bound, prefill, load" of docs/benchmarks.md (raw runs: docs/benchmarks-log.md, "Decode, prefill, load").
#
#   scripts/bench/bench.sh [WORK_DIR]
#
# - Writes a GPT-2-small-shaped synthetic checkpoint (124M parameters, fixed seed) into WORK_DIR
#   (default /tmp/quantlm-bench; never inside the repo) and converts it to q8_0, q4_0 and q4_0x8
#   (q4_0 in 8-row groups: the same bytes, read by the 8-row kernel).
# - Runs `run bench` on them with 1 and 2 threads (128 prompt + 128 decoded tokens), then llama-bench's
#   tg128 setting (128 tokens decoded from an empty context), then with an f32 KV cache. Each bench
#   reads the machine's sequential-read bandwidth after every rep and reports each rep's decode as
#   a share of the reads around it (median over reps).
# - Then the 1-thread kernel table (`run bench --kernels`) and, unless ROUNDS=0, the decode share over
#   ROUNDS (default 5) rounds of scripts/bench/decode_rounds.sh: the summary table of docs/benchmarks.md.
#   About 12 minutes in all on the 2-core machine.
# - stories260K (from QUANTLM_SHARED or ../shared) against llama2.c's run.c, side by side: set
#   LLAMA2C_RUN to a compiled run.c binary (e.g. gcc -O3 -o run run.c -lm); it is not part of
#   this repository. Both decode the same prompt greedily for 256 positions, 5 times each,
#   alternating, and the medians are compared.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-/tmp/quantlm-bench}"
shared="${QUANTLM_SHARED:-$here/../shared}"
B="$here/.build/release"
case "$work" in "$here"/*) echo "error: WORK_DIR must be outside the repository" >&2; exit 2;; esac
[[ "${ROUNDS:-5}" =~ ^[0-9]+$ ]] || { echo "error: ROUNDS must be a number of rounds (0 skips them), got '$ROUNDS'" >&2; exit 2; }
mkdir -p "$work"
(cd "$here" && swift build -c release >&2)

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# cpu paths: $(grep -o -w -E 'avx512_vnni|avx2|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"

if [ ! -f "$work/gpt2-small/config.json" ]; then
  python3 "$here/Tests/reference/make_gpt2_checkpoint.py" --out "$work/gpt2-small" --shape small --seed 1 >&2
fi
for t in q8_0 q4_0 q4_0x8; do
  [ -f "$work/gpt2-small-$t.qlm" ] || "$B/convert" "$work/gpt2-small" -o "$work/gpt2-small-$t.qlm" --type "$t" --quiet >&2
done

show='
import json, sys
r = json.load(sys.stdin); b = r["decode_ms_per_token"]
print("  %-6s %d thr | load %.1f ms, first token %.1f ms | prefill %.0f tok/s = %.1f GFLOP/s | decode %.1f tok/s (min %.1f, max %.1f) | %.1f MiB/token | %.2f GB/s; %.2f of the probe (%.1f GB/s, min %.1f, max %.1f) | + KV %.1f MiB/token: %.2f" % (
  sys.argv[1], r["threads"], r["load_ms"]["median"], r["first_token_ms"]["median"], r["prefill_tokens_per_second"]["median"], r["prefill_gflops"],
  r["decode_tokens_per_second"]["median"], r["decode_tokens_per_second"]["min"], r["decode_tokens_per_second"]["max"],
  r["weight_bytes_per_token"] / 2**20, r["effective_gb_per_second"], r["bandwidth_ratio"], r["bandwidth"]["gb_per_second"]["median"],
  r["bandwidth"]["gb_per_second"]["min"], r["bandwidth"]["gb_per_second"]["max"], r["kv_bytes_per_token"] / 2**20, r["bandwidth_ratio_with_kv"]))
print("         decode ms/token: products %.3f, attention %.3f, other %.3f" % (b["products"], b["attention"], b["other"]))
'
bench() { # TYPE THREADS ARGS...
  local t=$1 th=$2; shift 2
  echo "+ run bench $work/gpt2-small-$t.qlm --threads $th $* --json"
  "$B/run" bench "$work/gpt2-small-$t.qlm" --threads "$th" "$@" --json | python3 -c "$show" "$t"
}

echo
echo "## GPT-2-small shape (124M), 128 prompt tokens, 128 decoded tokens, 5 reps (default f16 KV cache)"
for t in q8_0 q4_0 q4_0x8; do
  for th in 1 2; do bench "$t" "$th" --prompt-tokens 128 --gen-tokens 128 --reps 5; done
done

echo
echo "## tg128 (llama-bench's decode test: 128 tokens from an empty context), 2 threads, 5 reps"
for t in q8_0 q4_0 q4_0x8; do bench "$t" 2 --prompt-tokens 1 --gen-tokens 128 --reps 5; done

echo
echo "## The f32 KV cache (--kv-type f32: twice the KV bytes), 128 + 128 tokens, 2 threads"
for t in q8_0 q4_0x8; do bench "$t" 2 --prompt-tokens 128 --gen-tokens 128 --reps 5 --kv-type f32; done

echo
echo "## stories260K decode (per-token overhead), 1 thread, 256 positions greedy"
s="$shared/models/stories260K"
[ -f "$work/stories-f32.qlm" ] || "$B/convert" "$s/stories260K.bin" --tokenizer "$s/tok512.bin" -o "$work/stories-f32.qlm" --type f32 --quiet >&2
[ -f "$work/stories-q8_0.qlm" ] || "$B/convert" "$s/stories260K.bin" --tokenizer "$s/tok512.bin" -o "$work/stories-q8_0.qlm" --type q8_0 --quiet >&2
ours_f32=(); ours_q8=(); theirs=()
for i in 1 2 3 4 5; do
  ours_f32+=("$("$B/run" generate "$work/stories-f32.qlm" --prompt "Once upon a time" --temperature 0 --steps 256 --threads 1 --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["decode_tokens_per_second"])')")
  ours_q8+=("$("$B/run" generate "$work/stories-q8_0.qlm" --prompt "Once upon a time" --temperature 0 --steps 256 --threads 1 --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["decode_tokens_per_second"])')")
  if [ -n "${LLAMA2C_RUN:-}" ]; then
    theirs+=("$("$LLAMA2C_RUN" "$s/stories260K.bin" -z "$s/tok512.bin" -t 0 -n 256 -i "Once upon a time" 2>&1 >/dev/null \
      | sed -n 's/achieved tok\/s: //p')")
  fi
done
python3 - "${ours_f32[*]}" "${ours_q8[*]}" "${theirs[*]:-}" <<'PY'
import statistics, sys
f32 = [float(x) for x in sys.argv[1].split()]
q8 = [float(x) for x in sys.argv[2].split()]
ref = [float(x) for x in sys.argv[3].split()] if sys.argv[3].strip() else []
med = statistics.median
print("  quantlm f32  decode tok/s: median %.0f (min %.0f, max %.0f)" % (med(f32), min(f32), max(f32)))
print("  quantlm q8_0 decode tok/s: median %.0f (min %.0f, max %.0f)" % (med(q8), min(q8), max(q8)))
if ref:
    print("  llama2.c run.c (fp32, -O3) tok/s: median %.0f (min %.0f, max %.0f)" % (med(ref), min(ref), max(ref)))
    print("  ratio quantlm f32 / run.c: %.2fx (medians)" % (med(f32) / med(ref)))
else:
    print("  (set LLAMA2C_RUN to a compiled llama2.c run.c to compare side by side)")
PY

echo
echo "## Kernels, 1 thread (AVX-512 path): matvec GB/s (share of the 1-thread probe) and GEMM GFLOP/s"
echo "+ run bench --kernels --threads 1 --shapes 3072x768,768x3072,50257x768 --json"
"$B/run" bench --kernels --threads 1 --shapes 3072x768,768x3072,50257x768 --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("  probe %.1f GB/s (1 thread)" % r["bandwidth"]["gb_per_second"]["median"])
rows = {(x["rows"], x["cols"], x["kind"], x["type"]): x for x in r["kernels"] if x["path"] == "avx512"}
types = [t for t in ("q8_0", "q4_0", "q4_0x8") if any(k[3] == t for k in rows)]
for shp in [(3072, 768), (768, 3072), (50257, 768)]:
    mv = ["%s %.1f GB/s (%.2f)" % (t, rows[shp + ("matvec", t)]["gb_per_second"], rows[shp + ("matvec", t)]["bandwidth_ratio"]) for t in types if shp + ("matvec", t) in rows]
    gm = ["%s %.0f" % (t, rows[shp + ("gemm", t)]["gflops"]) for t in types if shp + ("gemm", t) in rows]
    print("  %5d x %-5d matvec: %s | GEMM GFLOP/s: %s" % (shp[0], shp[1], ", ".join(mv), ", ".join(gm)))'

if [ "${ROUNDS:-5}" -gt 0 ]; then
  echo
  echo "## Decode share over ${ROUNDS:-5} rounds (scripts/bench/decode_rounds.sh)"
  bash "$here/scripts/bench/decode_rounds.sh" "$work" "${ROUNDS:-5}"
fi
