#!/usr/bin/env python3
"""Tiny random-init transformers models, one per architecture, and what transformers computes
for them: the oracle fixtures under Tests/Fixtures/arch/<name>/ that CI reads without torch.

    python3 scripts/oracles/make_arch_fixtures.py            # every architecture
    python3 scripts/oracles/make_arch_fixtures.py qwen2 phi3 # some

Needs torch + transformers (oracles only, never CI) and, for the GGUF copies, llama.cpp's own
convert_hf_to_gguf.py (LLAMA_CPP_DIR, default the llama-cpp-python sdist the peer scripts fetch).

Per architecture <name>, the directory holds:
  config.json, model.safetensors (f32), generation_config.json  written by save_pretrained
  tokenizer.json, tokenizer_config.json (+ tokenizer.model for SentencePiece models)
  model.gguf        llama.cpp's converter on that directory, --outtype f32 (absent where the
                    converter has no such architecture: gpt_neo)
  oracle.json       the prompt's token ids, transformers' 32 greedy tokens after it, the smallest
                    top-1 / top-2 logit margin along them, versions, seed
  logits.f32        transformers' logits at every prompt position, little-endian f32,
                    [prompt_len, vocab] row-major (full f32: the check is relative RMS <= 1e-4)

Every model is seeded (torch.manual_seed + its own generator), f32, attention "eager", and every
parameter is drawn again after init (norm weights around 1 or, for the (1 + w) Gemma norms,
around 0; biases nonzero), so a wrong bias, norm offset or permutation shows in the logits. The
prompt is longer than every window the model has (sliding windows 16, GPT-Neo's local 256).
Weights are scaled so the greedy margins are far above f32 noise (oracle.json records them).
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "arch"
LLAMA_CPP = Path(os.environ.get("LLAMA_CPP_DIR", Path.home() / ".cache/quantlm/peer/llama_cpp_python-0.3.36/vendor/llama.cpp"))
SEED = 26
GREEDY = 32
WINDOW = 16          # the sliding window of mistral / gemma2 fixtures (prompt is longer)
PROMPT = 48          # prompt length for models whose windows are WINDOW
NEO_WINDOW = 256     # GPT-Neo's local window, as its config (and the GPT-3 recipe) has it
NEO_PROMPT = 272

# A fixed text to train the fixtures' tokenizers on (their merges only need to exist and be
# deterministic; the tests feed token ids).
TEXT = """QuantLM runs language models on small machines. It converts a checkpoint into one file,
maps it into memory and generates text: a story, a chat reply, a perplexity over wiki text.
Once upon a time there was a little robot who liked to count: one, two, three, 42, 1000.
The quick brown fox jumps over the lazy dog; the lazy dog does not mind. "Hello," she said.
Attention, rotary positions, sliding windows, soft caps and norms before and after each block.
""" * 4


def byte_bpe_tokenizer(vocab):
    """A byte-level BPE (GPT-2 pre-tokenizer) with `vocab` entries, special tokens last."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab - len(specials), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([TEXT], trainer=trainer)
    tok.add_special_tokens(specials)
    assert tok.get_vocab_size() == vocab, tok.get_vocab_size()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   unk_token=None, pad_token=None)


def sentencepiece_tokenizer(vocab, d, work):
    """A SentencePiece BPE with byte fallback, Gemma's pieces and ids (pad 0, eos 1, bos 2,
    unk 3, <mask>, <start_of_turn>, <end_of_turn>), no dummy prefix; written to d as
    tokenizer.model and, through transformers' GemmaTokenizer, tokenizer.json."""
    import sentencepiece as spm
    from transformers import GemmaTokenizer
    text = work / "spm_text.txt"
    text.write_text(TEXT)
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(work / "spm"), vocab_size=vocab, model_type="bpe",
                                   byte_fallback=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
                                   eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
                                   user_defined_symbols=["<mask>", "<start_of_turn>", "<end_of_turn>"],
                                   add_dummy_prefix=False, normalization_rule_name="identity", character_coverage=1.0, num_threads=1, minloglevel=2)
    (d / "tokenizer.model").write_bytes((work / "spm.model").read_bytes())
    t = GemmaTokenizer.from_pretrained(str(d))
    assert len(t) == vocab, (len(t), t.get_added_vocab())
    t.save_pretrained(d)
    tc = json.loads((d / "tokenizer_config.json").read_text())
    tc.pop("vocab_file", None)   # an absolute path of this machine
    (d / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n")


V = 320   # vocabulary of every fixture
EOS = V - 3   # <|endoftext|> of the byte-level BPE
COMMON = dict(bos_token_id=EOS, eos_token_id=EOS, vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False)

# name -> (config class name, config kwargs, tokenizer kind, gemma-style (1 + w) norms)
ARCHS = {
    "qwen2": ("Qwen2Config", dict(COMMON, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}), "bpe", False),
    # Llama 3.x: the llama3 rope scaling (every branch: head_dim 8 has wavelengths 6.3, 63, 628,
    # 6283 against 64 / 4 = 16 and 64 / 1 = 64) and tied embeddings.
    "llama3": ("LlamaConfig", dict(COMMON, tie_word_embeddings=True, head_dim=8,
                                   rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                    "original_max_position_embeddings": 64}), "bpe", False),
    "mistral": ("MistralConfig", dict(COMMON, head_dim=8, sliding_window=WINDOW,
                                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), "bpe", False),
    # head_dim 16: the queries (4 x 16) are wider than d_model 32.
    "qwen3": ("Qwen3Config", dict(COMMON, head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}), "bpe", False),
    # Soft caps small enough that tanh bends the scores and the logits; query_pre_attn_scalar =
    # head_dim, the value llama.cpp assumes for GGUF (it does not store it).
    "gemma2": ("Gemma2Config", dict(COMMON, head_dim=16, tie_word_embeddings=True, sliding_window=WINDOW, query_pre_attn_scalar=16, bos_token_id=2, eos_token_id=1, pad_token_id=0,
                                    attn_logit_softcapping=5.0, final_logit_softcapping=8.0, num_hidden_layers=4,
                                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rms_norm_eps=1e-6), "spm", True),
    "phi3": ("Phi3Config", dict(COMMON, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0},
                                original_max_position_embeddings=256, rms_norm_eps=1e-5, pad_token_id=None), "bpe", False),
    "gpt_neo": ("GPTNeoConfig", dict(vocab_size=V, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=None,
                                     attention_types=[[["global", "local"], 1]], window_size=NEO_WINDOW,
                                     max_position_embeddings=320, layer_norm_epsilon=1e-5, bos_token_id=EOS, eos_token_id=EOS,
                                     activation_function="gelu_new"), "bpe", False),
    "olmo2": ("Olmo2Config", dict(COMMON, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                                  pad_token_id=None), "bpe", False),
}


# A tied classifier scores the residual stream against the embeddings; were the token's own
# embedding the largest part of the stream, greedy would repeat the last token forever.
TIED_EMBED_STD = float(os.environ.get("TIED_EMBED_STD", "0.2"))


def randomize(model, gen, gemma_norms, tied):
    """Draws every parameter again: matrices N(0, 1/fan_in) (embeddings and an untied
    classifier N(0, 1): logits of rms ~5 give greedy margins far above f32 noise), 1-D norm
    weights 1 + N(0, 0.1²) (Gemma's stored w of (1 + w): N(0, 0.1²)), biases N(0, 0.1²)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if p.dim() == 2:
                emb = "embed" in name or name.endswith(("wte.weight", "wpe.weight", "lm_head.weight"))
                p.copy_(r * (0.5 if "wpe" in name else TIED_EMBED_STD if tied else 1.0) if emb else r / p.shape[1] ** 0.5)
            elif "norm" in name or name.split(".")[-2].startswith("ln"):
                if name.endswith(".bias"):
                    p.copy_(0.1 * r)
                else:
                    p.copy_(0.1 * r if gemma_norms else 1 + 0.1 * r)
            else:
                p.copy_(0.1 * r)


def greedy(model, ids, n):
    """n greedy tokens after ids, each from a full forward without a cache (nothing cached to
    get wrong), and the smallest top-1 minus top-2 logit along the way."""
    seq = list(ids)
    margin = float("inf")
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([seq])).logits[0, -1]
            top = torch.topk(logits, 2).values
            margin = min(margin, float(top[0] - top[1]))
            seq.append(int(torch.argmax(logits)))
    return seq[len(ids):], margin


def convert_gguf(d):
    """llama.cpp's convert_hf_to_gguf.py on d, f32. Its pre-tokenizer check hashes the token ids
    of a test string against the tokenizers of known models; a fixture's own tokenizer is none of
    them, so an unrecognized hash is answered with "gpt2" (the fixtures' pre-tokenizer is
    GPT-2's byte-level split). Nothing else of the converter is changed."""
    shim = (
        "import sys, runpy\n"
        f"sys.path.insert(0, {str(LLAMA_CPP)!r}); sys.path.insert(1, {str(LLAMA_CPP / 'gguf-py')!r})\n"
        "from conversion.base import TextModel\n"
        "orig = TextModel.get_vocab_base_pre\n"
        "def pre(self, tokenizer):\n"
        "    try: return orig(self, tokenizer)\n"
        "    except NotImplementedError: return 'gpt2'\n"
        "TextModel.get_vocab_base_pre = pre\n"
        f"sys.argv = ['convert_hf_to_gguf.py', {str(d)!r}, '--outtype', 'f32', '--outfile', {str(d / 'model.gguf')!r}]\n"
        f"runpy.run_path({str(LLAMA_CPP / 'convert_hf_to_gguf.py')!r}, run_name='__main__')\n"
    )
    r = subprocess.run([sys.executable, "-c", shim], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"convert_hf_to_gguf.py failed on {d}:\n{r.stderr[-3000:]}")


def make(name):
    cls_name, kw, tok_kind, gemma_norms = ARCHS[name]
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        f.unlink()
    torch.manual_seed(SEED)
    config = getattr(transformers, cls_name)(**kw)
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager").eval()
    gen = torch.Generator().manual_seed(SEED + sum(name.encode()))
    randomize(model, gen, gemma_norms, config.tie_word_embeddings)
    model.save_pretrained(d, safe_serialization=True)

    work = OUT.parent / f".work_{name}"
    work.mkdir(exist_ok=True)
    if tok_kind == "spm":
        sentencepiece_tokenizer(V, d, work)
    else:
        tok = byte_bpe_tokenizer(V)
        tok.save_pretrained(d)
        if name == "phi3":   # llama.cpp reads a Phi-3 tokenizer as GPT-2 BPE only when it says so
            tc = json.loads((d / "tokenizer_config.json").read_text())
            tc["tokenizer_class"] = "GPT2Tokenizer"
            (d / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n")
    for f in work.iterdir():
        f.unlink()
    work.rmdir()
    # The transformers tokenizer loads back from what was written.
    assert len(transformers.AutoTokenizer.from_pretrained(d)) == V

    n_prompt = NEO_PROMPT if name == "gpt_neo" else PROMPT
    rng = np.random.default_rng(SEED)
    prompt = [int(x) for x in rng.integers(0, V, n_prompt)]
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0].to(torch.float32).numpy()
    assert logits.shape == (n_prompt, V)
    logits.astype("<f4").tofile(d / "logits.f32")
    tokens, margin = greedy(model, prompt, GREEDY)
    # transformers' own cached generation agrees with the uncached loop.
    with torch.no_grad():
        ids = torch.tensor([prompt])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=GREEDY, do_sample=False,
                             eos_token_id=None, pad_token_id=EOS)
    assert out[0, n_prompt:].tolist() == tokens, (name, out[0, n_prompt:].tolist(), tokens)

    has_gguf = name != "gpt_neo"
    if has_gguf:
        convert_gguf(d)
    oracle = {
        "architecture": name, "model_type": config.model_type, "hf_class": type(model).__name__,
        "prompt": prompt, "greedy": tokens, "greedy_min_margin": round(margin, 6),
        "logits": {"file": "logits.f32", "dtype": "float32-le", "shape": [n_prompt, V], "rows": "every prompt position"},
        "logits_rms": float(np.sqrt(np.mean(logits.astype(np.float64) ** 2))),
        "gguf": "model.gguf" if has_gguf else None,
        "seed": SEED, "torch": torch.__version__, "transformers": transformers.__version__,
        "attn_implementation": "eager",
    }
    # One key a line, the token lists on theirs.
    (d / "oracle.json").write_text("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in oracle.items()) + "\n}\n")
    sizes = {f.name: f.stat().st_size for f in sorted(d.iterdir())}
    total = sum(sizes.values())
    assert max(sizes.values()) <= 1 << 20, sizes
    print(f"{name}: {n_prompt}-token prompt, greedy margin >= {margin:.4f}, logits rms {oracle['logits_rms']:.3f}, "
          f"{total / 1024:.0f} KiB ({', '.join(f'{k} {v // 1024}K' for k, v in sizes.items())})")


def main():
    names = sys.argv[1:] or list(ARCHS)
    for n in names:
        if n not in ARCHS:
            sys.exit(f"unknown architecture {n!r} (known: {', '.join(ARCHS)})")
    for n in names:
        make(n)


if __name__ == "__main__":
    main()
