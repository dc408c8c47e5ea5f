#!/usr/bin/env python3
"""An off-grid float reference from a dequantized checkpoint (issue 27's fair side-by-side).

The only SmolLM2 and Gemma 3 weights here are quantized GGUFs. Their F32 (`convert --type f32
--format gguf`) lies exactly on its source type's grid, so a quantizer that picks the source type
reproduces it and a comparison against it measures who guesses the grid, not who quantizes
better. This script moves every weight of every matrix off the grid by a seeded uniform dither
of one grid step: within each block of 32 weights of a row the step is estimated as the smallest
gap between its distinct values (exactly q4_1's / q8_0's d where the block uses two adjacent
levels, at most a few steps otherwise), and each weight gets U(-step/2, +step/2). The result is a
continuous weight distribution of the same shape and scale, a model about as good as the source
(its perplexity is printed by the caller), that no quantizer's grid contains. Vectors (norms,
biases) are left as they are.

    python3 scripts/quality/offgrid_reference.py REF-F32.gguf OUT.gguf [--seed 27]

REF-F32.gguf must be an all-float GGUF (F32 matrices); OUT.gguf is a copy with the matrices
dithered in place (same metadata, tokenizer and layout).
"""
import argparse
import shutil
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType


def block_steps(w: np.ndarray) -> np.ndarray:
    """The grid step of each 32-weight block of w (shape (blocks, 32)); 0 for a constant block."""
    s = np.sort(w, axis=1)
    gaps = np.diff(s, axis=1)
    # fp32 rounding of dequantized values can leave near-equal neighbours: ignore gaps below
    # 1e-4 of the block's range
    rng = (s[:, -1] - s[:, 0])[:, None]
    gaps = np.where(gaps > 1e-4 * rng, gaps, np.inf)
    step = gaps.min(axis=1)
    return np.where(np.isfinite(step), step, 0.0).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=27)
    a = ap.parse_args()
    try:
        src = GGUFReader(a.src)
    except (OSError, ValueError) as e:
        print(f"error: {a.src}: not a readable GGUF file ({e})", file=sys.stderr)
        return 1
    for t in src.tensors:
        if t.tensor_type != GGMLQuantizationType.F32 and len(t.shape) > 1:
            print(f"error: {a.src}: tensor {t.name} is {t.tensor_type.name}, not F32: convert it with --type f32 --format gguf first",
                  file=sys.stderr)
            return 1
    del src
    shutil.copyfile(a.src, a.out)
    r = GGUFReader(a.out, "r+")
    rng = np.random.default_rng(a.seed)
    done = 0
    for t in r.tensors:
        if t.tensor_type != GGMLQuantizationType.F32 or len(t.shape) < 2 or t.n_elements % 32:
            continue
        w = np.asarray(t.data).reshape(-1, 32)
        step = block_steps(w)
        w += (rng.random(w.shape, dtype=np.float32) - 0.5) * step[:, None]
        done += 1
        print(f"{t.name}: median step {float(np.median(step)):.3g}", file=sys.stderr)
    r.data.flush()
    print(f"{a.out}: {done} matrices dithered by one grid step (seed {a.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
