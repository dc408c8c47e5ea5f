#!/usr/bin/env bash
# Speculative decoding (prompt lookup) against plain greedy decoding, in alternating rounds in one
# run: input-grounded prompts (repeat a TinyStories story with stories260K and SmolLM2-135M, edit a
# function with SmolLM2), decode tok/s with and without `--speculative lookup`, fully resident and
# under a --memory-budget that leaves a quarter of the model's bytes resident. Checks that every
# run's greedy tokens are the same, and prints the median of the per-round speedups.
#
#   scripts/bench/bench_speculative.sh [WORK_DIR] [ROUNDS] [EXTRA run generate FLAGS...]
#
# Needs: swift build -c release; ../shared (or QUANTLM_SHARED); SmolLM2 in ~/.cache/quantlm/models
# (scripts/fetch_models.sh); QUANTLM_BIN overrides .build/release. WORK_DIR (default /tmp/quantlm-spec) holds the converted models.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-/tmp/quantlm-spec}
ROUNDS=${2:-5}
shift $(( $# > 2 ? 2 : $# )) || true
B=${QUANTLM_BIN:-.build/release}   # where run and convert are
export QUANTLM_BIN=$B
SHARED=${QUANTLM_SHARED:-../shared}
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
mkdir -p "$WORK"
[ -x $B/run ] || { echo "build first: swift build -c release" >&2; exit 1; }
[ -f "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" ] || { echo "SmolLM2 missing: bash scripts/fetch_models.sh" >&2; exit 1; }
S="$SHARED/models/stories260K"
[ -f "$WORK/stories-q8_0.qlm" ] || $B/convert "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$WORK/stories-q8_0.qlm" --type q8_0 >/dev/null
[ -f "$WORK/smollm2-keep.qlm" ] || $B/convert "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" -o "$WORK/smollm2-keep.qlm" --type keep >/dev/null

python3 - "$WORK" "$ROUNDS" "$SHARED" "$@" <<'EOF'
import json, os, statistics, subprocess, sys, time
work, rounds, shared, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
B = os.path.join(os.environ["QUANTLM_BIN"], "run")
text = open(os.path.join(shared, "data/tinystories/tinystories_valid_first1000.txt")).read()
stories = [s.strip() for s in text.split("<|endoftext|>") if s.strip()]
# Stories of 80-150 words: prompt and copy fit stories260K's 512 positions.
short = [s for s in stories if 80 <= len(s.split()) <= 150]

def head(s, n): return " ".join(s.split()[:n])

code = '''def average(values):
    total = 0
    count = 0
    for v in values:
        total += v
        count += 1
    if count == 0:
        return 0
    return total / count


def spread(values):
    lo = min(values)
    hi = max(values)
    total = hi - lo
    return total
'''
chat = lambda user, answer: f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{answer}"
cases = [
    ("stories260K", "stories-q8_0.qlm", "repeat story A",
     short[0] + "\n" + head(short[0], 8), 256),
    ("stories260K", "stories-q8_0.qlm", "repeat story B",
     short[1] + "\n" + head(short[1], 8), 256),
    ("SmolLM2-135M", "smollm2-keep.qlm", "repeat story A",
     chat("Repeat this story word for word:\n\n" + short[0], head(short[0], 6)), 200),
    ("SmolLM2-135M", "smollm2-keep.qlm", "repeat story B",
     chat("Repeat this story word for word:\n\n" + short[1], head(short[1], 6)), 200),
    ("SmolLM2-135M", "smollm2-keep.qlm", "code edit",
     chat("Rename the variable `total` to `sum` in both functions and return the whole code:\n\n" + code,
          "```python\ndef average(values):\n    sum = 0\n"), 200),
]

def run(model, prompt, n, budget, spec):
    args = [B, "generate", os.path.join(work, model), "--prompt", prompt, "--max-tokens", str(n),
            "--temperature", "0", "--json"] + extra
    if budget: args += ["--memory-budget", str(budget)]
    if spec: args += ["--speculative", "lookup"]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0: sys.exit(f"failed: {' '.join(args[:3])} ...: {out.stderr.strip()}")
    return json.loads(out.stdout)

print(f"# machine: {os.cpu_count()} cores, load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
      f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; {rounds} rounds, plain and lookup alternating (order flipped each round)")
print(f"# command: run generate MODEL --prompt P --max-tokens N --temperature 0 --json [--memory-budget Q] [--speculative lookup] {' '.join(extra)}")
summary = []
for name, model, label, prompt, n in cases:
    size = os.path.getsize(os.path.join(work, model))
    mp = run(model, prompt, n, None, False)["result"]["memory_plan"]
    ms = run(model, prompt, n, None, True)["result"]["memory_plan"]
    # A quarter of the model's bytes resident: the process baseline, the margin, the KV cache and
    # the scratch, plus size / 4 (the layer buffers come out of that quarter); at least the
    # smallest budget either run accepts (stories260K's two layer buffers exceed its quarter).
    quarter = mp["baseline_bytes"] + mp["margin_bytes"] + mp["kv_bytes"] + mp["scratch_bytes"] + size // 4
    # (+1 MiB: the baseline, measured by each process at plan time, varies by a few hundred KiB.)
    quarter = max(quarter, mp["minimum_budget_bytes"], ms["minimum_budget_bytes"]) + (1 << 20)
    for budget in (None, quarter):
        tag = "resident" if budget is None else f"budget {budget / 2**20:.1f} MiB"
        ref_tokens, ratios, rows = None, [], []
        for r in range(rounds):
            res = {}
            for spec in ((False, True) if r % 2 == 0 else (True, False)):
                res[spec] = run(model, prompt, n, budget, spec)["result"]
            for spec in (False, True):
                t = res[spec]["tokens"]
                if ref_tokens is None: ref_tokens = t
                if t != ref_tokens: sys.exit(f"{name} {label} {tag}: greedy tokens differ (speculative={spec}, round {r + 1})")
            p, s = res[False], res[True]
            sp = s["speculative"]
            ratios.append(s["decode_tokens_per_second"] / p["decode_tokens_per_second"])
            rows.append((p["decode_tokens_per_second"], s["decode_tokens_per_second"], sp["acceptance_rate"], sp["tokens_per_pass"],
                         p["memory_plan"]["streamed_bytes_per_token"], s["memory_plan"]["streamed_bytes_per_token"]))
            print(f"{name:13s} {label:15s} {tag:18s} round {r + 1}: plain {rows[-1][0]:6.1f} tok/s, lookup {rows[-1][1]:6.1f} tok/s "
                  f"(x{ratios[-1]:.2f}), accepted {100 * sp['acceptance_rate']:.0f}%, {sp['tokens_per_pass']:.2f} tok/pass"
                  + (f", streamed {rows[-1][4] / 2**20:.1f} -> {rows[-1][5] / 2**20:.1f} MiB/tok" if budget else ""))
        med = statistics.median(ratios)
        summary.append((name, label, tag, len(ref_tokens), statistics.median(x[0] for x in rows), statistics.median(x[1] for x in rows),
                        med, min(ratios), max(ratios), rows[0][2], rows[0][3]))
print("\n| model | prompt | memory | tokens | plain tok/s | lookup tok/s | speedup, median (min-max) | accepted | tok/pass |")
print("|---|---|---|---|---|---|---|---|---|")
for (name, label, tag, ntok, pt, st, med, lo, hi, acc, tpp) in summary:
    print(f"| {name} | {label} | {tag} | {ntok} | {pt:.1f} | {st:.1f} | **{med:.2f}x** ({lo:.2f}-{hi:.2f}) | {100 * acc:.0f}% | {tpp:.2f} |")
print("\nidentical greedy tokens in every run: yes")
EOF
