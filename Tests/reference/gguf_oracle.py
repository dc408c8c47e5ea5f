"""Oracle for QuantLM's ggml block dequantizers (Sources/CKernels/ggml_blocks.c): dequantizes
raw block bytes with the official `gguf` Python package (pip install gguf), which is an
implementation independent of QuantLM's C code.

    python3 gguf_oracle.py dequant DIR
    python3 gguf_oracle.py quant DIR
    python3 gguf_oracle.py read FILE.gguf DIR

dequant: for every DIR/NAME.bin (NAME a GGMLQuantizationType name: Q4_K, IQ4_XS, F16, ...)
holding whole blocks, writes DIR/NAME.f32 (raw little-endian float32) and prints one JSON line
{"NAME": elements, ...}.
quant: for every DIR/NAME.in.f32 (whole blocks of float32), writes the package's quantized blocks
to DIR/NAME.q (the types it can quantize: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and prints the same line.
read: opens a whole GGUF file with the package's GGUFReader, writes every tensor dequantized to
DIR/<tensor name>.f32 and prints one JSON line {"tensors": {name: {"type": TYPE, "shape": [ne0,
...]}}, "keys": [metadata keys in file order]}.
"""
import json, os, sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
from gguf import GGMLQuantizationType, GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize


def read(path, d):
    from gguf import GGUFReader
    r = GGUFReader(path)
    out = {}
    for t in r.tensors:
        y = dequantize(np.asarray(t.data), t.tensor_type).astype("<f4").reshape(-1)
        y.tofile(os.path.join(d, t.name + ".f32"))
        out[t.name] = {"type": t.tensor_type.name, "shape": [int(x) for x in t.shape]}
    print(json.dumps({"tensors": out, "keys": [k for k in r.fields.keys() if not k.startswith("GGUF.")]}))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "read":
        return read(sys.argv[2], sys.argv[3])
    if len(sys.argv) != 3 or sys.argv[1] not in ("dequant", "quant"):
        sys.exit("usage: gguf_oracle.py dequant|quant DIR | read FILE.gguf DIR")
    d = sys.argv[2]
    out = {}
    if sys.argv[1] == "quant":
        for f in sorted(os.listdir(d)):
            if f.endswith(".in.f32"):
                name = f[:-7]
                x = np.fromfile(os.path.join(d, f), dtype="<f4")
                q = quantize(x.reshape(1, -1), GGMLQuantizationType[name])
                q.astype(np.uint8).tofile(os.path.join(d, name + ".q"))
                out[name] = int(x.size)
        print(json.dumps(out))
        return
    for f in sorted(os.listdir(d)):
        if not f.endswith(".bin"):
            continue
        name = f[:-4]
        qt = GGMLQuantizationType[name]
        bs, ts = GGML_QUANT_SIZES[qt]
        raw = np.fromfile(os.path.join(d, f), dtype=np.uint8)
        assert raw.size % ts == 0, (name, raw.size, ts)
        y = dequantize(raw.reshape(-1, ts), qt).astype("<f4").reshape(-1)
        y.tofile(os.path.join(d, name + ".f32"))
        out[name] = int(y.size)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
