#!/usr/bin/env bash
# Regenerates README's "Quality: stories260K perplexity by type" table.
# Usage: scripts/quality/quality-table.sh [OUTDIR]   (needs `swift build -c release` first)
# Evaluation: documents protocol, first 200 TinyStories validation stories, ctx 512.
# Calibration (GPTQ rows): stories 500..999 of the same file (the convert default), never evaluated.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=$ROOT/.build/release
M=/work/shared/models/stories260K
TEXT=/work/shared/data/tinystories/tinystories_valid_first1000.txt
OUT=${1:-/tmp/quantlm-quality}
mkdir -p "$OUT"
# name | convert arguments
VARIANTS=(
  "f32|--type f32"
  "f16|--type f16"
  "q8_0|--type q8_0"
  "q4_0|--type q4_0"
  "q4_1|--type q4_1"
  "iq4_k32|--type iq4_k32"
  "iq4_k16|--type iq4_k16"
  "q4_0+gptq|--type q4_0 --calibrate $TEXT"
  "iq4_k32+gptq|--type iq4_k32 --calibrate $TEXT"
  "q4_best+gptq|--preset q4_best --calibrate $TEXT"
  "q4_best+gptq-seq|--preset q4_best --calibrate $TEXT --gptq-order sequential"
  "q4_mix+gptq|--preset q4_mix --calibrate $TEXT"
)
: > "$OUT/convert.jsonl"
for v in "${VARIANTS[@]}"; do
  name=${v%%|*}; args=${v#*|}
  for z in raw zstd; do
    extra=""; [ $z = zstd ] && extra="--zstd 3"
    # shellcheck disable=SC2086
    $B/convert $M/stories260K.bin --tokenizer $M/tok512.bin -o "$OUT/$name.$z.qlm" $args $extra --json -q 2>/dev/null \
      | python3 -c "import json,sys; d=json.load(sys.stdin); d['variant']='$name'; d['enc']='$z'; print(json.dumps(d))" >> "$OUT/convert.jsonl"
  done
done
names=(); for v in "${VARIANTS[@]}"; do names+=("${v%%|*}"); done
raw=(); zst=(); for n in "${names[@]}"; do raw+=("$OUT/$n.raw.qlm"); zst+=("$OUT/$n.zstd.qlm"); done
$B/run compare "${raw[@]}" --text $TEXT --protocol documents --max-docs 200 --ctx 512 --kv-type f32 --json > "$OUT/compare.raw.json"
$B/run compare "${zst[@]}" --text $TEXT --protocol documents --max-docs 200 --ctx 512 --kv-type f32 --json > "$OUT/compare.zstd.json"
python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import json, sys, os
out = sys.argv[1]
conv = {}
for l in open(os.path.join(out, "convert.jsonl")):
    d = json.loads(l); conv[(d["variant"], d["enc"])] = d
raw = json.load(open(os.path.join(out, "compare.raw.json")))
zst = json.load(open(os.path.join(out, "compare.zstd.json")))
same = all(abs(a["perplexity"] - b["perplexity"]) == 0 and a.get("kl_mean") == b.get("kl_mean")
           for a, b in zip(raw["models"], zst["models"]))
print("| type / preset | ppl | Δppl % | KL mean | KL p99 | top-1 % | bits/weight in memory | on disk, zstd 3 | file (raw) | file (zstd 3) | convert s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for m, mz in zip(raw["models"], zst["models"]):
    name = os.path.basename(m["model"]).rsplit(".", 2)[0]
    c = conv[(name, "raw")]; cz = conv[(name, "zstd")]
    f = lambda k, fmt: (fmt % m[k]) if m.get(k) is not None else ""
    dp = ("%+.2f" % m["delta_percent"]) if m.get("delta_percent") is not None else "(reference)"
    print(f"| {name} | {m['perplexity']:.4f} | {dp} | {f('kl_mean','%.4f')} | {f('kl_p99','%.3f')} | {f('top1_agreement','%.2f')} | "
          f"{m['bits_per_weight']:.3f} | {mz['stored_bits_per_weight']:.3f} | {m['file_bytes']/1024:.1f} KiB | {mz['file_bytes']/1024:.1f} KiB | {c['seconds']:.2f} |")
print()
print(f"zstd changes no number (ppl and KL identical raw vs zstd): {same}; tokens scored: {raw['tokens_scored']}")
PY
