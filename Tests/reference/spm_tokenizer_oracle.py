#!/usr/bin/env python3
"""Oracle for GGUF SentencePiece vocabularies (tokenizer.ggml.model == "llama"), built on
Google's `sentencepiece` (pip install sentencepiece protobuf gguf). Independent of the Swift
code: the vocabulary is read with the `gguf` package, turned into a sentencepiece ModelProto
(model_type BPE, byte_fallback when the vocabulary has <0xXX> pieces, identity normalizer: no
NFKC, no whitespace folding, spaces escaped to U+2581, add_dummy_prefix from
tokenizer.ggml.add_space_prefix) and encoded by sentencepiece's own BPE.

Two GGUF conventions are undone when building the proto, both from llama.cpp's converter:
user-defined pieces are stored with real spaces ("pre-normalize user-defined spaces"), so their
spaces go back to U+2581; and the unknown token is stored as a control token, so it becomes
UNKNOWN again.

  encode GGUF CASES.json OUT.json [--wiki FILE]
      OUT.json holds three encodings of each string in CASES.json (a JSON list), no BOS/EOS:
        "plain":   {"cases": ids, "decoded": sentencepiece's decoding of them, "wiki": ids of FILE}
        "special": {"cases": ids} with control and unknown tokens matched as whole pieces in the
                   text (they become USER_DEFINED in the proto; sentencepiece never matches
                   control pieces)
        "flipped": {"cases", "decoded"} with tokenizer.ggml.add_space_prefix inverted (the
                   dummy prefix the GGUF does not use), and "add_space_prefix": the GGUF's flag
Reading the GGUF with the gguf package takes ~25 s for Gemma's 262,144 tokens, so everything
comes from one run. Prints one JSON line with counts.
"""
import json
import sys

import sentencepiece as spm
from gguf import GGUFReader
from sentencepiece import sentencepiece_model_pb2 as pb

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def read_gguf(path):
    r = GGUFReader(path)
    g = lambda k: r.fields[k].contents() if k in r.fields else None
    return {"model": g("tokenizer.ggml.model"), "tokens": g("tokenizer.ggml.tokens"),
            "scores": g("tokenizer.ggml.scores"), "types": g("tokenizer.ggml.token_type"),
            "bos": g("tokenizer.ggml.bos_token_id"), "eos": g("tokenizer.ggml.eos_token_id"),
            "unk": g("tokenizer.ggml.unknown_token_id"), "pad": g("tokenizer.ggml.padding_token_id"),
            "add_space_prefix": g("tokenizer.ggml.add_space_prefix")}


def model_proto(v, special, add_space_prefix):
    m = pb.ModelProto()
    kinds = {NORMAL: pb.ModelProto.SentencePiece.NORMAL, UNKNOWN: pb.ModelProto.SentencePiece.UNKNOWN,
             CONTROL: pb.ModelProto.SentencePiece.CONTROL, USER_DEFINED: pb.ModelProto.SentencePiece.USER_DEFINED,
             UNUSED: pb.ModelProto.SentencePiece.UNUSED, BYTE: pb.ModelProto.SentencePiece.BYTE}
    types = list(v["types"])
    if v["unk"] is not None:
        types[v["unk"]] = UNKNOWN
    for i, (tok, score, t) in enumerate(zip(v["tokens"], v["scores"], types)):
        p = m.pieces.add()
        p.piece = tok.replace(" ", "\u2581") if t == USER_DEFINED else tok
        p.score = score
        p.type = kinds[USER_DEFINED] if special and t in (CONTROL, UNKNOWN) else kinds[t]
    ts = m.trainer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = len(v["tokens"])
    ts.byte_fallback = BYTE in types
    ts.unk_id = v["unk"] if v["unk"] is not None else -1
    ts.bos_id = v["bos"] if v["bos"] is not None else -1
    ts.eos_id = v["eos"] if v["eos"] is not None else -1
    ts.pad_id = v["pad"] if v["pad"] is not None else -1
    ns = m.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = add_space_prefix
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    return m


def processor(v, special, add_space_prefix):
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(model_proto(v, special, add_space_prefix).SerializeToString())
    return sp


def main():
    cmd = sys.argv[1]
    if cmd != "encode":
        raise SystemExit("unknown command " + cmd)
    v = read_gguf(sys.argv[2])
    if v["model"] != "llama":
        raise SystemExit(f"{sys.argv[2]}: tokenizer.ggml.model is {v['model']!r}, not 'llama' (SentencePiece)")
    asp = bool(v["add_space_prefix"])
    cases = json.load(open(sys.argv[3], encoding="utf-8"))
    out = {"add_space_prefix": asp}
    for name, special, prefix in (("plain", False, asp), ("special", True, asp), ("flipped", False, not asp)):
        sp = processor(v, special, prefix)
        ids = [sp.encode(c, out_type=int) for c in cases]
        out[name] = {"cases": ids, "decoded": [sp.decode(i) for i in ids]}
        if name == "plain" and "--wiki" in sys.argv:
            with open(sys.argv[sys.argv.index("--wiki") + 1], encoding="utf-8", newline="") as f:
                out[name]["wiki"] = sp.encode(f.read(), out_type=int)
    with open(sys.argv[4], "w", encoding="utf-8") as f:
        json.dump(out, f)
    print(json.dumps({"cases": len(cases), "wiki_tokens": len(out["plain"].get("wiki", [])), "vocab": len(v["tokens"])}))


if __name__ == "__main__":
    main()
