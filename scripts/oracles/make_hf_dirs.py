#!/usr/bin/env python3
"""Writes real Hugging Face checkpoint directories of SmolLM2-135M-Instruct and Gemma 3 270M
into ~/.cache/quantlm/hf/ (never into the repository), written by transformers itself.

transformers reads each fetched GGUF (dequantizing its blocks), the model is rebuilt with
from_config, its state dict loaded, and save_pretrained writes config.json, model.safetensors
(bf16), generation_config.json; the tokenizer transformers builds from the GGUF vocabulary is
saved beside it (tokenizer.json, tokenizer_config.json, chat_template.jinja).

Needs torch + transformers (oracles only; CI does not run this). Usage:
    python3 scripts/oracles/make_hf_dirs.py [--models DIR] [--out DIR] [--dtype bfloat16|float32]
"""
import argparse, os, sys

MODELS = [
    ("SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gemma-3-270m", "gemma-3-270m-q4_k_m.gguf"),
]

def restore_pre_tokenizer(gguf_path, out):
    """transformers' GGUF tokenizer converter writes a plain ByteLevel pre-tokenizer whatever
    tokenizer.ggml.pre says. For "smollm" (SmolLM2's own tokenizer.json on the Hub: single
    digits, then ByteLevel) the pre-tokenizer is put back, so the directory tokenizes as the
    model was trained (and as the GGUF path does)."""
    import json
    from gguf import GGUFReader
    r = GGUFReader(gguf_path)
    f = r.fields.get("tokenizer.ggml.pre")
    pre = bytes(f.parts[f.data[0]]).decode() if f else None
    if pre != "smollm":
        return
    path = os.path.join(out, "tokenizer.json")
    with open(path, encoding="utf-8") as fh:
        t = json.load(fh)
    t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(t, fh, ensure_ascii=False, indent=2)
    print(f"{path}: pre-tokenizer Digits + ByteLevel (tokenizer.ggml.pre = smollm)")

def add_missing_template(name, out):
    """gemma-3-270m's GGUF has no tokenizer.chat_template, so transformers writes none; the Hub's
    directory has Gemma 3's template (Tests/Fixtures/gemma3_chat_template.jinja), put beside it."""
    import shutil
    dst = os.path.join(out, "chat_template.jinja")
    if name.startswith("gemma") and not os.path.exists(dst):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        shutil.copy(os.path.join(root, "Tests", "Fixtures", "gemma3_chat_template.jinja"), dst)
        print(f"{dst}: Gemma 3's chat template")

def main():
    ap = argparse.ArgumentParser()
    home = os.path.expanduser("~/.cache/quantlm")
    ap.add_argument("--models", default=os.environ.get("QUANTLM_MODELS", os.path.join(home, "models")))
    ap.add_argument("--out", default=os.path.join(home, "hf"))
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    args = ap.parse_args()
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        sys.exit(f"make_hf_dirs.py: needs torch and transformers ({e})")
    dtype = getattr(torch, args.dtype)
    for name, gguf in MODELS:
        src = os.path.join(args.models, gguf)
        if not os.path.exists(src):
            sys.exit(f"make_hf_dirs.py: {src} not found: run scripts/fetch_models.sh (--gemma)")
        out = os.path.join(args.out, name if args.dtype == "bfloat16" else f"{name}-{args.dtype}")
        print(f"{src} -> {out}", flush=True)
        loaded = AutoModelForCausalLM.from_pretrained(args.models, gguf_file=gguf, dtype=torch.float32)
        config = AutoConfig.from_pretrained(args.models, gguf_file=gguf)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        # A tied classifier may appear in one state dict and not the other; nothing else may.
        bad = [k for k in list(missing) + list(unexpected) if k != "lm_head.weight"]
        if bad:
            sys.exit(f"make_hf_dirs.py: {gguf}: state dict keys do not match: {bad[:5]}")
        model.to(dtype)
        model.save_pretrained(out)
        tok = AutoTokenizer.from_pretrained(args.models, gguf_file=gguf)
        tok.save_pretrained(out)
        restore_pre_tokenizer(src, out)
        add_missing_template(name, out)
        del loaded, model
    print("done")

if __name__ == "__main__":
    main()
