#!/usr/bin/env bash
# Reproduces the "Memory budget (issue 6)" table of docs/benchmarks.md: a GPT-2-medium-shaped
# synthetic model (355M parameters) in q4_0 with zstd 3, greedy generation of 64 tokens under
# several --memory-budget values, each run under /usr/bin/time -v.
#
#   scripts/memory_budget_table.sh [WORK_DIR] [QLM_FILE]
#
# WORK_DIR (default /tmp/quantlm-ckpt) receives the checkpoint and the .qlm unless they exist.
# BUDGETS (env, default "64M 128M 256M 1G unlimited"), THREADS (default: all cores),
# PROMPT, MAX_TOKENS (64) can be overridden. Needs a release build (swift build -c release).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/quantlm-ckpt}"
qlm="${2:-$work/gpt2-medium-q4_0-z3.qlm}"
run="$here/.build/release/run"
convert="$here/.build/release/convert"
budgets="${BUDGETS:-64M 128M 256M 1G unlimited}"
threads="${THREADS:-$(nproc)}"
prompt="${PROMPT:-The history of the city begins}"
max_tokens="${MAX_TOKENS:-64}"
[ -x "$run" ] || { echo "build first: swift build -c release" >&2; exit 2; }
if [ ! -f "$qlm" ]; then
  [ -f "$work/gpt2-medium/config.json" ] || "$here/scripts/make_checkpoint.sh" medium "$work" --seed 0 >&2
  "$convert" "$work/gpt2-medium" -o "$qlm" --type q4_0 --zstd 3 >&2
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for b in $budgets; do
  flag=()
  [ "$b" = unlimited ] || flag=(--memory-budget "$b")
  echo "+ /usr/bin/time -v $run generate $qlm --prompt \"$prompt\" --max-tokens $max_tokens --temperature 0 --threads $threads ${flag[*]} --json" >&2
  if /usr/bin/time -v "$run" generate "$qlm" --prompt "$prompt" --max-tokens "$max_tokens" --temperature 0 \
       --threads "$threads" ${flag[@]+"${flag[@]}"} --json > "$tmp/$b.json" 2> "$tmp/$b.time"; then :; else
    echo "  failed: $(grep -m1 error "$tmp/$b.time" || true)" >&2
  fi
done
python3 - "$tmp" "$qlm" $budgets <<'PY'
import json, re, sys, os
tmp, qlm, budgets = sys.argv[1], sys.argv[2], sys.argv[3:]
mib = lambda b: b / 1048576
rows, ref = [], None
res = {}
for b in budgets:
    t = open(f"{tmp}/{b}.time").read()
    try:
        d = json.load(open(f"{tmp}/{b}.json"))
    except Exception:
        err = next((l for l in t.splitlines() if l.startswith("error")), "failed")
        rows.append(f"| {b} | {err} | | | | | | |")
        continue
    r = d["result"]; m = r["memory"]; p = r["memory_plan"]
    hwm_time = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) * 1024
    res[b] = r["tokens"]
    ref = ref or res.get("unlimited")
    rows.append((b, p, m, hwm_time, r))
ref = res.get("unlimited") or next(iter(res.values()))
print(f"Model: {os.path.basename(qlm)} ({mib(os.path.getsize(qlm)):.1f} MiB file); prompt {len(rows[0][4]['prompt_tokens']) if rows and isinstance(rows[0], tuple) else '?'} tokens, {len(ref)} generated, greedy.\n")
print("| budget | planned | streamed layers | peak RSS (time -v) | runtime VmHWM | peak anon / file (sampled) | streamed per token (file / decoded) | decode tok/s | same ids as unlimited |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for row in rows:
    if isinstance(row, str):
        print(row); continue
    b, p, m, hwm, r = row
    print(f"| {b} | {mib(p['planned_bytes']):.1f} MiB | {p['streamed_layers']} | {mib(hwm):.1f} MiB | {mib(m['peak_rss_bytes']):.1f} MiB "
          f"| {mib(m['peak_rss_anon_bytes']):.1f} / {mib(m['peak_rss_file_bytes']):.1f} MiB "
          f"| {mib(p['streamed_bytes_per_token']):.1f} / {mib(p['streamed_raw_bytes_per_token']):.1f} MiB "
          f"| {r['decode_tokens_per_second']:.2f} | {'yes' if r['tokens'] == ref else 'NO'} |")
PY
