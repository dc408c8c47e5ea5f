#!/usr/bin/env bash
# Prompt-lookup speculation, QuantLM vs llama.cpp, on SmolLM2-135M's shipped Q4_1 GGUF (QuantLM:
# `convert --type keep`, the same blocks), the input-grounded prompts of scripts/bench/bench_speculative.sh
# (repeat story A / B word for word, rename a variable in code), greedy, 200 tokens, 2 threads,
# alternating ROUNDS rounds: llama-completion (plain) and llama-lookup (`--spec-draft-n-max
# DRAFT`) against `run generate` and `run generate --speculative lookup --draft-len DRAFT`.
# Decode tok/s as each reports it (llama-completion: eval time; llama-lookup: "decoded ... speed";
# QuantLM: decode_tokens_per_second). Needs the peer build, scripts/fetch_models.sh and ../shared.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEER=${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}/build/bin
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
SHARED=${QUANTLM_SHARED:-../shared}
OUT=${OUT:-/tmp/quantlm-spec}
ROUNDS=${ROUNDS:-2} DRAFT=${DRAFT:-8} N=${N:-200}
G=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
Q=$OUT/smollm2-keep.qlm
mkdir -p "$OUT"
[ -f "$Q" ] || .build/release/convert "$G" -o "$Q" --type keep --quiet > /dev/null
python3 - "$PEER" "$G" "$Q" "$SHARED" "$OUT" "$ROUNDS" "$DRAFT" "$N" <<'PY'
import json, os, re, statistics, subprocess, sys
peer, gguf, qlm, shared, out, rounds, draft, n = sys.argv[1:9]; rounds, draft, n = int(rounds), int(draft), int(n)
text = open(os.path.join(shared, "data/tinystories/tinystories_valid_first1000.txt")).read()
stories = [s.strip() for s in text.split("<|endoftext|>") if s.strip()]
short = [s for s in stories if 80 <= len(s.split()) <= 150]
head = lambda s, k: " ".join(s.split()[:k])
chat = lambda user, answer: f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{answer}"
code = "def average(values):\n    total = 0\n    count = 0\n    for v in values:\n        total += v\n        count += 1\n    if count == 0:\n        return 0\n    return total / count\n\n\ndef spread(values):\n    lo = min(values)\n    hi = max(values)\n    total = hi - lo\n    return total\n"
cases = [("repeat story A", chat("Repeat this story word for word:\n\n" + short[0], head(short[0], 6))),
         ("repeat story B", chat("Repeat this story word for word:\n\n" + short[1], head(short[1], 6))),
         ("code edit", chat("Rename the variable `total` to `sum` in both functions and return the whole code:\n\n" + code,
                            "```python\ndef average(values):\n    sum = 0\n"))]
def llama(tool, pf):
    args = [os.path.join(peer, tool), "-m", gguf, "-f", pf, "-n", str(n), "--temp", "0", "-t", "2"]
    args += ["-no-cnv"] if tool == "llama-completion" else ["--spec-draft-n-max", str(draft)]
    r = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if tool == "llama-completion":
        m = re.findall(r"\s eval time =.*?([0-9.]+) tokens per second", r.stderr)
        return float(m[-1]), None
    m = re.search(r"decoded\s+\d+ tokens in\s+[0-9.]+ seconds, speed:\s+([0-9.]+) t/s", r.stderr)
    a = re.search(r"accept\s+=\s+([0-9.]+)%", r.stderr)
    return float(m.group(1)), float(a.group(1)) / 100 if a else None
def quantlm(p, spec):
    args = [".build/release/run", "generate", qlm, "--prompt", p, "--max-tokens", str(n), "--temperature", "0", "--threads", "2", "--json"]
    if spec: args += ["--speculative", "lookup", "--draft-len", str(draft)]
    r = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)["result"]
    return r["decode_tokens_per_second"], (r.get("speculative") or {}).get("acceptance_rate")
print(f"# {rounds} rounds, {n} tokens, draft <= {draft}; decode tok/s (acceptance)")
rows = {}
for r in range(rounds):
    for label, p in cases:
        pf = os.path.join(out, f"lookup-prompt-{label.replace(' ', '-')}.txt")
        open(pf, "w").write(p)
        res = {"llama plain": llama("llama-completion", pf), "llama lookup": llama("llama-lookup", pf),
               "quantlm plain": quantlm(p, False), "quantlm lookup": quantlm(p, True)}
        for k, v in res.items(): rows.setdefault((label, k), []).append(v)
        f = lambda k: f"{res[k][0]:.1f}" + (f" ({100 * res[k][1]:.0f}%)" if res[k][1] is not None else "")
        print(f"round {r + 1} {label:15s} llama.cpp plain {f('llama plain')}, lookup {f('llama lookup')} (x{res['llama lookup'][0] / res['llama plain'][0]:.2f}) | "
              f"QuantLM plain {f('quantlm plain')}, lookup {f('quantlm lookup')} (x{res['quantlm lookup'][0] / res['quantlm plain'][0]:.2f}) | "
              f"lookup QuantLM / llama.cpp x{res['quantlm lookup'][0] / res['llama lookup'][0]:.2f}")
PY
