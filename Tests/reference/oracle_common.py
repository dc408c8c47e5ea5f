"""Helpers shared by the numpy oracles (gpt2_ref.py, llama_ref.py): log-softmax and writing
logits in the formats the Swift tests read."""

import numpy as np


def log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def write_array(arr, out, dtype):
    """Writes `arr` as .npy (name ends in .npy) or raw little-endian f32/f64; returns its description."""
    dt = np.dtype("<f8" if dtype == "f64" else "<f4")
    arr = np.ascontiguousarray(arr, dtype=dt)
    if out.endswith(".npy"):
        np.save(out, arr)
        fmt = "npy"
    else:
        arr.tofile(out)
        fmt = "raw"
    return {"shape": list(arr.shape), "dtype": "float64" if dtype == "f64" else "float32",
            "file": out, "format": fmt}
