#!/usr/bin/env python3
"""Independent float32 numpy Llama forward over a GGUF checkpoint, for perplexity and greedy
continuations to compare with llama.cpp (the peer) and QuantLM.

Not run by CI: it needs the `gguf` pip package (pip install gguf; used with 0.19.0) besides numpy, and a real
GGUF (scripts/fetch_models.sh) plus llama.cpp's `llama-tokenize` (scripts/peer/build_llamacpp.sh)
for the token ids, so the reference does not depend on QuantLM's tokenizer.

Model: every tensor is dequantized to float32 with gguf.quants.dequantize (exact for the
formats involved: the dequantized values are what the quantized file means). Forward pass:
RMSNorm (eps = llama.attention.layer_norm_rms_epsilon), RoPE on ADJACENT pairs (2i, 2i+1)
with theta_i = freq_base^(-2i/rope_dim) -- llama.cpp's LLAMA_ROPE_TYPE_NORM for the llama
arch, which is right for converted weights because convert_hf_to_gguf permutes wq/wk --
grouped-query attention (query head h reads kv head h // (n_head/n_head_kv)), causal softmax
with scale 1/sqrt(head_dim), SwiGLU FFN down(silu(gate x) * up x), final RMSNorm, output =
output.weight or, when absent, token_embd.weight (tied). Matmuls are float32 numpy (BLAS), the
log-softmax of the scored rows is float64.

Perplexity protocol = llama.cpp tools/perplexity (perplexity()): the whole file is tokenized
once (llama-tokenize --ids --no-parse-special, which is common_tokenize(ctx, text, true): BOS
prepended only if the vocab's add_bos_token is true), cut into consecutive chunks of CTX
tokens; in each chunk the first token is replaced by BOS when add_bos_token is true (SmolLM2:
false, so nothing is replaced); the logits at positions CTX/2 .. CTX-2 score the tokens at
CTX/2+1 .. CTX-1 (CTX/2 - 1 = 255 tokens per 512-token chunk). llama.cpp prints the running
ppl after each chunk ([k] = exp(sum nll / count) over chunks 1..k); this prints both the
running and the per-chunk values.

Commands:
  ppl --model M.gguf --ids IDS [--ctx 512] [--chunks 20] [--out R.json]
      IDS: a file holding llama-tokenize --ids output ([1, 2, ...]) or a raw little-endian
      uint32 file (*.u32). stdout: one JSON line {"ppl", "chunks", "per_chunk", "running", ...}
  generate --model M.gguf --llama-tokenize BIN --prompt P [--prompt P2 ...] [--n 32] [--out R.json]
      Greedy (argmax) continuation of each prompt for N tokens (no stop on EOS, so the token
      count is fixed); prompts tokenized by llama-tokenize (BOS as the vocab says).
      stdout: one JSON line {"model", "results": [{"prompt", "prompt_ids", "ids", "text"}]}
"""
import argparse
import ast
import json
import os
import subprocess
import sys
import time

import numpy as np

try:
    import gguf
    from gguf.quants import dequantize
except ImportError:  # pragma: no cover
    sys.exit("gguf_ppl_ref.py needs the gguf package: pip install gguf")


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


class Model:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        arch = field(r, "general.architecture")
        if arch != "llama":
            raise SystemExit(f"only the llama architecture is implemented, not {arch}")
        p = "llama."
        self.dim = int(field(r, p + "embedding_length"))
        self.n_layer = int(field(r, p + "block_count"))
        self.n_head = int(field(r, p + "attention.head_count"))
        self.n_kv = int(field(r, p + "attention.head_count_kv", self.n_head))
        self.eps = float(field(r, p + "attention.layer_norm_rms_epsilon"))
        self.base = float(field(r, p + "rope.freq_base", 10000.0))
        self.hd = self.dim // self.n_head
        self.rope_dim = int(field(r, p + "rope.dimension_count", self.hd))
        self.add_bos = bool(field(r, "tokenizer.ggml.add_bos_token", True))
        self.bos = int(field(r, "tokenizer.ggml.bos_token_id"))
        self.tok_model = field(r, "tokenizer.ggml.model")
        self.tokens = field(r, "tokenizer.ggml.tokens")
        self.types = {}
        w = {}
        for t in r.tensors:
            self.types[t.name] = t.tensor_type.name
            a = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
            # GGUF lists dims ne0 (fastest) first; numpy rows are the last dim.
            w[t.name] = np.ascontiguousarray(a.reshape([int(d) for d in reversed(t.shape)]))
        self.w = w
        self.out = w.get("output.weight", w["token_embd.weight"])
        self.tied = "output.weight" not in w
        self.vocab = self.out.shape[0]
        half = self.rope_dim // 2
        self.inv_freq = self.base ** (-np.arange(half, dtype=np.float64) * 2.0 / self.rope_dim)

    def rms(self, x, wt):
        ms = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True)
        return (x / np.sqrt(ms + self.eps)).astype(np.float32) * wt

    def rope(self, x, pos):
        # x: [T, H, hd]; rotate adjacent pairs (0,1), (2,3), ... of the first rope_dim dims.
        ang = pos[:, None].astype(np.float64) * self.inv_freq[None, :]  # [T, half]
        cos = np.cos(ang).astype(np.float32)[:, None, :]
        sin = np.sin(ang).astype(np.float32)[:, None, :]
        y = x.copy()
        x0 = x[..., 0:self.rope_dim:2]
        x1 = x[..., 1:self.rope_dim:2]
        y[..., 0:self.rope_dim:2] = x0 * cos - x1 * sin
        y[..., 1:self.rope_dim:2] = x0 * sin + x1 * cos
        return y

    def hidden(self, ids):
        """Final-normed hidden states [T, dim] for a whole sequence starting at position 0."""
        w = self.w
        T = len(ids)
        pos = np.arange(T)
        x = w["token_embd.weight"][np.asarray(ids)]
        mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
        g = self.n_head // self.n_kv
        scale = np.float32(1.0 / np.sqrt(self.hd))
        for l in range(self.n_layer):
            b = f"blk.{l}."
            h = self.rms(x, w[b + "attn_norm.weight"])
            q = (h @ w[b + "attn_q.weight"].T).reshape(T, self.n_head, self.hd)
            k = (h @ w[b + "attn_k.weight"].T).reshape(T, self.n_kv, self.hd)
            v = (h @ w[b + "attn_v.weight"].T).reshape(T, self.n_kv, self.hd)
            q = self.rope(q, pos)
            k = self.rope(k, pos)
            att = np.empty((T, self.n_head, self.hd), dtype=np.float32)
            for hh in range(self.n_head):
                kv = hh // g
                s = (q[:, hh, :] @ k[:, kv, :].T) * scale + mask
                s = s - s.max(axis=1, keepdims=True)
                p = np.exp(s)
                p /= p.sum(axis=1, keepdims=True)
                att[:, hh, :] = p @ v[:, kv, :]
            x = x + att.reshape(T, self.dim) @ w[b + "attn_output.weight"].T
            h = self.rms(x, w[b + "ffn_norm.weight"])
            gt = h @ w[b + "ffn_gate.weight"].T
            up = h @ w[b + "ffn_up.weight"].T
            act = gt / (1.0 + np.exp(-gt)) * up
            x = x + act @ w[b + "ffn_down.weight"].T
        return self.rms(x, w["output_norm.weight"])

    def logits(self, hidden_rows):
        return hidden_rows @ self.out.T


def _gpt2_byte_decoder():
    # GPT-2's bytes_to_unicode, inverted: printable stand-in character -> byte.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) \
        + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def detokenize(m, ids):
    """Text of ids from the GGUF's own vocabulary (for reading the JSON; ids are the result)."""
    if m.tok_model == "gpt2":
        dec = _gpt2_byte_decoder()
        data = bytearray()
        for i in ids:
            piece = m.tokens[i]
            if all(ch in dec for ch in piece):
                data += bytes(dec[ch] for ch in piece)
            else:  # special/control token: keep its name
                data += piece.encode("utf-8")
        return data.decode("utf-8", errors="replace")
    return "".join(m.tokens[i] for i in ids).replace("\u2581", " ")


def log_softmax64(z):
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def read_ids(path):
    if path.endswith(".u32"):
        return np.fromfile(path, dtype="<u4").astype(np.int64).tolist()
    with open(path) as f:
        return list(ast.literal_eval(f.read().strip()))


def cmd_ppl(a):
    m = Model(a.model)
    ids = read_ids(a.ids)
    ctx = a.ctx
    n_chunk_max = len(ids) // ctx
    n_chunk = min(a.chunks, n_chunk_max) if a.chunks > 0 else n_chunk_max
    first = ctx // 2
    nll_total, count = 0.0, 0
    per_chunk, running = [], []
    t0 = time.time()
    for c in range(n_chunk):
        toks = list(ids[c * ctx:(c + 1) * ctx])
        if m.add_bos:
            toks[0] = m.bos
        h = m.hidden(toks)
        lp = log_softmax64(m.logits(h[first:ctx - 1]))
        tgt = np.asarray(toks[first + 1:ctx])
        nll = -lp[np.arange(len(tgt)), tgt]
        nll_total += float(nll.sum())
        count += len(tgt)
        per_chunk.append(float(np.exp(nll.mean())))
        running.append(float(np.exp(nll_total / count)))
        print(f"[{c + 1}] running {running[-1]:.4f} chunk {per_chunk[-1]:.4f} "
              f"({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    res = {
        "model": os.path.basename(a.model), "ids_file": a.ids, "tokens_in_file": len(ids),
        "ctx": ctx, "chunks": n_chunk, "scored_per_chunk": ctx - 1 - first,
        "add_bos": m.add_bos, "tied_output": m.tied,
        "tensor_types": sorted(set(m.types.values())),
        "arithmetic": "float32 numpy matmuls on dequantized float32 weights; float64 log-softmax",
        "ppl": float(np.exp(nll_total / count)), "mean_nll": nll_total / count,
        "per_chunk": per_chunk, "running": running, "seconds": time.time() - t0,
    }
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    print(json.dumps(res))


def tokenize(binary, model, text):
    out = subprocess.run([binary, "-m", model, "-p", text, "--ids", "--no-parse-special",
                          "--log-disable"], check=True, capture_output=True, text=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("[")][-1]
    return list(ast.literal_eval(line))


def cmd_generate(a):
    m = Model(a.model)
    results = []
    for prompt in a.prompt:
        pids = tokenize(a.llama_tokenize, a.model, prompt)
        seq = list(pids)
        out = []
        for _ in range(a.n):
            h = m.hidden(seq)
            nxt = int(np.argmax(m.logits(h[-1:])[0]))
            out.append(nxt)
            seq.append(nxt)
        results.append({"prompt": prompt, "prompt_ids": pids, "ids": out,
                        "text": detokenize(m, out)})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    res = {"model": os.path.basename(a.model), "n": a.n, "decoding": "greedy argmax, float32",
           "results": results}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ppl")
    p.add_argument("--model", required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--out")
    g = sub.add_parser("generate")
    g.add_argument("--model", required=True)
    g.add_argument("--llama-tokenize", required=True)
    g.add_argument("--prompt", action="append", required=True)
    g.add_argument("--n", type=int, default=32)
    g.add_argument("--out")
    a = ap.parse_args()
    {"ppl": cmd_ppl, "generate": cmd_generate}[a.cmd](a)


if __name__ == "__main__":
    main()
