#!/usr/bin/env python3
"""Independent numpy forward of a GGUF Gemma 3 text model (general.architecture = gemma3),
written from llama.cpp's graph (src/models/gemma3.cpp at the peer's commit) and the Hugging Face
Gemma3 definition; weights read and dequantized with the `gguf` package (pip install gguf).

Model (every number from the GGUF metadata, llama.cpp's defaults where a key is absent):
  x = token_embd[ids] * sqrt(d)                                   (float32 sqrt, as llama.cpp)
  per block l:
    h = rms(x) * attn_norm                                        (norm weights as stored: the
                                                                   converter folded Gemma's +1 in)
    q, k, v = h Wq^T, h Wk^T, h Wv^T    -> heads of head_dim = attention.key_length
    q, k = rms(q_head) * attn_q_norm, rms(k_head) * attn_k_norm   (per head)
    q, k rotated NeoX-style: pairs (i, i + hd/2), angle pos * base^(-2i/hd); base =
      rope.freq_base on global layers, rope.freq_base_swa (default 10000) on local ones
    local layers: l % P < P - 1, P = attention.sliding_window_pattern (default 6); they see
      keys j with pos - j < sliding_window (llama.cpp LLAMA_SWA_TYPE_STANDARD); global: all j <= pos
    scores = (q / sqrt(head_dim)) k^T  (llama.cpp: f_attention_scale = 1/sqrt(n_embd_head_k),
      = 1/sqrt(query_pre_attn_scalar) for every Gemma 3 but the 27B), softmax, times v
    x = x + rms(att Wo^T) * post_attention_norm
    h = rms(x) * ffn_norm
    x = x + rms(down(gelu_tanh(h Wg^T) * (h Wu^T))) * post_ffw_norm
  logits = (rms(x) * output_norm) token_embd^T                    (tied classifier)

Commands (one JSON line on stdout each):
  logits --model M.gguf --ids 2,651,...|FILE --out L.f64 [--rows a:b[,c:d...]] [--dtype f64|f32]
      raw little-endian logits of the rows a..b-1, c..d-1, ... (default all) [rows, vocab];
      float64 arithmetic by default. JSON: shape, argmax per row, nll of the next ids under them;
      with --greedy N also "greedy": the argmax continuation of the first --greedy-prompt ids.
  ppl --model M.gguf (--ids IDS | --text FILE [--max-chars N] [--ids-out F.u32]) [--ctx 512] [--chunks 20] [--out R.json]
      llama-perplexity's protocol on a token stream (IDS: raw uint32 *.u32, or a JSON list; or
      FILE tokenized by sentencepiece from the GGUF vocabulary, BOS first, see spm_ids):
      chunks of CTX tokens, the first token of each chunk replaced by BOS when
      tokenizer.ggml.add_bos_token is true (Gemma: true), rows CTX/2 .. CTX-2 scored.
      float32 matmuls, float64 log-softmax.
  generate --model M.gguf --ids 2,651,... [--n 16]
      greedy (argmax) continuation of the ids, float32, full recompute per token.
"""
import argparse
import ast
import json
import os
import sys
import time

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
import numpy as np

try:
    import gguf
    from gguf.quants import dequantize
except ImportError:  # pragma: no cover
    sys.exit("gguf_gemma3_ref.py needs the gguf package: pip install gguf")


def field(r, key, default=None):
    f = r.fields.get(key)
    return default if f is None else f.contents()


class Gemma3:
    def __init__(self, path, dtype=np.float32):
        r = gguf.GGUFReader(path)
        if field(r, "general.architecture") != "gemma3":
            raise SystemExit(f"{path}: not a gemma3 GGUF")
        p = "gemma3."
        self.dt = dtype
        self.d = int(field(r, p + "embedding_length"))
        self.n_layer = int(field(r, p + "block_count"))
        self.H = int(field(r, p + "attention.head_count"))
        self.KV = int(field(r, p + "attention.head_count_kv", self.H))
        self.hd = int(field(r, p + "attention.key_length", 256))
        self.eps = float(field(r, p + "attention.layer_norm_rms_epsilon", 1e-6))
        self.base_global = float(field(r, p + "rope.freq_base", 1e6))
        self.base_local = float(field(r, p + "rope.freq_base_swa", 10000.0))
        self.window = field(r, p + "attention.sliding_window")
        self.period = int(field(r, p + "attention.sliding_window_pattern", 6))
        if field(r, p + "final_logit_softcapping"):
            raise SystemExit("final logit soft-capping is not implemented here")
        self.add_bos = bool(field(r, "tokenizer.ggml.add_bos_token", False))
        self.bos = int(field(r, "tokenizer.ggml.bos_token_id"))
        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type).astype(dtype, copy=False)
            self.w[t.name] = np.ascontiguousarray(a.reshape([int(x) for x in reversed(t.shape)]))
        self.emb = self.w["token_embd.weight"]
        self.out = self.w.get("output.weight", self.emb)
        self.vocab = self.out.shape[0]

    def is_local(self, l):
        return self.window is not None and self.window > 0 and l % self.period < self.period - 1

    def rms(self, x, g):
        ms = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True)
        return (x / np.sqrt(ms + self.eps)).astype(self.dt) * g

    def rope(self, x, base):
        T, hd = x.shape[0], self.hd
        half = hd // 2
        inv = base ** (-np.arange(half, dtype=np.float64) * 2.0 / hd)
        ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
        c = np.cos(ang).astype(self.dt)[:, None, :]
        s = np.sin(ang).astype(self.dt)[:, None, :]
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)

    def hidden(self, ids):
        """Final-normed hidden states [T, d] of a sequence starting at position 0."""
        w, T, hd = self.w, len(ids), self.hd
        x = self.emb[np.asarray(ids)] * self.dt(np.sqrt(np.float32(self.d)))
        i = np.arange(T)
        causal = i[None, :] <= i[:, None]
        band = causal & (i[:, None] - i[None, :] < (self.window or T + 1))
        scale = self.dt(1.0 / np.sqrt(hd))
        g = self.H // self.KV
        for l in range(self.n_layer):
            b = f"blk.{l}."
            loc = self.is_local(l)
            h = self.rms(x, w[b + "attn_norm.weight"])
            q = (h @ w[b + "attn_q.weight"].T).reshape(T, self.H, hd)
            k = (h @ w[b + "attn_k.weight"].T).reshape(T, self.KV, hd)
            v = (h @ w[b + "attn_v.weight"].T).reshape(T, self.KV, hd)
            q = self.rms(q, w[b + "attn_q_norm.weight"])
            k = self.rms(k, w[b + "attn_k_norm.weight"])
            base = self.base_local if loc else self.base_global
            q = self.rope(q, base) * scale
            k = self.rope(k, base)
            mask = np.where(band if loc else causal, 0.0, -np.inf).astype(self.dt)
            att = np.empty((T, self.H, hd), dtype=self.dt)
            for hh in range(self.H):
                s = q[:, hh, :] @ k[:, hh // g, :].T + mask
                s = np.exp(s - s.max(axis=1, keepdims=True))
                s /= s.sum(axis=1, keepdims=True)
                att[:, hh, :] = s @ v[:, hh // g, :]
            x = x + self.rms(att.reshape(T, self.H * hd) @ w[b + "attn_output.weight"].T, w[b + "post_attention_norm.weight"])
            h = self.rms(x, w[b + "ffn_norm.weight"])
            gt = h @ w[b + "ffn_gate.weight"].T
            up = h @ w[b + "ffn_up.weight"].T
            gelu = 0.5 * gt * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (gt + 0.044715 * gt ** 3)))
            x = x + self.rms((gelu * up).astype(self.dt) @ w[b + "ffn_down.weight"].T, w[b + "post_ffw_norm.weight"])
        return self.rms(x, w["output_norm.weight"])

    def logits(self, h):
        return h @ self.out.T


def spm_ids(path, text):
    """Token ids of `text` (BOS first when the vocabulary adds it) by Google's sentencepiece
    (pip install sentencepiece protobuf), from a ModelProto built of the GGUF's vocabulary:
    BPE with byte fallback, identity normalizer, spaces escaped to U+2581, no dummy prefix
    (tokenizer.ggml.add_space_prefix false); user-defined pieces get their U+2581 back (llama.cpp's
    converter stores their spaces as spaces). Only to produce ids for the tests, never QuantLM's."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb
    r = gguf.GGUFReader(path)
    toks, scores, types = (field(r, "tokenizer.ggml." + k) for k in ("tokens", "scores", "token_type"))
    unk = field(r, "tokenizer.ggml.unknown_token_id")
    m = pb.ModelProto()
    for i, (t, sc, ty) in enumerate(zip(toks, scores, types)):
        pc = m.pieces.add()
        pc.piece = t.replace(" ", "\u2581") if ty == 4 else t
        pc.score = sc
        pc.type = 2 if i == unk else ty        # GGUF token types are sentencepiece's piece types
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(toks)
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id = unk
    m.trainer_spec.bos_id = int(field(r, "tokenizer.ggml.bos_token_id"))
    m.trainer_spec.eos_id = int(field(r, "tokenizer.ggml.eos_token_id"))
    m.trainer_spec.pad_id = int(field(r, "tokenizer.ggml.padding_token_id", -1))
    ns = m.normalizer_spec
    ns.name, ns.add_dummy_prefix, ns.remove_extra_whitespaces, ns.escape_whitespaces = "identity", bool(field(r, "tokenizer.ggml.add_space_prefix", False)), False, True
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    ids = sp.encode(text, out_type=int)
    return ([m.trainer_spec.bos_id] if field(r, "tokenizer.ggml.add_bos_token", False) else []) + ids


def log_softmax64(z):
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def parse_ids(s):
    if os.path.exists(s):
        if s.endswith(".u32"):
            return np.fromfile(s, dtype="<u4").astype(np.int64).tolist()
        with open(s) as f:
            return list(ast.literal_eval(f.read().strip()))
    return [int(t) for t in s.split(",")]


def cmd_logits(a):
    ids = parse_ids(a.ids)
    m = Gemma3(a.model, np.float64 if a.dtype == "f64" else np.float32)
    spans = [tuple(map(int, r.split(":"))) for r in a.rows.split(",")] if a.rows else [(0, len(ids))]
    rows = [r for lo, hi in spans for r in range(lo, hi)]
    if not rows or min(rows) < 0 or max(rows) >= len(ids):
        raise SystemExit(f"--rows {a.rows} outside 0..{len(ids)}")
    z = m.logits(m.hidden(ids)[rows])
    np.ascontiguousarray(z, dtype="<f8" if a.dtype == "f64" else "<f4").tofile(a.out)
    lp = log_softmax64(z)
    tg = [(i, ids[r + 1]) for i, r in enumerate(rows) if r + 1 < len(ids)]
    nll = float(-np.mean([lp[i, t] for i, t in tg])) if tg else None
    res = {"shape": list(z.shape), "dtype": "float64" if a.dtype == "f64" else "float32", "file": a.out,
           "format": "raw", "rows": a.rows or f"0:{len(ids)}", "nll": nll, "argmax": [int(v) for v in z.argmax(-1)]}
    if a.greedy:
        res["greedy"] = greedy(m, ids[:a.greedy_prompt], a.greedy)
    print(json.dumps(res))


def greedy(m, prompt, n):
    """Greedy (argmax) continuation of `prompt` for n tokens, full recompute per token."""
    seq, out = list(prompt), []
    for _ in range(n):
        nxt = int(np.argmax(m.logits(m.hidden(seq)[-1:])[0]))
        out.append(nxt); seq.append(nxt)
    return out


def cmd_ppl(a):
    if (a.ids is None) == (a.text is None):
        raise SystemExit("give --ids or --text")
    if a.text:
        with open(a.text, encoding="utf-8", newline="") as f:
            ids = spm_ids(a.model, f.read(a.max_chars) if a.max_chars else f.read())
        if a.ids_out:
            np.asarray(ids, dtype="<u4").tofile(a.ids_out)
    m = Gemma3(a.model)
    if a.ids:
        ids = parse_ids(a.ids)
    ctx, first = a.ctx, a.ctx // 2
    n = min(a.chunks, len(ids) // ctx) if a.chunks > 0 else len(ids) // ctx
    tot, cnt, per, run = 0.0, 0, [], []
    t0 = time.time()
    for c in range(n):
        toks = list(ids[c * ctx:(c + 1) * ctx])
        if m.add_bos:
            toks[0] = m.bos
        lp = log_softmax64(m.logits(m.hidden(toks)[first:ctx - 1]))
        tgt = np.asarray(toks[first + 1:ctx])
        nll = -lp[np.arange(len(tgt)), tgt]
        tot += float(nll.sum()); cnt += len(tgt)
        per.append(float(np.exp(nll.mean()))); run.append(float(np.exp(tot / cnt)))
        print(f"[{c + 1}] running {run[-1]:.4f} chunk {per[-1]:.4f} ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    res = {"model": os.path.basename(a.model), "ctx": ctx, "chunks": n, "scored_per_chunk": ctx - 1 - first,
           "add_bos": m.add_bos, "arithmetic": "float32 matmuls on dequantized weights, float64 log-softmax",
           "ppl": float(np.exp(tot / cnt)), "mean_nll": tot / cnt, "per_chunk": per, "running": run,
           "seconds": time.time() - t0}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    print(json.dumps(res))


def cmd_generate(a):
    m = Gemma3(a.model)
    print(json.dumps({"prompt_ids": parse_ids(a.ids), "ids": greedy(m, parse_ids(a.ids), a.n), "decoding": "greedy argmax, float32"}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("logits")
    p.add_argument("--model", required=True); p.add_argument("--ids", required=True); p.add_argument("--out", required=True)
    p.add_argument("--rows"); p.add_argument("--dtype", choices=["f64", "f32"], default="f64")
    p.add_argument("--greedy", type=int, default=0, help="also: greedy continuation of the first --greedy-prompt ids for N tokens")
    p.add_argument("--greedy-prompt", type=int, default=16)
    p = sub.add_parser("ppl")
    p.add_argument("--model", required=True); p.add_argument("--ids")
    p.add_argument("--text", help="tokenize this file with sentencepiece (see spm_ids) instead of --ids")
    p.add_argument("--max-chars", type=int, help="only the first N characters of --text")
    p.add_argument("--ids-out", help="write the --text ids here (raw uint32)")
    p.add_argument("--ctx", type=int, default=512); p.add_argument("--chunks", type=int, default=20); p.add_argument("--out")
    p = sub.add_parser("generate")
    p.add_argument("--model", required=True); p.add_argument("--ids", required=True); p.add_argument("--n", type=int, default=16)
    a = ap.parse_args()
    {"logits": cmd_logits, "ppl": cmd_ppl, "generate": cmd_generate}[a.cmd](a)


if __name__ == "__main__":
    main()
