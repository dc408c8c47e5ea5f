#!/usr/bin/env python3
"""Independent float64 numpy GPT-2 forward pass over a Hugging Face checkpoint directory.

Commands (all print one JSON object on stdout):

  logits --ckpt DIR --ids 1,2,3 [--ids-file F.u32] --out FILE(.f32|.npy) [--dtype f32|f64]
      Logits for every position, shape [T, vocab], row-major. FILE ending in .npy -> numpy
      .npy; anything else -> raw little-endian float32 (or float64 with --dtype f64), no header.
      stdout: {"shape": [T, V], "dtype": "float32", "file": FILE, "format": "raw"|"npy"}

  ppl-stride --ckpt DIR --ids-file IDS.u32 [--ids 1,2,..] --ctx C --stride S
      Hugging Face's sliding-window perplexity (see README.md for exactly which tokens count).
      stdout: {"tokens_scored", "nll_sum", "mean_nll", "ppl", "windows", "n_tokens"}

--ids-file is raw little-endian uint32 token ids.

Checkpoint handling: config.json (n_layer, n_head, n_embd, layer_norm_epsilon); weights from
model.safetensors.index.json (sharded) or model.safetensors or the only *.safetensors file;
an optional "transformer." prefix is stripped; Conv1D weights are stored [in, out] and used as
x @ W; F16/BF16 are upcast to float64; lm_head.weight is used if present, otherwise wte (tied).
Model: pre-LN blocks, LayerNorm eps from config, causal softmax attention with 1/sqrt(head_dim),
GELU tanh form ("gelu_new"), final LayerNorm, logits = h @ W_head^T.
"""
import argparse
import glob
import json
import math
import os
import sys

# Small matrices: BLAS threads only add contention on a 2-core machine (override by env).
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
import numpy as np  # noqa: E402


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_common import log_softmax, write_array  # noqa: E402
from safetensors_io import load_file  # noqa: E402


def load_checkpoint(ckpt):
    with open(os.path.join(ckpt, "config.json")) as f:
        cfg = json.load(f)
    idx = os.path.join(ckpt, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.exists(os.path.join(ckpt, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ckpt, "*.safetensors")))
        if len(files) != 1:
            raise SystemExit(f"no unique safetensors file in {ckpt}: {files}")
    w = {}
    for fn in files:
        for k, v in load_file(os.path.join(ckpt, fn), upcast=np.float64).items():
            if k.startswith("transformer."):
                k = k[len("transformer."):]
            if k in w:
                raise SystemExit(f"duplicate tensor {k}")
            w[k] = v
    return cfg, w


class GPT2:
    def __init__(self, ckpt):
        self.cfg, self.w = load_checkpoint(ckpt)
        c = self.cfg
        self.n_layer = int(c["n_layer"])
        self.n_head = int(c["n_head"])
        self.n_embd = int(c["n_embd"])
        self.eps = float(c.get("layer_norm_epsilon", 1e-5))
        self.n_pos = self.w["wpe.weight"].shape[0]
        self.head = self.w.get("lm_head.weight", self.w["wte.weight"])

    @staticmethod
    def layernorm(x, g, b, eps):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * g + b

    @staticmethod
    def gelu_new(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    def hidden(self, ids):
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        if T > self.n_pos:
            raise SystemExit(f"sequence of {T} tokens exceeds n_positions {self.n_pos}")
        w, d, H = self.w, self.n_embd, self.n_head
        hd = d // H
        x = w["wte.weight"][ids] + w["wpe.weight"][:T]
        neg = np.triu(np.full((T, T), -np.inf), k=1)  # additive causal mask
        for i in range(self.n_layer):
            p = f"h.{i}."
            h = self.layernorm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], self.eps)
            qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]  # Conv1D: [in, out]
            q, k, v = np.split(qkv, 3, axis=-1)
            q = q.reshape(T, H, hd).transpose(1, 0, 2)
            k = k.reshape(T, H, hd).transpose(1, 0, 2)
            v = v.reshape(T, H, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            s += neg
            s -= s.max(-1, keepdims=True)
            a = np.exp(s)
            a /= a.sum(-1, keepdims=True)
            o = (a @ v).transpose(1, 0, 2).reshape(T, d)
            x = x + o @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
            h = self.layernorm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], self.eps)
            h = self.gelu_new(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
            x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        return self.layernorm(x, w["ln_f.weight"], w["ln_f.bias"], self.eps)

    def logits(self, ids):
        return self.hidden(ids) @ self.head.T



def windows(N, ctx, stride):
    """HF sliding windows: [(begin, end, first_scored)] -- window positions (global indices)
    first_scored..end-1 are scored, each predicted from tokens begin..p-1."""
    out, prev_end = [], 0
    for begin in range(0, N, stride):
        end = min(begin + ctx, N)
        trg_len = end - prev_end
        first = max(end - trg_len, begin + 1)  # the window's first token has no prediction
        out.append((begin, end, first))
        prev_end = end
        if end == N:
            break
    return out


def ppl_stride(model, ids, ctx, stride):
    ids = np.asarray(ids, dtype=np.int64)
    N = len(ids)
    nll_sum, count = 0.0, 0
    ws = windows(N, ctx, stride)
    for begin, end, first in ws:
        if first >= end:
            continue
        lp = log_softmax(model.logits(ids[begin:end]))
        pos = np.arange(first, end)  # global positions scored
        nll_sum += float(-lp[pos - begin - 1, ids[pos]].sum())
        count += len(pos)
    mean = nll_sum / count if count else float("nan")
    return {"tokens_scored": count, "nll_sum": nll_sum, "mean_nll": mean,
            "ppl": math.exp(mean) if count else float("nan"), "windows": len(ws), "n_tokens": N}


def read_ids(a):
    if a.ids_file:
        return np.fromfile(a.ids_file, dtype="<u4").astype(np.int64)
    if a.ids:
        return np.array([int(t) for t in a.ids.split(",") if t.strip() != ""], dtype=np.int64)
    raise SystemExit("give --ids or --ids-file")



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("logits")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--ids")
    p.add_argument("--ids-file")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p = sub.add_parser("ppl-stride")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--ids")
    p.add_argument("--ids-file")
    p.add_argument("--ctx", type=int, required=True)
    p.add_argument("--stride", type=int, required=True)
    a = ap.parse_args(argv)
    model = GPT2(a.ckpt)
    ids = read_ids(a)
    if a.cmd == "logits":
        print(json.dumps(write_array(model.logits(ids), a.out, a.dtype)))
    else:
        if a.ctx < 1 or a.stride < 1:
            raise SystemExit("--ctx and --stride must be >= 1")
        print(json.dumps(ppl_stride(model, ids, a.ctx, a.stride)))


if __name__ == "__main__":
    main()
