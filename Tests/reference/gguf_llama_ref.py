"""Independent float64 forward pass of a GGUF llama model (reads and dequantizes with the
official `gguf` Python package, pip install gguf; the forward is numpy written from the Llama
definition): RMSNorm, rotary embeddings with the base from llama.rope.freq_base, grouped-query
attention, SwiGLU, tied or separate output.

    python3 gguf_llama_ref.py logits --model M.gguf --ids 1,2,3 --out logits.f64 [--rope adjacent|halves]

--rope adjacent (default) rotates pairs (x[2i], x[2i+1]) of each head, what llama.cpp's normal
rope mode does for GGUF llama files (its converter permutes HF's q/k weights into that order);
--rope halves rotates (x[i], x[i + hd/2]) (NeoX / HF order), to show the layout matters.
Writes float64 logits [T, vocab] raw and prints one JSON line (shape, and the mean negative
log-likelihood of ids[1:] under the logits, which a wrong rotary layout makes much worse).
"""
import argparse, json, os

for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(r, key):
    f = r.fields[key]
    return f.parts[f.data[0]][0]


class Model:
    def __init__(self, path):
        self.r = GGUFReader(path)
        r = self.r
        assert bytes(r.fields["general.architecture"].parts[-1]).decode() == "llama"
        self.n_layer = int(field(r, "llama.block_count"))
        self.d = int(field(r, "llama.embedding_length"))
        self.n_head = int(field(r, "llama.attention.head_count"))
        self.n_kv = int(field(r, "llama.attention.head_count_kv"))
        self.eps = float(field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.base = float(field(r, "llama.rope.freq_base"))
        self.t = {t.name: t for t in r.tensors}

    def w(self, name):
        t = self.t[name]
        # numpy shape = ggml dims reversed: [out, in] for matrices.
        return dequantize(t.data, t.tensor_type).astype(np.float64)

    def forward(self, ids, rope):
        d, H, KV = self.d, self.n_head, self.n_kv
        hd = d // H
        T = len(ids)
        emb = self.w("token_embd.weight")
        x = emb[ids]
        out_w = self.w("output.weight") if "output.weight" in self.t else emb
        del emb

        def rms(v, g):
            return v / np.sqrt((v * v).mean(-1, keepdims=True) + self.eps) * g

        pos = np.arange(T, dtype=np.float64)[:, None]
        inv = self.base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)   # [hd/2]
        ang = pos * inv[None, :]                                             # [T, hd/2]
        cos, sin = np.cos(ang), np.sin(ang)

        def rot(v):  # v [T, heads, hd]
            v = v.copy()
            if rope == "adjacent":
                a, b = v[..., 0::2].copy(), v[..., 1::2].copy()
                v[..., 0::2] = a * cos[:, None, :] - b * sin[:, None, :]
                v[..., 1::2] = a * sin[:, None, :] + b * cos[:, None, :]
            else:
                a, b = v[..., : hd // 2].copy(), v[..., hd // 2:].copy()
                v[..., : hd // 2] = a * cos[:, None, :] - b * sin[:, None, :]
                v[..., hd // 2:] = a * sin[:, None, :] + b * cos[:, None, :]
            return v

        mask = np.triu(np.full((T, T), -np.inf), 1)
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = rms(x, self.w(p + "attn_norm.weight"))
            q = rot((h @ self.w(p + "attn_q.weight").T).reshape(T, H, hd))
            k = rot((h @ self.w(p + "attn_k.weight").T).reshape(T, KV, hd))
            v = (h @ self.w(p + "attn_v.weight").T).reshape(T, KV, hd)
            rep = H // KV
            k = np.repeat(k, rep, axis=1)
            v = np.repeat(v, rep, axis=1)
            s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask[None]
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = np.einsum("hts,shd->thd", s, v).reshape(T, d)
            x = x + a @ self.w(p + "attn_output.weight").T
            h = rms(x, self.w(p + "ffn_norm.weight"))
            g = h @ self.w(p + "ffn_gate.weight").T
            u = h @ self.w(p + "ffn_up.weight").T
            x = x + ((g / (1 + np.exp(-g))) * u) @ self.w(p + "ffn_down.weight").T
        x = rms(x, self.w("output_norm.weight"))
        return x @ out_w.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["logits"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rope", choices=["adjacent", "halves"], default="adjacent")
    a = ap.parse_args()
    ids = [int(s) for s in a.ids.split(",")]
    z = Model(a.model).forward(ids, a.rope)
    np.ascontiguousarray(z, dtype="<f8").tofile(a.out)
    m = z.max(-1, keepdims=True)
    lp = z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))
    nll = float(-np.mean([lp[t, ids[t + 1]] for t in range(len(ids) - 1)]))
    print(json.dumps({"shape": list(z.shape), "dtype": "float64", "file": a.out, "format": "raw", "rope": a.rope, "nll": nll}))


if __name__ == "__main__":
    main()
