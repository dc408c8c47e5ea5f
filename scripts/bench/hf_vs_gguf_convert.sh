#!/usr/bin/env bash
# `convert` of a Hugging Face directory (transformers-written, bf16 safetensors) against the same
# model's GGUF, same output type (q8_0, the default), for two builds in alternating rounds:
# per round OLD-HF, OLD-GGUF, NEW-HF, NEW-GGUF for each model. Prints every wall time
# (/usr/bin/time %e) and CPU time (user + sys), the medians, HF/GGUF per build and NEW/OLD per path, and checks that both
# builds wrote the same tensor bytes (only the header's metadata CRC and the metadata's `created`
# time may differ). Issue 26's "HF at least as fast as GGUF" (docs/benchmarks.md).
#
#   OLD=/path/to/old/convert NEW=/path/to/new/convert [ROUNDS=5] [PIN="taskset -c 0"] \
#     bash scripts/bench/hf_vs_gguf_convert.sh [WORK_DIR]
set -euo pipefail
M="${MODELS:-$HOME/.cache/quantlm}"
work="${1:-/tmp/hf-vs-gguf}"
ROUNDS="${ROUNDS:-5}"
PIN="${PIN-taskset -c 0}"   # PIN= (empty): unpinned, the converter on every core
: "${OLD:?set OLD to the old build's convert}" "${NEW:?set NEW to the new build's convert}"
mkdir -p "$work"
pairs=("SmolLM2 $M/hf/SmolLM2-135M-Instruct $M/models/SmolLM2-135M-Instruct.Q4_1.gguf"
       "Gemma3 $M/hf/gemma-3-270m $M/models/gemma-3-270m-q4_k_m.gguf")
for p in "${pairs[@]}"; do set -- $p; cat "$2"/* "$3" > /dev/null; done   # page cache
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), pin: ${PIN:-none}, $ROUNDS rounds"
log="$work/times.txt"; : > "$log"
for r in $(seq 1 "$ROUNDS"); do
  for p in "${pairs[@]}"; do
    set -- $p
    for b in OLD NEW; do
      bin="${!b}"
      for kind in HF GGUF; do
        src=$2; [ "$kind" = GGUF ] && src=$3
        t=$( { /usr/bin/time -f "%e %U %S" $PIN "$bin" "$src" -o "$work/$b-$1-$kind.qlm" > /dev/null; } 2>&1 | tail -1)
        read -r wall user sys <<< "$t"
        echo "$1 $b $kind $r $wall $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" | tee -a "$log"
      done
    done
  done
done
echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$log" <<'PY'
import sys, statistics, collections
t = collections.defaultdict(list); c = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m, b, k, r, s, cpu = line.split()
    t[m, b, k].append(float(s)); c[m, b, k].append(float(cpu))
for m in sorted({k[0] for k in t}):
    cm = {(b, k): statistics.median(c[m, b, k]) for b in ("OLD", "NEW") for k in ("HF", "GGUF")}
    for b in ("OLD", "NEW"):
        print(f"{m:8s} {b} CPU (user+sys): HF median {cm[b, 'HF']:.2f} s | GGUF median {cm[b, 'GGUF']:.2f} s | HF/GGUF {cm[b, 'HF'] / cm[b, 'GGUF']:.2f}")
    med = {(b, k): statistics.median(t[m, b, k]) for b in ("OLD", "NEW") for k in ("HF", "GGUF")}
    for b in ("OLD", "NEW"):
        print(f"{m:8s} {b}: HF {' '.join(f'{x:.2f}' for x in t[m, b, 'HF'])} median {med[b, 'HF']:.2f} s | "
              f"GGUF {' '.join(f'{x:.2f}' for x in t[m, b, 'GGUF'])} median {med[b, 'GGUF']:.2f} s | HF/GGUF {med[b, 'HF'] / med[b, 'GGUF']:.2f}")
    print(f"{m:8s} NEW/OLD: HF {med['NEW', 'HF'] / med['OLD', 'HF']:.2f}, GGUF {med['NEW', 'GGUF'] / med['OLD', 'GGUF']:.2f}")
PY
# Same tensor bytes from both builds: at most the metadata CRC (header bytes 29-32) and the
# `created` time differ, all before the tensor data.
for p in "${pairs[@]}"; do
  set -- $p
  for kind in HF GGUF; do
    a="$work/OLD-$1-$kind.qlm" b="$work/NEW-$1-$kind.qlm"
    [ "$(stat -c %s "$a")" = "$(stat -c %s "$b")" ] || { echo "$1 $kind: sizes differ"; exit 1; }
    diffs=$(cmp -l "$a" "$b" || true)   # cmp exits 1 when the files differ
    last=$(awk 'END { print $1 + 0 }' <<< "$diffs"); n=$(grep -c . <<< "$diffs" || true)
    echo "$1 $kind: $n bytes differ, the last at offset $last (header + metadata only if < 4096)"
    [ "$last" -lt 4096 ] || { echo "$1 $kind: tensor bytes differ"; exit 1; }
  done
done
