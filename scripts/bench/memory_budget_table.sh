#!/usr/bin/env bash
# Reproduces the "Memory budget" table of docs/benchmarks.md (full table: docs/benchmarks-log.md, "Memory budget (issue 6)"): a GPT-2-medium-shaped
# synthetic model (355M parameters) in q4_0 with zstd 3, greedy generation of 64 tokens under
# several --memory-budget values and KV cache types, each run under /usr/bin/time -v.
#
#   scripts/bench/memory_budget_table.sh [WORK_DIR] [QLM_FILE]
#
# WORK_DIR (default /tmp/quantlm-ckpt) receives the checkpoint and the .qlm unless they exist.
# BUDGETS (env, default "64M 96M 128M 256M unlimited"), KV_TYPES (default "f32 f16"),
# THREADS (default: all cores), PROMPT, MAX_TOKENS (64), KEEP (a directory for the raw outputs;
# with REPORT_ONLY=1 the table is printed from it without running) can be overridden. Needs a release
# build (swift build -c release). "same ids" compares with the unlimited run of the same KV type.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-/tmp/quantlm-ckpt}"
qlm="${2:-$work/gpt2-medium-q4_0-z3.qlm}"
run="$here/.build/release/run"
convert="$here/.build/release/convert"
budgets="${BUDGETS:-64M 96M 128M 256M unlimited}"
kv_types="${KV_TYPES:-f32 f16}"
threads="${THREADS:-$(nproc)}"
prompt="${PROMPT:-The history of the city begins}"
max_tokens="${MAX_TOKENS:-64}"
[ -x "$run" ] || { echo "build first: swift build -c release" >&2; exit 2; }
if [ ! -f "$qlm" ]; then
  [ -f "$work/gpt2-medium/config.json" ] || "$here/scripts/bench/make_checkpoint.sh" medium "$work" --seed 0 >&2
  "$convert" "$work/gpt2-medium" -o "$qlm" --type q4_0 --zstd 3 >&2
fi
# KEEP=DIR keeps each run's JSON and time -v output there.
if [ -n "${KEEP:-}" ]; then tmp="$KEEP"; mkdir -p "$tmp"; else tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT; fi
for kv in $kv_types; do
  for b in $budgets; do
    [ -n "${REPORT_ONLY:-}" ] && continue
    flag=()
    [ "$b" = unlimited ] || flag=(--memory-budget "$b")
    echo "+ /usr/bin/time -v $run generate $qlm --prompt \"$prompt\" --max-tokens $max_tokens --temperature 0 --threads $threads --kv-type $kv ${flag[*]} --json" >&2
    if /usr/bin/time -v "$run" generate "$qlm" --prompt "$prompt" --max-tokens "$max_tokens" --temperature 0 \
         --threads "$threads" --kv-type "$kv" ${flag[@]+"${flag[@]}"} --json > "$tmp/$kv-$b.json" 2> "$tmp/$kv-$b.time"; then :; else
      echo "  failed: $(grep -m1 error "$tmp/$kv-$b.time" || true)" >&2
    fi
  done
done
python3 - "$tmp" "$qlm" "$kv_types" $budgets <<'PY'
import json, re, sys, os
tmp, qlm, kv_types, budgets = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
mib = lambda b: b / 1048576
print(f"Model: {os.path.basename(qlm)} ({mib(os.path.getsize(qlm)):.1f} MiB file); greedy.\n")
print("| KV | budget | baseline + margin + planned | streams | peak RSS (time -v) | runtime VmHWM | peak anon / file (sampled) | ≤ budget | streamed per token (file / decoded) | decode tok/s | same ids |")
print("|---|---|---:|---|---:|---:|---:|---|---:|---:|---|")
for kv in kv_types:
    res = {}
    for b in budgets:
        try:
            res[b] = json.load(open(f"{tmp}/{kv}-{b}.json"))["result"]
        except Exception:
            pass
    ref = res.get("unlimited", {}).get("tokens")
    for b in budgets:
        t = open(f"{tmp}/{kv}-{b}.time").read()
        if b not in res:
            err = next((l for l in t.splitlines() if l.startswith("error")), "failed")
            print(f"| {kv} | {b} | {err} | | | | | | | | |")
            continue
        r = res[b]; m = r["memory"]; p = r["memory_plan"]
        hwm = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) * 1024
        what = []
        if p["streamed_layers"]: what.append(f"{p['streamed_layers']} layers")
        if p["classifier_chunks"]: what.append(f"classifier ({p['classifier_chunks']} chunks)")
        if p["embedding_streamed"]: what.append("embedding rows")
        budget = p.get("budget_bytes")
        within = "—" if budget is None else ("yes" if hwm <= budget else f"NO (+{mib(hwm - budget):.1f})")
        planned = f"{mib(p['baseline_bytes']):.1f} + {mib(p['margin_bytes']):.1f} + {mib(p['planned_bytes']):.1f} MiB" if budget else f"no plan (baseline {mib(p['baseline_bytes']):.1f} MiB incl. the populated map)"
        print(f"| {kv} | {b} | {planned} | {' + '.join(what) or 'nothing'} | {mib(hwm):.1f} MiB | {mib(m['peak_rss_bytes']):.1f} MiB "
              f"| {mib(m['peak_rss_anon_bytes']):.1f} / {mib(m['peak_rss_file_bytes']):.1f} MiB | {within} "
              f"| {mib(p['streamed_bytes_per_token']):.1f} / {mib(p['streamed_raw_bytes_per_token']):.1f} MiB "
              f"| {r['decode_tokens_per_second']:.2f} | {'yes' if r['tokens'] == ref else ('ref' if ref is None else 'NO')} |")
PY
