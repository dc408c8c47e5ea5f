#!/usr/bin/env python3
"""Self-checks for the reference oracles (numpy only; the `safetensors` pip package is used
for one optional cross-check when it is importable). Runs in well under a minute.

    python3 Tests/reference/selfcheck.py

Prints one line per check and ends with "N passed, M failed"; exit status 1 on any failure.
The llama checks need the shared data folder ($QUANTLM_SHARED or ../shared next to the repo).
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import make_gpt2_checkpoint as mk  # noqa: E402
import gpt2_ref  # noqa: E402
import llama_ref  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
RESULTS = []


def shared_root():
    return os.environ.get("QUANTLM_SHARED") or os.path.join(os.path.dirname(REPO), "shared")


def check(name):
    def deco(fn):
        t = time.time()
        try:
            msg = fn()
            RESULTS.append((name, True))
            print(f"PASS {name} ({time.time() - t:.1f}s){': ' + msg if msg else ''}")
        except Exception as e:  # noqa: BLE001
            RESULTS.append((name, False))
            print(f"FAIL {name}: {e}")
            traceback.print_exc(limit=3)
        return fn
    return deco


TMP = tempfile.mkdtemp(prefix="quantlm-selfcheck-")
BASE = ["--n-layer", "2", "--n-embd", "32", "--n-head", "4", "--n-ctx", "64", "--seed", "7",
        "--no-tokenizer"]


def build(name, *extra):
    out = os.path.join(TMP, name)
    if os.path.exists(os.path.join(out, "config.json")):
        return out  # built earlier in this run with the same arguments
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        mk.main(["--out", out] + BASE + list(extra))
    return out


def run_cli(script, *args):
    r = subprocess.run([sys.executable, os.path.join(HERE, script)] + list(args),
                       capture_output=True, check=True)
    return r.stdout


IDS = np.array([50256, 464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13, 198, 40, 1101, 3],
               dtype=np.int64)


@check("safetensors: round trip F32/F16/BF16, header alignment, bf16 round-to-nearest-even")
def _():
    rng = np.random.default_rng(1)
    t = {"a": rng.standard_normal((3, 5)).astype(np.float32), "b": rng.standard_normal(7).astype(np.float32),
         "c": rng.standard_normal((2, 2, 2)).astype(np.float32)}
    p = os.path.join(TMP, "rt.safetensors")
    st.save_file(t, p, dtype={"a": "F32", "b": "F16", "c": "BF16"}, metadata={"k": "v"})
    h, meta, start = st.read_header(p)
    assert start % 8 == 0 and meta == {"k": "v"}
    back = st.load_file(p)
    assert np.array_equal(back["a"], t["a"])
    assert np.array_equal(back["b"], t["b"].astype(np.float16))
    assert back["c"].dtype == np.float32
    # bf16 RNE on hand-picked bit patterns
    u = np.array([0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001, 0x7F7FFFFF, 0xFF800000, 0x00000001],
                 dtype=np.uint32)
    got = st.f32_to_bf16_bits(u.view(np.float32))
    want = np.array([0x3F80, 0x3F80, 0x3F82, 0x3F81, 0x7F80, 0xFF80, 0x0000], dtype=np.uint16)
    assert np.array_equal(got, want), [hex(x) for x in got]
    assert np.isnan(st.bf16_bits_to_f32(st.f32_to_bf16_bits(np.array([np.nan], np.float32))))[0]
    # relative error bound of bf16 rounding
    x = rng.standard_normal(10000).astype(np.float32)
    y = st.bf16_bits_to_f32(st.f32_to_bf16_bits(x))
    assert np.max(np.abs(y - x) / np.abs(x)) <= 2.0 ** -8
    assert np.array_equal(back["c"], st.bf16_bits_to_f32(st.f32_to_bf16_bits(t["c"])))


@check("safetensors: interoperates with the pip `safetensors` package (optional)")
def _():
    try:
        from safetensors.numpy import load_file, save_file
    except ImportError:
        return "skipped: safetensors not importable"
    ck = build("interop", "--dtype", "f16", "--with-lm-head")
    theirs = load_file(os.path.join(ck, "model.safetensors"))
    mine = st.load_file(os.path.join(ck, "model.safetensors"))
    assert theirs.keys() == mine.keys()
    for k in mine:
        assert theirs[k].dtype == mine[k].dtype and np.array_equal(theirs[k], mine[k]), k
    p = os.path.join(TMP, "theirs.safetensors")
    save_file({"x": np.arange(6, dtype=np.float32).reshape(2, 3), "y": np.ones(4, np.float16)}, p)
    b = st.load_file(p)
    assert np.array_equal(b["x"], np.arange(6, dtype=np.float32).reshape(2, 3)) and b["y"].dtype == np.float16
    return "read theirs and they read ours (F32/F16)"


@check("make_gpt2_checkpoint: deterministic bytes, HF names/shapes, Conv1D [in,out], mask buffer")
def _():
    a = build("det_a")
    b = build("det_b")
    for f in ("config.json", "model.safetensors"):
        assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read(), f
    h, _, _ = st.read_header(os.path.join(a, "model.safetensors"))
    assert h["wte.weight"]["shape"] == [50257, 32] and h["wpe.weight"]["shape"] == [64, 32]
    assert h["h.1.attn.c_attn.weight"]["shape"] == [32, 96]
    assert h["h.1.mlp.c_fc.weight"]["shape"] == [32, 128]
    assert h["h.1.mlp.c_proj.weight"]["shape"] == [128, 32]
    assert h["h.0.attn.bias"]["shape"] == [1, 1, 64, 64] and h["h.0.attn.bias"]["dtype"] == "F32"
    assert "lm_head.weight" not in h
    w = st.load_file(os.path.join(a, "model.safetensors"))
    assert np.array_equal(w["h.0.attn.bias"][0, 0], np.tril(np.ones((64, 64), np.float32)))
    cfg = json.load(open(os.path.join(a, "config.json")))
    assert cfg["model_type"] == "gpt2" and cfg["activation_function"] == "gelu_new"
    assert abs(np.std(w["h.0.mlp.c_fc.weight"]) - 0.02) < 0.002
    assert abs(np.mean(w["ln_f.weight"]) - 1.0) < 0.05


@check("make_gpt2_checkpoint: copies the shared GPT-2 tokenizer as vocab.json / merges.txt")
def _():
    src = os.path.join(shared_root(), "models", "gpt2-tokenizer")
    if not os.path.isfile(os.path.join(src, "encoder.json")):
        raise RuntimeError(f"shared GPT-2 tokenizer missing at {src}: set QUANTLM_SHARED")
    out = os.path.join(TMP, "with_tok")
    run_cli("make_gpt2_checkpoint.py", "--out", out, "--n-layer", "1", "--n-embd", "8", "--n-head", "2",
            "--n-ctx", "8", "--vocab", "50257")
    for a, b in (("vocab.json", "encoder.json"), ("merges.txt", "vocab.bpe")):
        assert open(os.path.join(out, a), "rb").read() == open(os.path.join(src, b), "rb").read(), a
    assert len(json.load(open(os.path.join(out, "vocab.json")))) == 50257


@check("gpt2_ref: causality (prefix logits == first rows of longer sequence)")
def _():
    m = gpt2_ref.GPT2(build("base"))
    full = m.logits(IDS)
    for k in (1, 5, 11):
        d = np.abs(m.logits(IDS[:k]) - full[:k]).max()
        assert d < 1e-12, (k, d)
    # changing a later token must not change earlier logits, and must change later ones
    ids2 = IDS.copy()
    ids2[8] = 999
    f2 = m.logits(ids2)
    assert np.abs(f2[:8] - full[:8]).max() < 1e-12 and np.abs(f2[8:] - full[8:]).max() > 1e-6


@check("gpt2_ref: prefix/no-prefix, lm_head present/absent, sharded/unsharded give identical logits")
def _():
    ref = gpt2_ref.GPT2(build("base")).logits(IDS)
    variants = {
        "prefix": ("--prefix", "transformer."),
        "lmhead": ("--with-lm-head",),
        "prefix_lmhead_sharded3": ("--prefix", "transformer.", "--with-lm-head", "--shards", "3"),
        "sharded2_nomask": ("--shards", "2", "--no-mask-buffer"),
    }
    for name, extra in variants.items():
        ck = build(name, *extra)
        if "--shards" in extra:
            idx = json.load(open(os.path.join(ck, "model.safetensors.index.json")))
            files = sorted(set(idx["weight_map"].values()))
            K = int(extra[extra.index("--shards") + 1])
            assert len(files) == K and files[0] == f"model-00001-of-{K:05d}.safetensors", files
            assert not os.path.exists(os.path.join(ck, "model.safetensors"))
            sizes = sum(os.path.getsize(os.path.join(ck, f)) for f in files)
            assert idx["metadata"]["total_size"] <= sizes
        if "--prefix" in extra:
            h, _, _ = st.read_header(os.path.join(ck, sorted(f for f in os.listdir(ck) if f.endswith(".safetensors"))[0]))
            assert all(k.startswith("transformer.") or k == "lm_head.weight" for k in h), list(h)[:3]
        got = gpt2_ref.GPT2(ck).logits(IDS)
        assert np.array_equal(got, ref), (name, np.abs(got - ref).max())
    return "4 variants bit-identical"


@check("gpt2_ref: f16 and bf16 checkpoints == f32 weights rounded then upcast")
def _():
    base = gpt2_ref.GPT2(build("base"))
    for dt in ("f16", "bf16"):
        m = gpt2_ref.GPT2(build("half_" + dt, "--dtype", dt))
        for k, v in base.w.items():
            if k.endswith("attn.bias") and v.ndim == 4:
                want = v  # the mask buffer stays F32
            elif dt == "f16":
                want = v.astype(np.float16).astype(np.float64)
            else:
                want = st.bf16_bits_to_f32(st.f32_to_bf16_bits(v.astype(np.float32))).astype(np.float64)
            assert np.array_equal(m.w[k], want), (dt, k)
        base_rounded = gpt2_ref.GPT2(build("base"))
        base_rounded.w = dict(m.w)
        base_rounded.head = base_rounded.w["wte.weight"]
        got = m.logits(IDS)
        assert np.array_equal(got, base_rounded.logits(IDS))
        rel = np.abs(got - base.logits(IDS)).max() / np.abs(base.logits(IDS)).max()
        assert rel < (0.01 if dt == "f16" else 0.05), (dt, rel)


@check("gpt2_ref: CLI logits raw .f32 and .npy agree with the in-process forward")
def _():
    ck = build("base")
    ref = gpt2_ref.GPT2(ck).logits(IDS)
    raw = os.path.join(TMP, "l.f32")
    info = json.loads(run_cli("gpt2_ref.py", "logits", "--ckpt", ck, "--ids", ",".join(map(str, IDS)), "--out", raw))
    assert info["shape"] == [len(IDS), 50257] and info["dtype"] == "float32" and info["format"] == "raw"
    got = np.fromfile(raw, "<f4").reshape(info["shape"])
    assert np.array_equal(got, ref.astype(np.float32))
    npy = os.path.join(TMP, "l.npy")
    json.loads(run_cli("gpt2_ref.py", "logits", "--ckpt", ck, "--ids", ",".join(map(str, IDS)), "--out", npy))
    assert np.array_equal(np.load(npy), ref.astype(np.float32))


def hf_literal_ppl(model, ids, ctx, stride):
    """Hugging Face's perplexity-doc loop transcribed literally: labels masked with -100 outside
    the last trg_len positions, then the causal-LM shift (logits[:-1] vs labels[1:])."""
    N = len(ids)
    prev_end, nll, cnt = 0, 0.0, 0
    for begin in range(0, N, stride):
        end = min(begin + ctx, N)
        trg_len = end - prev_end
        inp = ids[begin:end]
        labels = inp.copy()
        if trg_len < len(labels):
            labels[:len(labels) - trg_len] = -100
        lp = gpt2_ref.log_softmax(model.logits(inp))[:-1]
        lab = labels[1:]
        for j, y in enumerate(lab):
            if y != -100:
                nll -= lp[j, y]
                cnt += 1
        prev_end = end
        if end == N:
            break
    return nll, cnt


@check("gpt2_ref: ppl-stride == HF loop (stride<ctx scores every token once); stride==ctx == separate chunks")
def _():
    ck = build("base")
    m = gpt2_ref.GPT2(ck)
    rng = np.random.default_rng(3)
    N = 150
    ids = rng.integers(0, 50257, size=N)
    idf = os.path.join(TMP, "ids.u32")
    ids.astype("<u4").tofile(idf)
    for ctx, stride in ((64, 16), (64, 48), (40, 40), (64, 64), (30, 37)):
        r = json.loads(run_cli("gpt2_ref.py", "ppl-stride", "--ckpt", ck, "--ids-file", idf,
                               "--ctx", str(ctx), "--stride", str(stride)))
        nll, cnt = hf_literal_ppl(m, ids, ctx, stride)
        assert r["tokens_scored"] == cnt, (ctx, stride, r, cnt)
        assert abs(r["nll_sum"] - nll) < 1e-9 * abs(nll), (ctx, stride)
        assert abs(r["ppl"] - math.exp(nll / cnt)) < 1e-9 * r["ppl"]
        if stride < ctx:
            assert cnt == N - 1
        if stride == ctx:
            s, c = 0.0, 0
            for b in range(0, N, ctx):
                chunk = ids[b:b + ctx]
                lp = gpt2_ref.log_softmax(m.logits(chunk))
                s -= lp[np.arange(len(chunk) - 1), chunk[1:]].sum()
                c += len(chunk) - 1
            assert c == cnt and abs(s / c - r["mean_nll"]) < 1e-12 * s / c, (s / c, r)
    return "5 (ctx, stride) settings"


def stories():
    root = os.path.join(shared_root(), "models", "stories260K")
    m, t = os.path.join(root, "stories260K.bin"), os.path.join(root, "tok512.bin")
    if not (os.path.exists(m) and os.path.exists(t)):
        raise RuntimeError(f"shared data missing at {root}: set QUANTLM_SHARED")
    return m, t


@check("llama_ref: generate == llama2.c run.c fixture, byte for byte (stories260K, 200 steps)")
def _():
    m, t = stories()
    out = subprocess.run([sys.executable, os.path.join(HERE, "llama_ref.py"), "generate", "--model", m,
                          "--tokenizer", t, "--prompt", "Once upon a time", "--steps", "200"],
                         capture_output=True, check=True).stdout
    want = open(os.path.join(REPO, "Tests", "Fixtures", "stories260K_greedy_200.txt"), "rb").read()
    assert out == want, f"differs at byte {next(i for i in range(min(len(out), len(want)) + 1) if out[i:i+1] != want[i:i+1])}"
    return f"{len(out)} bytes"


@check("llama_ref: tokenizer fast merge == run.c's naive loop; BOS/dummy prefix/byte fallback")
def _():
    m, t = stories()
    tok = llama_ref.Tokenizer(t, 512)
    texts = ["", " ", "Once upon a time", "héllo wörld 😀 日本\n\ttabs", "\x7f\x01 ctrl", "a" * 50,
             "Lily and Ben went to the park. They saw a big dog!"]
    for s in texts:
        f, n = tok.encode(s), tok.encode(s, fast=False)
        assert f == n, (s, f, n)
    assert tok.encode("") == [1]
    assert tok.encode("Once upon a time") == [1, 403, 407, 261, 378]
    # "日" is not in the 512-token vocab: BOS, dummy-prefix " " (410), then its 3 UTF-8 bytes + 3
    assert tok.encode("日") == [1, 410] + [b + 3 for b in "日".encode()]
    ids = tok.encode("The cat sat.")
    dec = b"".join(tok.decode(ids[i - 1], ids[i]) for i in range(1, len(ids)))
    assert dec == b"The cat sat.", dec  # leading space stripped after BOS


@check("llama_ref: full-sequence logits == per-position recomputation; ppl-docs == direct sum")
def _():
    m, t = stories()
    model = llama_ref.Llama(m)
    tok = llama_ref.Tokenizer(t, model.vocab_size)
    ids = tok.encode("Once upon a time, there was a little dog named Max.")
    full = model.logits(ids)
    for k in (1, 4, len(ids)):
        assert np.abs(model.logits(ids[:k]) - full[:k]).max() < 1e-12
    text = "first story\n\n<|endoftext|>\n  second one.  \n<|endoftext|>\n\n<|endoftext|>\nthird"
    docs = llama_ref.split_documents(text, "<|endoftext|>")
    assert docs == ["first story", "second one.", "third"], docs
    p = os.path.join(TMP, "docs.txt")
    open(p, "w").write(text)
    r = json.loads(run_cli("llama_ref.py", "ppl-docs", "--model", m, "--tokenizer", t, "--text", p, "--ctx", "4"))
    s, c = 0.0, 0
    for d in docs:
        di = tok.encode(d)[:4]
        for q in range(1, len(di)):
            lg = model.logits(di[:q])[-1]
            s -= lg[di[q]] - (lg.max() + np.log(np.exp(lg - lg.max()).sum()))
            c += 1
    assert r["docs"] == 3 and r["tokens_scored"] == c and abs(r["nll_sum"] - s) < 1e-9 * s, (r, s, c)


if __name__ == "__main__":
    import shutil
    shutil.rmtree(TMP, ignore_errors=True)
    npass = sum(ok for _, ok in RESULTS)
    nfail = len(RESULTS) - npass
    print(f"{npass} passed, {nfail} failed")
    sys.exit(1 if nfail else 0)
