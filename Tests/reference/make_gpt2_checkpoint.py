#!/usr/bin/env python3
"""Write a synthetic GPT-2 checkpoint in the real Hugging Face layout (numpy only).

    python3 make_gpt2_checkpoint.py --out DIR [--n-layer 2 --n-embd 64 --n-head 4 --n-ctx 128
        --vocab 50257 | --shape small|medium|large|xl] [--seed 0] [--dtype f32|f16|bf16]
        [--prefix transformer.] [--with-lm-head] [--shards K] [--std 0.02]
        [--no-mask-buffer] [--tokenizer-dir DIR | --no-tokenizer]

DIR gets config.json, model.safetensors (or model-0000i-of-0000K.safetensors +
model.safetensors.index.json with --shards K > 1), vocab.json and merges.txt.

Values: every tensor is drawn from its own generator np.random.default_rng([seed, crc32(name)])
where name is the tensor's HF name WITHOUT prefix (lm_head.weight uses "wte.weight", so the tied
head is bit-identical to wte). So the values do not depend on prefix, sharding, dtype, order or
--with-lm-head: the same args give the same bytes, and variants agree after upcast.
  LayerNorm weights 1 + 0.1*N(0,1); all biases 0.02*N(0,1); matrices/embeddings std*N(0,1)
  (drawn in float32, then stored as the chosen dtype, bf16 rounded to nearest even).
  h.i.attn.bias is the HF causal-mask buffer [1,1,n_ctx,n_ctx], always F32, ones on and below
  the diagonal, zeros above.
Tensors are generated and written one at a time (streaming), so big presets never hold the
whole model in memory.
"""
import argparse
import json
import os
import shutil
import sys
import zlib

# Small matrices: BLAS threads only add contention on a 2-core machine (override by env).
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import SafetensorsWriter, DTYPE_SIZES  # noqa: E402

PRESETS = {  # n_layer, n_embd, n_head (n_ctx 1024, vocab 50257)
    "small": (12, 768, 12),
    "medium": (24, 1024, 16),
    "large": (36, 1280, 20),
    "xl": (48, 1600, 25),
}
DT = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
TORCH_DT = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def tensor_specs(a):
    """[(name without prefix, shape, kind, dtype)] in HF order; kind picks the init."""
    d, L, C, V = a.n_embd, a.n_layer, a.n_ctx, a.vocab
    dt = DT[a.dtype]
    specs = [("wte.weight", [V, d], "mat", dt), ("wpe.weight", [C, d], "mat", dt)]
    for i in range(L):
        p = f"h.{i}."
        specs += [
            (p + "ln_1.weight", [d], "lnw", dt),
            (p + "ln_1.bias", [d], "bias", dt),
        ]
        if not a.no_mask_buffer:
            specs.append((p + "attn.bias", [1, 1, C, C], "mask", "F32"))
        specs += [
            (p + "attn.c_attn.weight", [d, 3 * d], "mat", dt),
            (p + "attn.c_attn.bias", [3 * d], "bias", dt),
            (p + "attn.c_proj.weight", [d, d], "mat", dt),
            (p + "attn.c_proj.bias", [d], "bias", dt),
            (p + "ln_2.weight", [d], "lnw", dt),
            (p + "ln_2.bias", [d], "bias", dt),
            (p + "mlp.c_fc.weight", [d, 4 * d], "mat", dt),
            (p + "mlp.c_fc.bias", [4 * d], "bias", dt),
            (p + "mlp.c_proj.weight", [4 * d, d], "mat", dt),
            (p + "mlp.c_proj.bias", [d], "bias", dt),
        ]
    specs += [("ln_f.weight", [d], "lnw", dt), ("ln_f.bias", [d], "bias", dt)]
    if a.with_lm_head:
        specs.append(("lm_head.weight", [V, d], "mat", dt))
    return specs


def make_values(name, shape, kind, seed, std):
    if kind == "mask":
        n = shape[-1]
        return np.tril(np.ones((n, n), dtype=np.float32)).reshape(shape)
    src = "wte.weight" if name == "lm_head.weight" else name
    rng = np.random.default_rng([int(seed), zlib.crc32(src.encode())])
    z = rng.standard_normal(size=shape, dtype=np.float32)
    if kind == "lnw":
        return (1.0 + 0.1 * z).astype(np.float32)
    if kind == "bias":
        return (0.02 * z).astype(np.float32)
    z *= np.float32(std)
    return z


def default_tokenizer_dir():
    env = os.environ.get("QUANTLM_SHARED")
    if env:
        root = env
    else:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        root = os.path.join(os.path.dirname(repo), "shared")
    return os.path.join(root, "models", "gpt2-tokenizer")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shape", choices=sorted(PRESETS))
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-ctx", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=sorted(DT), default="f32")
    ap.add_argument("--prefix", default="", help="'transformer.' or '' (lm_head never prefixed)")
    ap.add_argument("--with-lm-head", action="store_true", help="also write lm_head.weight (== wte)")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--no-mask-buffer", action="store_true", help="omit h.i.attn.bias")
    ap.add_argument("--tokenizer-dir", default=None,
                    help="dir with encoder.json + vocab.bpe (default $QUANTLM_SHARED or ../shared, models/gpt2-tokenizer)")
    ap.add_argument("--no-tokenizer", action="store_true", help="do not write vocab.json/merges.txt")
    a = ap.parse_args(argv)
    if a.shape:
        a.n_layer, a.n_embd, a.n_head = PRESETS[a.shape]
        a.n_ctx = 1024
    if a.n_embd % a.n_head:
        ap.error("n_embd must be divisible by n_head")
    if a.shards < 1:
        ap.error("--shards must be >= 1")

    os.makedirs(a.out, exist_ok=True)
    specs = tensor_specs(a)

    def full(name):
        return name if name == "lm_head.weight" else a.prefix + name

    config = {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": 50256,
        "embd_pdrop": 0.1,
        "eos_token_id": 50256,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": a.n_ctx,
        "n_embd": a.n_embd,
        "n_head": a.n_head,
        "n_inner": None,
        "n_layer": a.n_layer,
        "n_positions": a.n_ctx,
        "resid_pdrop": 0.1,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "tie_word_embeddings": True,
        "torch_dtype": TORCH_DT[a.dtype],
        "vocab_size": a.vocab,
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    # split specs into contiguous shards of roughly equal byte size
    sizes = [int(np.prod(s)) * DTYPE_SIZES[dt] for _, s, _, dt in specs]
    total = sum(sizes)
    K = min(a.shards, len(specs))
    groups, cur, acc = [], [], 0
    for spec, sz in zip(specs, sizes):
        cur.append(spec)
        acc += sz
        if len(groups) < K - 1 and acc >= total * (len(groups) + 1) / K:
            groups.append(cur)
            cur = []
    if cur:
        groups.append(cur)
    while len(groups) < K:  # degenerate tiny cases: split the largest group
        i = max(range(len(groups)), key=lambda j: len(groups[j]))
        g = groups.pop(i)
        groups[i:i] = [g[: len(g) // 2], g[len(g) // 2:]]
    K = len(groups)

    meta = {"format": "pt"}
    weight_map = {}
    for gi, group in enumerate(groups):
        fname = "model.safetensors" if K == 1 else f"model-{gi + 1:05d}-of-{K:05d}.safetensors"
        entries = [(full(n), dt, s) for n, s, _, dt in group]
        with SafetensorsWriter(os.path.join(a.out, fname), entries, meta) as w:
            for n, s, kind, dt in group:
                w.write(full(n), make_values(n, s, kind, a.seed, a.std))
                weight_map[full(n)] = fname
    if K > 1:
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            f.write("\n")

    if not a.no_tokenizer:
        tdir = a.tokenizer_dir or default_tokenizer_dir()
        src_v, src_m = os.path.join(tdir, "encoder.json"), os.path.join(tdir, "vocab.bpe")
        if not (os.path.isfile(src_v) and os.path.isfile(src_m)):
            sys.exit(f"tokenizer files not found in {tdir} (need encoder.json and vocab.bpe); "
                     "set QUANTLM_SHARED, pass --tokenizer-dir, or --no-tokenizer")
        shutil.copyfile(src_v, os.path.join(a.out, "vocab.json"))
        shutil.copyfile(src_m, os.path.join(a.out, "merges.txt"))

    print(json.dumps({"out": a.out, "files": sorted(set(weight_map.values())), "tensors": len(specs),
                      "total_size": total, "n_layer": a.n_layer, "n_embd": a.n_embd,
                      "n_head": a.n_head, "n_ctx": a.n_ctx, "vocab": a.vocab, "dtype": a.dtype}))


if __name__ == "__main__":
    main()
