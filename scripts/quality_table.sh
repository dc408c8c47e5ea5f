#!/usr/bin/env bash
# Regenerates the README's stories260K quality table: every type with and without zstd, scored
# against the f32 original in one `run compare` pass (documents protocol, first 200 TinyStories
# validation stories, each from BOS, ctx 512). Prints a Markdown table.
#
#   scripts/quality_table.sh [WORK_DIR] [TYPE ...]     (default types: f16 q8_0 q4_0 q4_1)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/quantlm-quality}"; shift || true
types=("$@"); [ ${#types[@]} -gt 0 ] || types=(f16 q8_0 q4_0 q4_1)
shared="${QUANTLM_SHARED:-$here/../shared}"
s="$shared/models/stories260K"
B="$here/.build/release"
mkdir -p "$work"
(cd "$here" && swift build -c release >&2)
conv() { # name type [extra convert args...]
  local name=$1 t=$2; shift 2
  local start end
  start=$(date +%s.%N)
  "$B/convert" "$s/stories260K.bin" --tokenizer "$s/tok512.bin" -o "$work/$name.qlm" --type "$t" --quiet "$@" >&2
  end=$(date +%s.%N)
  echo "$name $(python3 -c "print(f'{$end-$start:.2f}')")" >> "$work/times.txt"
}
: > "$work/times.txt"
conv f32 f32
files=("$work/f32.qlm")
for t in "${types[@]}"; do
  conv "$t" "$t"; conv "$t-zstd" "$t" --zstd 3
  files+=("$work/$t.qlm" "$work/$t-zstd.qlm")
done
"$B/run" compare "${files[@]}" --text "$shared/data/tinystories/tinystories_valid_first1000.txt" \
  --protocol documents --max-docs 200 --ctx 512 --json > "$work/compare.json"
python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
r = json.load(open(os.path.join(work, "compare.json")))
times = dict(l.split() for l in open(os.path.join(work, "times.txt")))
print(f"{r['tokens_scored']} tokens scored over {r['documents']} documents (ctx {r['ctx']}).\n")
print("| file | ppl | Δppl | Δ% | KL mean | KL p99 | top-1 % | bits/weight (memory) | bits/weight (disk) | file size | convert s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for m in r["models"]:
    name = os.path.basename(m["model"])[:-4]
    d = lambda k, f: (f % m[k]) if m.get(k) is not None else "—"
    print(f"| {name} | {m['perplexity']:.4f} | {d('delta_ppl', '%+.4f')} | {d('delta_percent', '%+.2f%%')} | {d('kl_mean', '%.5f')} | "
          f"{d('kl_p99', '%.4f')} | {d('top1_agreement', '%.2f')} | {m['bits_per_weight']:.3f} | {m['stored_bits_per_weight']:.3f} | "
          f"{m['file_bytes'] / 1024:.1f} KiB | {times.get(name, '?')} |")
PY
