#!/usr/bin/env python3
"""Decode tok/s of `run generate --speculative lookup` at several --draft-len values against
plain greedy decoding, on the input-grounded prompts of scripts/bench/bench_speculative.sh (repeat
TinyStories story A / B word for word, rename a variable in code; ChatML, SmolLM2-135M), in
ROUNDS rounds; each line is one round of one prompt: k0 = plain, kN = --draft-len N.

    python3 scripts/bench/draft_len_sweep.py MODEL.qlm [--lens 4,7,8] [--rounds 2] [--tokens 200]
"""
import argparse, json, os, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("model")
ap.add_argument("--lens", default="4,7,8")
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--tokens", type=int, default=200)
ap.add_argument("--bin", default=os.environ.get("QUANTLM_BIN", os.path.join(here, "..", "..", ".build", "release")))
a = ap.parse_args()
shared = os.environ.get("QUANTLM_SHARED", os.path.join(here, "..", "..", "..", "shared"))
stories_path = os.path.join(shared, "data/tinystories/tinystories_valid_first1000.txt")
if not os.path.isfile(stories_path):
    sys.exit(f"error: {stories_path} not found: set QUANTLM_SHARED to the shared folder (or put it at ../shared)")
if not os.path.isfile(a.model):
    sys.exit(f"error: {a.model}: no such model file")
code = open(os.path.join(here, "bench_speculative.sh")).read().split("code = '''")[1].split("'''")[0]
text = open(stories_path).read()
stories = [s.strip() for s in text.split("<|endoftext|>") if s.strip()]
short = [s for s in stories if 80 <= len(s.split()) <= 150]
head = lambda s, n: " ".join(s.split()[:n])
chat = lambda user, answer: f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{answer}"
cases = {"repeat story A": chat("Repeat this story word for word:\n\n" + short[0], head(short[0], 6)),
         "repeat story B": chat("Repeat this story word for word:\n\n" + short[1], head(short[1], 6)),
         "code edit": chat("Rename the variable `total` to `sum` in both functions and return the whole code:\n\n" + code,
                           "```python\ndef average(values):\n    sum = 0\n")}
lens = [int(x) for x in a.lens.split(",")]
print(f"# {os.path.basename(a.model)}: decode tok/s, {a.tokens} greedy tokens, 2 threads default; k0 = plain")
for r in range(a.rounds):
    for name, p in cases.items():
        row, ref = [], None
        for k in [0] + lens:
            args = [os.path.join(a.bin, "run"), "generate", a.model, "--prompt", p, "--max-tokens", str(a.tokens), "--temperature", "0", "--json"]
            if k: args += ["--speculative", "lookup", "--draft-len", str(k)]
            out = subprocess.run(args, capture_output=True, text=True)
            if out.returncode != 0: sys.exit(f"run generate failed: {out.stderr.strip()}")
            x = json.loads(out.stdout)["result"]
            if ref is None: ref = x["tokens"]
            elif x["tokens"] != ref: sys.exit(f"{name}: --draft-len {k} changed the greedy tokens")
            row.append(f"k{k} {x['decode_tokens_per_second']:.0f}")
        print(f"round {r + 1} {name:15s} " + "  ".join(row))
