#!/usr/bin/env python3
"""Oracle for GGUF byte-level BPE vocabularies, built on Hugging Face `tokenizers` (pip install
tokenizers gguf). Independent of the Swift code: HF's BPE model, its Digits / Split / ByteLevel
pre-tokenizers and its added-token matching.

  encode GGUF CASES.json OUT.json [--wiki FILE]
                              ids of each string in CASES.json (a JSON list) and of FILE
  encode-json TOKENIZER.json CASES.json OUT.json [--wiki FILE]
                              the same with the tokenizer.json itself (Tokenizer.from_file:
                              its model, normalizer, pre-tokenizer and added tokens as written)
  pretok KIND CASES.json OUT.json
                              HF pre-tokenizer pieces for KIND (gpt2, smollm, llama3, qwen2)
Prints one JSON line with counts.
"""
import json
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")


def pre_tokenizer(kind):
    if kind in ("default", "gpt2"):
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if kind == "smollm":  # SmolLM2's tokenizer.json: Digits(individual_digits) then ByteLevel(use_regex)
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    pat = {"llama3": LLAMA3, "qwen2": QWEN2}[kind]
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pat), behavior="isolated", invert=False),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def read_gguf(path):
    from gguf import GGUFReader
    r = GGUFReader(path)
    d = {}
    for k, f in r.fields.items():
        if k.startswith("tokenizer."):
            d[k] = f.contents()
    g = lambda k: d.get("tokenizer.ggml." + k)
    return {"model": g("model"), "pre": g("pre"), "tokens": g("tokens"), "token_types": g("token_type"),
            "merges": g("merges"), "scores": g("scores"), "bos": g("bos_token_id"), "eos": g("eos_token_id"),
            "unk": g("unknown_token_id"), "pad": g("padding_token_id"), "add_bos": g("add_bos_token"),
            "add_eos": g("add_eos_token"), "add_space_prefix": g("add_space_prefix"),
            "chat_template": d.get("tokenizer.chat_template")}


def hf_tokenizer(v):
    vocab = {t: i for i, t in enumerate(v["tokens"])}
    merges = [tuple(m.split(" ")) for m in v["merges"]]
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizer(v["pre"] or "default")
    tok.decoder = decoders.ByteLevel()
    types = v["token_types"] or []
    added = [AddedToken(v["tokens"][i], special=(t == 3), normalized=False) for i, t in enumerate(types) if t in (3, 4)]
    tok.add_special_tokens([a for a in added if a.special])
    tok.add_tokens([a for a in added if not a.special])
    return tok


def main():
    cmd = sys.argv[1]
    if cmd in ("encode", "encode-json"):
        tok = Tokenizer.from_file(sys.argv[2]) if cmd == "encode-json" else hf_tokenizer(read_gguf(sys.argv[2]))
        cases = json.load(open(sys.argv[3]))
        out = {"cases": [tok.encode(c, add_special_tokens=False).ids for c in cases]}
        if "--wiki" in sys.argv:
            with open(sys.argv[sys.argv.index("--wiki") + 1], encoding="utf-8", newline="") as f:
                text = f.read()
            out["wiki"] = tok.encode(text, add_special_tokens=False).ids
        with open(sys.argv[4], "w") as f:
            json.dump(out, f)
        print(json.dumps({"cases": len(cases), "wiki_tokens": len(out.get("wiki", []))}))
    elif cmd == "pretok":
        pt = pre_tokenizer(sys.argv[2])
        cases = json.load(open(sys.argv[3]))
        bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        # Pieces come back byte-level escaped; undo the mapping to compare with raw text.
        bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        cs = bs[:] + [256 + n for n in range(256 - len(bs))]
        byte_of = {chr(c): b for b, c in zip(bs + [b for b in range(256) if b not in bs], cs)}
        res = []
        for c in cases:
            pieces = [bytes(byte_of[ch] for ch in p).decode("utf-8", "replace") for p, _ in pt.pre_tokenize_str(c)]
            res.append(pieces)
        with open(sys.argv[4], "w") as f:
            json.dump(res, f)
        print(json.dumps({"cases": len(cases)}))
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main()
