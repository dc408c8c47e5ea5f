#!/usr/bin/env python3
"""Independent float64 numpy implementation of llama2.c's model and tokenizer (numpy only).

Reads the legacy llama2.c checkpoint (.bin): 7 int32 (dim, hidden_dim, n_layers, n_heads,
n_kv_heads, vocab_size [negative => separate classifier], seq_len), then float32:
token_embedding [V, dim], rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim],
wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim],
w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim], freq_cis_real and freq_cis_imag
[seq_len, head_size/2] each (skipped), wcls [V, dim] only if vocab_size was negative.
Tokenizer .bin: int32 max_token_length, then per token: float32 score, int32 len, bytes.

Commands:
  generate --model M.bin --tokenizer T.bin --prompt "Once upon a time" --steps 200 [--json]
      Greedy (argmax) decoding exactly like llama2.c `run -t 0 -n STEPS -i PROMPT`: STEPS counts
      positions including BOS and the prompt; stops early when the next token is BOS (1).
      stdout: the same bytes run.c prints (pieces + final "\\n"). With --json instead:
      {"text": ..., "ids": [all ids fed/produced, starting with BOS], "prompt_ids": [...]}
  logits --model M.bin --ids 1,2,3 [--ids-file F.u32] --out FILE(.f32|.npy) [--dtype f32|f64]
      stdout: {"shape": [T, V], "dtype": "float32", "file": FILE, "format": "raw"|"npy"}
      (raw = little-endian, row-major, no header)
  encode --tokenizer T.bin --text "..." [--vocab-size 512] [--no-bos]
      stdout: {"ids": [...]}
  ppl-docs --model M.bin --tokenizer T.bin --text FILE [--separator '<|endoftext|>']
           [--max-docs 200] [--ctx 512]
      Documents protocol (README.md). stdout: {"docs", "tokens_scored", "nll_sum", "mean_nll", "ppl"}
"""
import argparse
import json
import math
import os
import re
import sys

# Small matrices: BLAS threads only add contention on a 2-core machine (override by env).
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_common import log_softmax, write_array  # noqa: E402


# ---------------------------------------------------------------------------------- model

class Llama:
    def __init__(self, path):
        raw = np.fromfile(path, dtype="<i4", count=7)
        dim, hidden, L, H, KV, V, S = (int(x) for x in raw)
        shared = V > 0
        V = abs(V)
        self.dim, self.hidden, self.n_layers, self.n_heads, self.n_kv_heads = dim, hidden, L, H, KV
        self.vocab_size, self.seq_len, self.shared = V, S, shared
        hs = dim // H
        self.head_size = hs
        self.kv_dim = dim * KV // H
        kv = self.kv_dim
        f = np.fromfile(path, dtype="<f4", offset=28)
        off = 0

        def take(*shape):
            nonlocal off
            n = int(np.prod(shape))
            a = f[off:off + n].reshape(shape).astype(np.float64)
            off += n
            return a

        self.tok = take(V, dim)
        self.rms_att = take(L, dim)
        self.wq = take(L, dim, dim)
        self.wk = take(L, kv, dim)
        self.wv = take(L, kv, dim)
        self.wo = take(L, dim, dim)
        self.rms_ffn = take(L, dim)
        self.w1 = take(L, hidden, dim)
        self.w2 = take(L, dim, hidden)
        self.w3 = take(L, hidden, dim)
        self.rms_final = take(dim)
        off += 2 * S * hs // 2  # freq_cis_real, freq_cis_imag (unused, like current run.c)
        self.wcls = self.tok if shared else take(V, dim)
        if off != f.size:
            raise SystemExit(f"{path}: {f.size - off} unexpected trailing floats")

    @staticmethod
    def rmsnorm(x, w):
        return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5))

    def rope(self, x, pos, n):
        """Rotate pairs (i, i+1), i even, of the first n columns of x [T, >=n] like run.c:
        freq = 1 / 10000^((i % head_size) / head_size), angle = pos * freq."""
        i = np.arange(0, n, 2)
        freq = 1.0 / np.power(10000.0, (i % self.head_size) / self.head_size)
        ang = pos[:, None].astype(np.float64) * freq[None, :]
        c, s = np.cos(ang), np.sin(ang)
        x0, x1 = x[:, 0:n:2].copy(), x[:, 1:n:2].copy()
        x[:, 0:n:2] = x0 * c - x1 * s
        x[:, 1:n:2] = x0 * s + x1 * c
        return x

    def logits(self, ids):
        """All-position logits [T, V] for the token sequence ids (positions 0..T-1)."""
        return self.final_hidden(ids) @ self.wcls.T

    def final_hidden(self, ids):
        """Final-RMSNorm hidden states [T, dim] (full causal attention, no KV cache)."""
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        if T > self.seq_len:
            raise SystemExit(f"{T} tokens exceed seq_len {self.seq_len}")
        H, KV, hs = self.n_heads, self.n_kv_heads, self.head_size
        rep = H // KV
        pos = np.arange(T)
        neg = np.triu(np.full((T, T), -np.inf), k=1)  # additive causal mask
        x = self.tok[ids].copy()
        for l in range(self.n_layers):
            xb = self.rmsnorm(x, self.rms_att[l])
            q = xb @ self.wq[l].T
            k = xb @ self.wk[l].T
            v = xb @ self.wv[l].T
            q = self.rope(q, pos, self.dim)
            k = self.rope(k, pos, self.kv_dim)
            q = q.reshape(T, H, hs).transpose(1, 0, 2)                   # [H, T, hs]
            k = k.reshape(T, KV, hs).transpose(1, 0, 2)[np.arange(H) // rep]  # head h -> kv h//rep
            v = v.reshape(T, KV, hs).transpose(1, 0, 2)[np.arange(H) // rep]
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hs)
            s += neg
            s -= s.max(-1, keepdims=True)
            a = np.exp(s)
            a /= a.sum(-1, keepdims=True)
            o = (a @ v).transpose(1, 0, 2).reshape(T, self.dim)
            x = x + o @ self.wo[l].T
            xb = self.rmsnorm(x, self.rms_ffn[l])
            h1 = xb @ self.w1[l].T
            h3 = xb @ self.w3[l].T
            x = x + ((h1 / (1.0 + np.exp(-h1))) * h3) @ self.w2[l].T
        return self.rmsnorm(x, self.rms_final)


# ------------------------------------------------------------------------------ tokenizer

class Tokenizer:
    def __init__(self, path, vocab_size):
        data = open(path, "rb").read()
        self.max_token_length = int(np.frombuffer(data[:4], "<i4")[0])
        off = 4
        self.vocab, self.scores = [], []
        for _ in range(vocab_size):
            score = float(np.frombuffer(data[off:off + 4], "<f4")[0])
            n = int(np.frombuffer(data[off + 4:off + 8], "<i4")[0])
            self.vocab.append(data[off + 8:off + 8 + n])
            self.scores.append(score)
            off += 8 + n
        # run.c looks strings up by bsearch in a sorted copy; with unique strings that is a
        # dict. On duplicate strings we keep the first id (run.c's choice would be arbitrary).
        self.lookup = {}
        for i, s in enumerate(self.vocab):
            self.lookup.setdefault(s, i)
        # C strings stop at NUL: a piece is only what precedes its first 0 byte
        self.cstr = [s.split(b"\0", 1)[0] for s in self.vocab]

    def encode(self, text, bos=True, eos=False, fast=True):
        """Port of run.c encode(): BOS, dummy-prefix " " if text non-empty, UTF-8 codepoints
        looked up or byte-fallback (+3), then greedy best-score pair merges."""
        if isinstance(text, str):
            text = text.encode("utf-8")
        text = text.split(b"\0", 1)[0]
        tokens = []
        if bos:
            tokens.append(1)
        if len(text) > 0:
            tokens.append(self.lookup.get(b" ", -1))
        buf = bytearray()
        n = len(text)
        for j in range(n):
            c = text[j]
            if (c & 0xC0) != 0x80:
                buf = bytearray()
            buf.append(c)
            nxt = text[j + 1] if j + 1 < n else 0
            if (nxt & 0xC0) == 0x80 and len(buf) < 4:
                continue
            tid = self.lookup.get(bytes(buf), -1)
            if tid != -1:
                tokens.append(tid)
            else:
                tokens.extend(b + 3 for b in buf)
            buf = bytearray()
        tokens = self._merge_fast(tokens) if fast else self._merge_naive(tokens)
        if eos:
            tokens.append(2)
        return tokens

    def _pair(self, a, b):
        tid = self.lookup.get(self.cstr[a] + self.cstr[b], -1)
        return tid

    def _merge_naive(self, tokens):
        """run.c's loop verbatim: each round scan all adjacent pairs, merge the one whose merged
        string has the highest score (strictly greater => leftmost on ties)."""
        tokens = list(tokens)
        while True:
            best_score, best_id, best_idx = -1e10, -1, -1
            for i in range(len(tokens) - 1):
                tid = self._pair(tokens[i], tokens[i + 1])
                if tid != -1 and self.scores[tid] > best_score:
                    best_score, best_id, best_idx = self.scores[tid], tid, i
            if best_idx == -1:
                return tokens
            tokens[best_idx:best_idx + 2] = [best_id]

    def _merge_fast(self, tokens):
        """Same result as _merge_naive in O(n log n): a heap of candidate pairs ordered by
        (-score, left node's original index). Merges keep the nodes' relative order, so the
        original index orders pairs exactly as run.c's current index does. A heap entry is stale
        unless both nodes are alive, still adjacent and still hold the same token ids (a node's
        string only grows when merged, so an unchanged id means an unchanged node)."""
        import heapq
        n = len(tokens)
        if n < 2:
            return list(tokens)
        tok = list(tokens)
        nxt = list(range(1, n)) + [-1]
        prv = [-1] + list(range(n - 1))
        alive = [True] * n
        heap = []

        def push(i):
            j = nxt[i]
            if j == -1:
                return
            tid = self._pair(tok[i], tok[j])
            if tid != -1 and self.scores[tid] > -1e10:
                heapq.heappush(heap, (-self.scores[tid], i, tok[i], j, tok[j], tid))

        for i in range(n - 1):
            push(i)
        while heap:
            _, i, ti, j, tj, tid = heapq.heappop(heap)
            if not (alive[i] and alive[j] and nxt[i] == j and tok[i] == ti and tok[j] == tj):
                continue
            tok[i] = tid
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[j] != -1:
                prv[nxt[j]] = i
            if prv[i] != -1:
                push(prv[i])  # its pair with i changed
            push(i)
        out, i = [], 0
        while i != -1:
            out.append(tok[i])
            i = nxt[i]
        return out

    _BYTE = re.compile(rb"^<0x([0-9A-Fa-f]{1,2})")

    def decode(self, prev_token, token):
        """run.c decode(): strip a leading space after BOS; '<0xXX>' -> that raw byte."""
        piece = self.cstr[token]
        if prev_token == 1 and piece[:1] == b" ":
            piece = piece[1:]
        m = self._BYTE.match(piece)
        if m:
            piece = bytes([int(m.group(1), 16)])
        return piece


def safe_piece(piece):
    """run.c safe_printf(): drop empty pieces and single bytes that are neither printable
    ASCII (isprint, C locale: 0x20..0x7E) nor whitespace (isspace: \\t \\n \\v \\f \\r space)."""
    if len(piece) == 0:
        return b""
    if len(piece) == 1:
        b = piece[0]
        if not (0x20 <= b <= 0x7E or b in (0x09, 0x0A, 0x0B, 0x0C, 0x0D)):
            return b""
    return piece


def generate(model, tok, prompt, steps):
    """Greedy generation as run.c's generate(): returns (stdout bytes, ids, prompt ids)."""
    if steps <= 0 or steps > model.seq_len:
        steps = model.seq_len
    prompt_ids = tok.encode(prompt if prompt is not None else "", bos=True)
    seq = [prompt_ids[0]]
    out = bytearray()
    token, pos = prompt_ids[0], 0
    while pos < steps:
        if pos < len(prompt_ids) - 1:
            nxt = prompt_ids[pos + 1]
        else:
            lg = model.final_hidden(seq)[-1] @ model.wcls.T  # recomputes the prefix (no KV cache)
            nxt = int(np.argmax(lg))  # first maximum, like run.c's argmax
        pos += 1
        if nxt == 1:
            break
        out += safe_piece(tok.decode(token, nxt))
        token = nxt
        seq.append(nxt)
    out += b"\n"
    return bytes(out), seq, prompt_ids


# ------------------------------------------------------------------------------ perplexity

def split_documents(text, separator):
    """Lines (split on '\\n', a trailing '\\r' ignored for the comparison) equal to separator
    end a document; each document is its lines joined with '\\n' and then str.strip()-ed
    (Python's default whitespace set); empty documents are dropped."""
    docs, cur = [], []
    for line in text.split("\n"):
        if line.rstrip("\r") == separator:
            docs.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    docs.append("\n".join(cur))
    docs = [d.strip() for d in docs]
    return [d for d in docs if d]



def ppl_docs(model, tok, text, separator, max_docs, ctx):
    docs = split_documents(text, separator)[:max_docs]
    nll_sum, count = 0.0, 0
    for d in docs:
        ids = tok.encode(d, bos=True)[:ctx]
        if len(ids) < 2:
            continue
        lp = log_softmax(model.logits(ids[:-1]))  # the last token's logits are never needed
        tgt = np.asarray(ids[1:])
        nll_sum += float(-lp[np.arange(len(tgt)), tgt].sum())
        count += len(tgt)
    mean = nll_sum / count if count else float("nan")
    return {"docs": len(docs), "tokens_scored": count, "nll_sum": nll_sum, "mean_nll": mean,
            "ppl": math.exp(mean) if count else float("nan")}


# ------------------------------------------------------------------------------------ CLI


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("generate")
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--prompt", default=None)
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("logits")
    p.add_argument("--model", required=True)
    p.add_argument("--ids")
    p.add_argument("--ids-file")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p = sub.add_parser("encode")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--vocab-size", type=int, default=None)
    p.add_argument("--model", default=None, help="read vocab size from this model")
    p.add_argument("--no-bos", action="store_true")
    p = sub.add_parser("ppl-docs")
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--separator", default="<|endoftext|>")
    p.add_argument("--max-docs", type=int, default=200)
    p.add_argument("--ctx", type=int, default=512)
    a = ap.parse_args(argv)

    if a.cmd == "encode":
        V = a.vocab_size or (Llama(a.model).vocab_size if a.model else 512)
        print(json.dumps({"ids": Tokenizer(a.tokenizer, V).encode(a.text, bos=not a.no_bos)}))
        return
    model = Llama(a.model)
    if a.cmd == "generate":
        tok = Tokenizer(a.tokenizer, model.vocab_size)
        text, ids, pids = generate(model, tok, a.prompt, a.steps)
        if a.json:
            print(json.dumps({"text": text.decode("utf-8", errors="replace"), "ids": ids,
                              "prompt_ids": pids}))
        else:
            sys.stdout.buffer.write(text)
            sys.stdout.flush()
    elif a.cmd == "logits":
        if a.ids_file:
            ids = np.fromfile(a.ids_file, dtype="<u4").astype(np.int64)
        elif a.ids:
            ids = [int(t) for t in a.ids.split(",") if t.strip()]
        else:
            raise SystemExit("give --ids or --ids-file")
        print(json.dumps(write_array(model.logits(ids), a.out, a.dtype)))
    else:
        tok = Tokenizer(a.tokenizer, model.vocab_size)
        with open(a.text, "r", encoding="utf-8", newline="") as f:  # no newline translation
            text = f.read()
        print(json.dumps(ppl_docs(model, tok, text, a.separator, a.max_docs, a.ctx)))


if __name__ == "__main__":
    main()
