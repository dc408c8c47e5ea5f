#!/usr/bin/env python3
"""Minimal safetensors reader/writer in pure numpy (no `safetensors` package needed).

File layout (https://github.com/huggingface/safetensors, "Format"):
    8 bytes   u64 little-endian N = length of the JSON header
    N bytes   JSON: {name: {"dtype": "F32"|"F16"|"BF16", "shape": [...],
                            "data_offsets": [begin, end]}, "__metadata__": {str: str}}
              (we pad it with trailing spaces so the data starts 8-byte aligned, as the
               reference implementation does)
    rest      the tensor bytes, little-endian, row-major; offsets are relative to the
              start of this data section.

Supported dtypes: F32, F16, BF16. BF16 is the upper 16 bits of an IEEE f32; when writing we
round to nearest, ties to even (NaN stays NaN).

Writing streams: `SafetensorsWriter` takes the list of (name, dtype, shape) up front, writes
the header, and then accepts the tensors one at a time in that order, so a caller never has
to hold the whole model in memory.
"""
import json
import struct
import sys

import numpy as np

DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2}
_NP_STORAGE = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}


def f32_to_bf16_bits(a):
    """float array -> uint16 bf16 bit patterns, round-to-nearest-even."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)  # keep a quiet NaN
    return rounded


def bf16_bits_to_f32(bits):
    """uint16 bf16 bit patterns -> float32 (exact)."""
    b = np.asarray(bits, dtype=np.uint16)
    return (b.astype(np.uint32) << 16).view(np.float32)


def encode_tensor(array, dtype):
    """Return the little-endian bytes (as a numpy array) of `array` stored as `dtype`."""
    if dtype == "F32":
        return np.ascontiguousarray(array, dtype="<f4")
    if dtype == "F16":
        return np.ascontiguousarray(array, dtype="<f2")
    if dtype == "BF16":
        return f32_to_bf16_bits(array).astype("<u2", copy=False)
    raise ValueError(f"unsupported dtype {dtype}")


def _nbytes(dtype, shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n * DTYPE_SIZES[dtype]


class SafetensorsWriter:
    """Streaming writer: declare all tensors first, then write them in the declared order."""

    def __init__(self, path, entries, metadata=None):
        self.entries = [(str(n), str(d), [int(s) for s in shape]) for n, d, shape in entries]
        header = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        off = 0
        for name, dtype, shape in self.entries:
            if dtype not in DTYPE_SIZES:
                raise ValueError(f"unsupported dtype {dtype}")
            nb = _nbytes(dtype, shape)
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nb]}
            off += nb
        self.data_size = off
        hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
        hb += b" " * ((8 - (8 + len(hb)) % 8) % 8)
        self.f = open(path, "wb")
        self.f.write(struct.pack("<Q", len(hb)))
        self.f.write(hb)
        self.next_index = 0

    def write(self, name, array):
        ename, dtype, shape = self.entries[self.next_index]
        if name != ename:
            raise ValueError(f"expected tensor {ename}, got {name}")
        if list(np.shape(array)) != shape:
            raise ValueError(f"{name}: shape {np.shape(array)} != declared {shape}")
        enc = encode_tensor(array, dtype)
        self.f.write(enc.tobytes(order="C"))
        self.next_index += 1

    def close(self):
        if self.next_index != len(self.entries):
            raise ValueError(f"only {self.next_index} of {len(self.entries)} tensors written")
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.f.close()


def save_file(tensors, path, dtype="F32", metadata=None):
    """Write a dict {name: array} (all in one dtype, or dtype={name: dtype})."""
    names = list(tensors.keys())
    dt = (lambda n: dtype[n]) if isinstance(dtype, dict) else (lambda n: dtype)
    with SafetensorsWriter(path, [(n, dt(n), np.shape(tensors[n])) for n in names], metadata) as w:
        for n in names:
            w.write(n, tensors[n])


def read_header(path):
    """Return (header dict without __metadata__, metadata dict, data_start offset)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    return header, meta, 8 + n


def load_file(path, names=None, upcast=None):
    """Read tensors. Returns {name: numpy array}.

    F32 -> float32, F16 -> float16, BF16 -> float32 (exact upcast; bf16 has no numpy dtype).
    upcast=np.float64 (or any float dtype) converts everything to that dtype.
    The arrays are read through a read-only memmap, then copied (so the file can be closed).
    """
    header, _, start = read_header(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in header.items():
        if names is not None and name not in names:
            continue
        dtype = info["dtype"]
        if dtype not in _NP_STORAGE:
            raise ValueError(f"{name}: unsupported dtype {dtype}")
        b, e = info["data_offsets"]
        raw = mm[start + b:start + e].view(_NP_STORAGE[dtype]).reshape(info["shape"])
        arr = bf16_bits_to_f32(raw) if dtype == "BF16" else np.array(raw)
        if upcast is not None:
            arr = arr.astype(upcast)
        out[name] = arr
    del mm
    return out


if __name__ == "__main__":
    # `python3 safetensors_io.py FILE` lists the tensors of a file.
    h, m, s = read_header(sys.argv[1])
    print(json.dumps({"metadata": m, "data_start": s,
                      "tensors": {k: [v["dtype"], v["shape"]] for k, v in h.items()}}, indent=1))
