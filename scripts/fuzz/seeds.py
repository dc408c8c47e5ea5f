#!/usr/bin/env python3
"""Small seed inputs for scripts/fuzz/run.sh (written fresh; nothing here is a model).

    seeds.py llama2c FILE        a tiny random llama2.c checkpoint (dim 16, 2 layers, vocab 512)
    seeds.py KIND DIR            seeds for harness KIND: gguf, safetensors, llama2c, tokenizers, http, hf
    seeds.py hf-shards DIR       the llama3 fixture's model.safetensors cut into two shards (the hf harness's)

hf and hf-shards read the committed tiny checkpoints in FUZZ_HF_FIXTURES (Tests/Fixtures/arch).
"""
import json, os, struct, sys

import numpy as np

rng = np.random.default_rng(25)


def llama2c_bytes(dim=16, hidden=32, layers=2, heads=2, kv=2, vocab=512, seq=32):
    hs = dim // heads
    parts = [struct.pack("<7i", dim, hidden, layers, heads, kv, vocab, seq)]
    shapes = [(vocab, dim)] + [(layers, dim)] + [(layers, dim, dim)] + [(layers, kv * hs, dim)] * 2 + [(layers, dim, dim)] \
        + [(layers, dim)] + [(layers, hidden, dim), (layers, dim, hidden), (layers, hidden, dim)] + [(dim,)] + [(seq, hs // 2)] * 2
    for s in shapes:
        parts.append((rng.standard_normal(s) * 0.1).astype("<f4").tobytes())
    return b"".join(parts)


def gguf_seeds(d):
    import gguf
    for k, qt in enumerate([gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0]):
        path = os.path.join(d, f"tiny-{k}.gguf")
        w = gguf.GGUFWriter(path, "llama")
        w.add_block_count(1); w.add_embedding_length(32); w.add_feed_forward_length(64)
        w.add_head_count(2); w.add_head_count_kv(1); w.add_context_length(64)
        w.add_rope_freq_base(10000.0); w.add_layer_norm_rms_eps(1e-5)
        toks = ["<unk>", "<s>", "</s>", "a", "b", "c", "d", "e"]
        w.add_tokenizer_model("llama"); w.add_token_list(toks)
        w.add_token_scores([-float(i) for i in range(8)]); w.add_token_types([2, 3, 3, 1, 1, 1, 1, 1])
        w.add_bos_token_id(1); w.add_eos_token_id(2)

        def t(name, shape, quant=True):
            x = (rng.standard_normal(shape) * 0.1).astype(np.float32)
            if quant and qt != gguf.GGMLQuantizationType.F32 and len(shape) == 2:
                w.add_tensor(name, gguf.quants.quantize(x, qt), raw_dtype=qt)
            else:
                w.add_tensor(name, x)
        t("token_embd.weight", (8, 32)); t("blk.0.attn_norm.weight", (32,), False)
        t("blk.0.attn_q.weight", (32, 32)); t("blk.0.attn_k.weight", (16, 32)); t("blk.0.attn_v.weight", (16, 32))
        t("blk.0.attn_output.weight", (32, 32)); t("blk.0.ffn_norm.weight", (32,), False)
        t("blk.0.ffn_gate.weight", (64, 32)); t("blk.0.ffn_down.weight", (32, 64)); t("blk.0.ffn_up.weight", (64, 32))
        t("output_norm.weight", (32,), False)
        w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def safetensors_bytes(tensors):
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, (dtype, arr) in tensors.items():
        b = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def shard_split(path):
    """A safetensors file's tensors in two shards: {file name: (bytes, tensor names)}."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    names = sorted(header, key=lambda t: header[t]["data_offsets"][0])
    out = {}
    for part, group in enumerate([names[: len(names) // 2], names[len(names) // 2:]]):
        tensors = {}
        for t in group:
            b, e = header[t]["data_offsets"]
            arr = np.frombuffer(raw[8 + n + b: 8 + n + e], dtype=np.uint8)
            tensors[t] = (header[t]["dtype"], arr, header[t]["shape"])
        h, data = {"__metadata__": {"format": "pt"}}, b""
        for t, (dtype, arr, shape) in tensors.items():
            h[t] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + arr.size]}
            data += arr.tobytes()
        hb = json.dumps(h).encode()
        hb += b" " * (-len(hb) % 8)
        out[f"model-{part + 1:05d}-of-00002.safetensors"] = (struct.pack("<Q", len(hb)) + hb + data, group)
    return out


def main():
    kind, out = sys.argv[1], sys.argv[2]
    if kind == "llama2c" and not os.path.isdir(out) and out.endswith(".bin"):
        open(out, "wb").write(llama2c_bytes())
        return
    os.makedirs(out, exist_ok=True)
    def put(name, b):
        open(os.path.join(out, name), "wb").write(b)
    if kind == "gguf":
        gguf_seeds(out)
    elif kind == "safetensors":
        put("a.safetensors", safetensors_bytes({"wte.weight": ("F32", rng.standard_normal((8, 4)).astype("<f4")),
                                                "h.0.ln_1.bias": ("F16", rng.standard_normal(4).astype("<f2")),
                                                "h.0.attn.c_attn.weight": ("BF16", (rng.integers(0, 1 << 16, (4, 12))).astype("<u2"))}))
    elif kind == "llama2c":
        put("tiny.bin", llama2c_bytes())
        put("one-layer.bin", llama2c_bytes(layers=1))
    elif kind == "tokenizers":
        texts = [b"Once upon a time, there was a little girl named Lily.", b"  leading spaces\n\nand lines\t tabs",
                 "caf\u00e9 \u00fcber \u4e2d\u6587 \U0001F600".encode(), b"<s> </s> <|endoftext|> <0x0A>", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
        for i, t in enumerate(texts):
            for mode in range(3):
                put(f"text-{mode}-{i}", bytes([mode]) + t)
        put("blob-llama2c", bytes([3]) + open(os.environ.get("FUZZ_LLAMA2C_TOKENIZER", "/dev/null"), "rb").read()[:4096])
    elif kind == "http":
        reqs = [b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"prompt\": \"Once\", \"n\": 1}",
                b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n",
                b"GET /v1/models HTTP/1.1\r\nConnection: keep-alive\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
                b"GET / HTTP/1.1\r\nHo\xffst: x\r\n\xff\r\n"]
        for i, r in enumerate(reqs):
            put(f"req-{i}", r)
    elif kind == "hf":
        # The harness's first byte picks the file (0 config.json of fixture k = second byte,
        # 1 the shard index, 2 tokenizer.json, 3 tokenizer_config.json 0xFF generation_config.json).
        root = os.environ["FUZZ_HF_FIXTURES"]
        dirs = [d for d in sorted(os.listdir(root)) if os.path.exists(os.path.join(root, d, "config.json"))]
        read = lambda d, n: open(os.path.join(root, d, n), "rb").read() if os.path.exists(os.path.join(root, d, n)) else b""
        toks = set()
        for k, d in enumerate(dirs):
            put(f"config-{d}", bytes([0, k]) + read(d, "config.json"))
            toks.add(read(d, "tokenizer.json"))
            put(f"tokcfg-{d}", bytes([3]) + read(d, "tokenizer_config.json") + b"\xff" + read(d, "generation_config.json"))
        for i, t in enumerate(sorted(toks)):
            put(f"tokenizer-{i}", bytes([2]) + t)
        split = shard_split(os.path.join(root, "llama3", "model.safetensors"))
        weight_map = {t: n for n, (_, group) in split.items() for t in group}
        put("index", bytes([1]) + json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}).encode())
    elif kind == "hf-shards":
        for n, (b, _) in shard_split(os.path.join(os.environ["FUZZ_HF_FIXTURES"], "llama3", "model.safetensors")).items():
            put(n, b)
    else:
        sys.exit(f"unknown seed kind {kind}")


main()
