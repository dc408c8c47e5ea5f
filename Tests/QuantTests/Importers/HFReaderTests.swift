import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// Small Hugging Face directories made in the test: a Llama-family config.json (either rotary
/// spelling), safetensors in f32 / f16 / bf16 (one file or shards with an index), and a
/// tokenizer.json (byte-level BPE, or SentencePiece-style ▁ BPE with byte fallback).
enum SyntheticHF {
    static let d = 32, layers = 2, heads = 4, kvHeads = 2, ff = 48
    static var headDim: Int { d / heads }

    /// GPT-2's byte ↔ printable-character map (the byte-level vocabulary's alphabet).
    static let byteChars: [String] = {
        var bs = Array(33 ... 126) + Array(161 ... 172) + Array(174 ... 255)
        var cs = bs
        var n = 0
        for b in 0 ..< 256 where !bs.contains(b) { bs.append(b); cs.append(256 + n); n += 1 }
        var out = [String](repeating: "", count: 256)
        for (b, c) in zip(bs, cs) { out[b] = String(UnicodeScalar(UInt32(c))!) }
        return out
    }()

    /// A byte-level tokenizer.json: the 256 bytes, "he", "ll", "hell", "Ġw"; special <|endoftext|>.
    static func byteLevelTokenizer() -> [String: Any] {
        var vocab: [String: Int] = [:]
        for (i, c) in byteChars.enumerated() { vocab[c] = i }
        for t in ["he", "ll", "hell", "Ġw"] { vocab[t] = vocab.count }
        return [
            "version": "1.0",
            "added_tokens": [["id": vocab.count, "content": "<|endoftext|>", "special": true, "normalized": false,
                              "lstrip": false, "rstrip": false, "single_word": false]],
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            "post_processor": NSNull(),
            "decoder": ["type": "ByteLevel"],
            "model": ["type": "BPE", "vocab": vocab, "merges": [["h", "e"], ["l", "l"], ["he", "ll"], ["Ġ", "w"]],
                      "byte_fallback": false, "dropout": NSNull(), "unk_token": NSNull()],
        ]
    }

    /// A SentencePiece-style tokenizer.json (Gemma's form): <pad> <eos> <bos> <unk>, the 256
    /// byte pieces, letters, and merged pieces; ▁ by a Replace normalizer.
    static func metaspaceTokenizer() -> [String: Any] {
        var vocab: [String: Int] = ["<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3]
        for b in 0 ..< 256 { vocab[String(format: "<0x%02X>", b)] = vocab.count }
        for t in ["▁", "h", "e", "l", "o", "w", "he", "ll", "▁he", "▁hell", "lo"] { vocab[t] = vocab.count }
        return [
            "added_tokens": [["id": 0, "content": "<pad>", "special": true], ["id": 1, "content": "<eos>", "special": true],
                             ["id": 2, "content": "<bos>", "special": true], ["id": 3, "content": "<unk>", "special": true]],
            "normalizer": ["type": "Replace", "pattern": ["String": " "], "content": "▁"],
            "pre_tokenizer": NSNull(),
            "post_processor": ["type": "TemplateProcessing", "single": [["SpecialToken": ["id": "<bos>", "type_id": 0]],
                                                                         ["Sequence": ["id": "A", "type_id": 0]]]],
            "model": ["type": "BPE", "vocab": vocab, "byte_fallback": true, "unk_token": "<unk>",
                      "merges": ["h e", "l l", "▁ he", "▁he ll", "l o"]],
        ]
    }

    static func vocabSize(_ tok: [String: Any]) -> Int {
        let m = tok["model"] as! [String: Any]
        return (m["vocab"] as! [String: Int]).count + ((tok["added_tokens"] as! [[String: Any]]).filter {
            !((m["vocab"] as! [String: Int]).keys.contains($0["content"] as! String))
        }.count)
    }

    static func config(vocab: Int, newRope: Bool) -> [String: Any] {
        var c: [String: Any] = ["model_type": "llama", "hidden_size": d, "num_hidden_layers": layers, "num_attention_heads": heads,
                                "num_key_value_heads": kvHeads, "intermediate_size": ff, "max_position_embeddings": 64,
                                "vocab_size": vocab, "rms_norm_eps": 1e-5, "tie_word_embeddings": false, "hidden_act": "silu"]
        if newRope { c["rope_parameters"] = ["rope_type": "default", "rope_theta": 500000.0] }
        else { c["rope_theta"] = 500000.0; c["rope_scaling"] = NSNull() }
        return c
    }

    /// The tensors of the tiny Llama, by HF name, as floats (values k + i / 1024 so every element differs).
    static func tensors(vocab: Int) -> [(String, [Int], [Float])] {
        let q = heads * headDim, kv = kvHeads * headDim
        var l: [(String, [Int])] = [("model.embed_tokens.weight", [vocab, d])]
        for i in 0 ..< layers {
            let p = "model.layers.\(i)."
            l += [(p + "input_layernorm.weight", [d]), (p + "self_attn.q_proj.weight", [q, d]), (p + "self_attn.k_proj.weight", [kv, d]),
                  (p + "self_attn.v_proj.weight", [kv, d]), (p + "self_attn.o_proj.weight", [d, q]),
                  (p + "post_attention_layernorm.weight", [d]), (p + "mlp.gate_proj.weight", [ff, d]),
                  (p + "mlp.down_proj.weight", [d, ff]), (p + "mlp.up_proj.weight", [ff, d])]
        }
        l += [("model.norm.weight", [d]), ("lm_head.weight", [vocab, d])]
        return l.enumerated().map { k, t in
            let n = t.1.reduce(1, *)
            return (t.0, t.1, (0 ..< n).map { Float(k % 7) * 0.25 + Float($0 % 1024) / 1024 - 0.5 })
        }
    }

    static func encode(_ x: [Float], _ dtype: String) -> [UInt8] {
        switch dtype {
        case "F32": return bytesOf(x)
        case "F16": return x.flatMap { v -> [UInt8] in let h = Float16(v).bitPattern; return [UInt8(h & 0xFF), UInt8(h >> 8)] }
        default: return x.flatMap { v -> [UInt8] in let h = UInt16(v.bitPattern >> 16); return [UInt8(h & 0xFF), UInt8(h >> 8)] }
        }
    }

    /// Writes the directory; `mutate` may edit the tensor list before it is written.
    @discardableResult
    static func write(_ dir: URL, dtype: String = "F32", shards: Int = 1, newRope: Bool = true,
                      tokenizer: [String: Any] = byteLevelTokenizer(), padVocab: Int = 1,
                      mutate: ((inout [STTensor]) -> Void)? = nil) throws -> [(String, [Int], [Float])] {
        let fm = FileManager.default
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        let vocab = vocabSize(tokenizer) + padVocab
        let ts = tensors(vocab: vocab)
        var st = ts.map { STTensor(name: $0.0, dtype: dtype, shape: $0.1, data: encode($0.2, dtype)) }
        mutate?(&st)
        if shards == 1 {
            try Data(try safetensorsBytes(st)).write(to: dir.appendingPathComponent("model.safetensors"))
        } else {
            var map: [String: String] = [:]
            let per = (st.count + shards - 1) / shards
            for s in 0 ..< shards {
                let name = String(format: "model-%05d-of-%05d.safetensors", s + 1, shards)
                let part = Array(st[min(st.count, s * per) ..< min(st.count, (s + 1) * per)])
                for t in part { map[t.name] = name }
                try Data(try safetensorsBytes(part)).write(to: dir.appendingPathComponent(name))
            }
            try json(["metadata": ["total_size": 0], "weight_map": map], dir.appendingPathComponent("model.safetensors.index.json"))
        }
        try json(config(vocab: vocab, newRope: newRope), dir.appendingPathComponent("config.json"))
        try json(tokenizer, dir.appendingPathComponent("tokenizer.json"))
        try json(["eos_token_id": vocabSize(tokenizer) - 1], dir.appendingPathComponent("generation_config.json"))
        return ts
    }

    static func json(_ obj: Any, _ url: URL) throws {
        try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]).write(to: url)
    }
}

final class HFReaderTests: XCTestCase {
    /// f32 / f16 / bf16, one file or shards, both rotary spellings: the .qlm holds every tensor
    /// with q and k rows reordered from halves to adjacent pairs, all else as stored.
    func testLlamaDirectoriesConvert() throws {
        let root = try makeTempDir(self, "hfllama")
        var firstHP: HParams?
        for (k, (dtype, shards, newRope)) in [("F32", 1, true), ("BF16", 2, false), ("F16", 3, true)].enumerated() {
            let dir = root.appendingPathComponent("v\(k)")
            let ts = try SyntheticHF.write(dir, dtype: dtype, shards: shards, newRope: newRope)
            let out = root.appendingPathComponent("v\(k).qlm")
            _ = try ConversionJob(input: dir, output: out, type: "f32").run()
            let f = try QLMFile(out)
            XCTAssertEqual(f.metadata.architecture, "llama")
            let hp = f.metadata.hparams
            XCTAssertEqual(hp.ropeTheta, 500000, "rope_theta from \(newRope ? "rope_parameters" : "rope_theta")")
            XCTAssertFalse(hp.tiedEmbeddings)
            if let firstHP { XCTAssertEqual(hp, firstHP, "same hparams whatever the spelling") } else { firstHP = hp }
            XCTAssertEqual(hp.vocabSize, 262, "the config's vocab_size, one row past the tokenizer's 261 pieces")
            let names = Llama.tensorNames
            for (hfName, shape, values) in ts {
                // The stored value after the source's dtype.
                // (The encoded bytes must outlive the view: a buffer pointer made from a temporary
                // array dangles once the call that made it returns; ASan's heap-use-after-free.)
                let src = SyntheticHF.encode(values, "F32").withUnsafeBytes { floatsOf($0) }
                let rounded: [Float] = dtype == "F32" ? src : dtype == "F16" ? src.map { Float(Float16($0)) }
                    : src.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) }
                let role = try XCTUnwrap(Llama.formats.tensors(hp).first {
                    Llama.formats.hf!.name($0.key).map { $0 + ".weight" } == hfName
                }, hfName)
                let stored = try f.load(names.name(role.key)!).floats()
                var expected = rounded
                if role.key.role == .attnQ || role.key.role == .attnK {
                    let hd = SyntheticHF.headDim, cols = shape[1]
                    for h in 0 ..< shape[0] / hd { for i in 0 ..< hd / 2 { for j in 0 ..< 2 {
                        for c in 0 ..< cols { expected[(h * hd + 2 * i + j) * cols + c] = rounded[(h * hd + j * hd / 2 + i) * cols + c] }
                    } } }
                }
                XCTAssertTrue(bitsEqual(stored, expected), "\(dtype) shards \(shards): \(hfName)")
            }
            // The tokenizer came from tokenizer.json, eos from generation_config.json.
            let tok = try TokenizerPayloads.load(from: f)
            XCTAssertEqual(tok.vocabSize, 261)
            XCTAssertEqual(tok.eosID, 260)
            XCTAssertEqual(tok.encode("hello<|endoftext|> w"), [258, 111, 260, 259], "hell o, the special token whole, Ġw")
        }
    }

    /// tokenizer.json → the existing tokenizers: merges in rank order, special tokens whole,
    /// ▁-escaped BPE with byte fallback through SentencePieceTokenizer.
    func testTokenizerJSONModels() throws {
        let root = try makeTempDir(self, "hftok")
        func data(_ tok: [String: Any], _ name: String) throws -> TokenizerData {
            let u = root.appendingPathComponent(name)
            try SyntheticHF.json(tok, u)
            return try HFTokenizerJSON.parse(try Data(contentsOf: u), file: u.path)
        }
        let bl = try data(SyntheticHF.byteLevelTokenizer(), "bl.json")
        XCTAssertEqual(bl.model, "gpt2")
        XCTAssertEqual(bl.pre, "gpt2")
        XCTAssertEqual(bl.tokenTypes?[260], 3, "special added token is a control token")
        XCTAssertEqual(bl.tokenTypes?[259], 1)
        let bpe = try BPETokenizer(bl)
        // "hello w": pieces "hello", " w" → hell + o, Ġw; then the special token whole.
        XCTAssertEqual(bpe.encode("hello w<|endoftext|>"), [258, 111, 259, 260])
        let sp = try data(SyntheticHF.metaspaceTokenizer(), "sp.json")
        XCTAssertEqual(sp.model, "llama")
        XCTAssertEqual(sp.addBos, true, "the post-processor's template starts with <bos>")
        XCTAssertEqual(sp.tokenTypes?[3], 2, "model.unk_token is the unknown token")
        XCTAssertEqual(sp.tokenTypes?[1], 3, "a special added token is a control token")
        XCTAssertEqual(sp.bos, 2)
        XCTAssertEqual(sp.tokenTypes?[4], 6, "<0x00> is a byte token")
        XCTAssertEqual(sp.addSpacePrefix, false)
        let spm = try SentencePieceTokenizer(sp)
        // Merges by rank: h e, l l, ▁ he, ▁he ll (ll before ▁he, as its rank is lower); é by byte fallback.
        XCTAssertEqual(spm.encode(" hello"), [2, 269, 264])
        XCTAssertEqual(spm.encode("hello"), [2, 266, 267, 264])
        XCTAssertEqual(spm.encode("é"), [2, 4 + 0xC3, 4 + 0xA9])
    }

    /// The in-place scanner of model.vocab and model.merges against Foundation's parse of the same
    /// file: escapes (\\n, \\u00e9, a surrogate pair, \\", \\/, \\\\), both merge spellings, a token
    /// with a space, "vocab" / "merges" as tokens and a decoy "vocab" object before the model's.
    /// SentencePiece-style: merges with escapes score the token they make, and a half that is not
    /// UTF-8 (raw 0xFF, which Foundation never sees: the merges are blanked before it parses)
    /// makes the token its repaired text spells, as when the halves were decoded as Strings.
    func testTokenizerJSONScannerMatchesFoundation() throws {
        let root = try makeTempDir(self, "hfscan")
        let byteLevel = #"""
        {"version": "1.0", "padding": {"vocab": {"decoy": 0}}, "added_tokens": [{"id": 12, "content": "<|end|>", "special": true}],
         "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
         "model": {"type": "BPE",
          "merges" : [ ["h", "e"], "l l", ["\u00e9", "\n"], "a b c", [ "\ud83d\ude00" , "\"" ] , "\/ \\"],
          "vocab":{"h": 0, "e": 1, "l": 2, "he": 3, "ll": 4, "\u00e9": 5, "\n": 6, "\u00e9\n": 7, "a": 8, "b c": 9,
                   "vocab": 10, "merges": 11, "\ud83d\ude00": 13, "\"": 14, "\ud83d\ude00\"": 15, "/": 16, "\\": 17, "/\\": 18}}}
        """#
        let u = root.appendingPathComponent("bl.json")
        try Data(byteLevel.utf8).write(to: u)
        let d = try HFTokenizerJSON.parse(try Data(contentsOf: u), file: u.path)
        let ref = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: u)) as? [String: Any])
        let model = try XCTUnwrap(ref["model"] as? [String: Any])
        var byID = [String](repeating: "", count: 19)
        for (t, id) in try XCTUnwrap(model["vocab"] as? [String: Int]) { byID[id] = t }
        byID[12] = "<|end|>"
        XCTAssertEqual(d.tokens, byID)
        let merges = try XCTUnwrap(model["merges"] as? [Any]).map { m in
            (m as? [String]).map { $0[0] + " " + $0[1] } ?? m as! String
        }
        XCTAssertEqual(d.merges, merges)
        XCTAssertEqual(d.merges?[3], "a b c", "an \"a b c\" merge splits at its first space")

        var sp = Array(#"""
        {"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}, "pre_tokenizer": null,
         "added_tokens": [], "model": {"type": "BPE", "byte_fallback": false,
          "vocab": {"h": 0, "e": 1, "\u00e9": 2, "\n": 3, "he": 4, "\u00e9\n": 5, "\ufffda": 6, "a": 7, "X": 8},
          "merges": [["\u00e9", "\n"], "h e", ["X", "a"]]}}
        """#.utf8)
        sp[sp.lastIndex(of: UInt8(ascii: "X"))!] = 0xFF   // the last merge's left half: one byte that is not UTF-8
        let v = root.appendingPathComponent("sp.json")
        try Data(sp).write(to: v)
        let s = try HFTokenizerJSON.parse(try Data(contentsOf: v), file: v.path)
        XCTAssertEqual(s.model, "llama")
        XCTAssertEqual(s.tokens[5], "\u{E9}\n")
        XCTAssertEqual(s.scores?[5], 0, "merge 0 makes é\\n")
        XCTAssertEqual(s.scores?[4], -1, "merge 1 makes he")
        XCTAssertEqual(s.scores?[6], -2, "merge 2 (0xFF, a) makes \u{FFFD}a, its halves' repaired text")
        XCTAssertEqual(s.scores?[7], -4, "no merge makes a: below every merge")
    }
}

final class HFReaderErrorTests: XCTestCase {
    /// Each bad directory gets one line naming the file and the problem.
    func testBadDirectoriesAreNamed() throws {
        let root = try makeTempDir(self, "hfbad")
        var k = 0
        func variant(shards: Int = 1, tokenizer: [String: Any] = SyntheticHF.byteLevelTokenizer(),
                     _ mutate: ((inout [STTensor]) -> Void)? = nil) throws -> URL {
            k += 1
            let dir = root.appendingPathComponent("b\(k)")
            try SyntheticHF.write(dir, shards: shards, tokenizer: tokenizer, mutate: mutate)
            return dir
        }
        func open(_ dir: URL) throws { _ = try Checkpoint.open(dir) }
        let good = try variant()
        XCTAssertNoThrow(try open(good))

        // Unknown model_type: the supported ones listed.
        let mt = try variant()
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: mt.appendingPathComponent("config.json"))) as! [String: Any]
        cfg["model_type"] = "mamba"
        try SyntheticHF.json(cfg, mt.appendingPathComponent("config.json"))
        assertQuantError([mt.appendingPathComponent("config.json").path, "model_type 'mamba' is not supported", "gpt2", "llama", "gemma3_text"]) { try open(mt) }

        let missing = try variant { $0.removeAll { $0.name == "model.layers.1.mlp.up_proj.weight" } }
        assertQuantError([missing.path, "missing tensor model.layers.1.mlp.up_proj.weight"]) { try open(missing) }

        let extra = try variant { $0.append(STTensor(name: "model.layers.0.self_attn.rotary.weight", dtype: "F32", shape: [2], data: [UInt8](repeating: 0, count: 8))) }
        assertQuantError(["model.safetensors", "unknown tensor model.layers.0.self_attn.rotary.weight"]) { try open(extra) }

        let shape = try variant { ts in
            let i = ts.firstIndex { $0.name == "model.layers.0.self_attn.k_proj.weight" }!
            ts[i].shape = [8, 32]; ts[i].data = Array(ts[i].data.prefix(8 * 32 * 4))
        }
        assertQuantError(["model.safetensors", "model.layers.0.self_attn.k_proj.weight", "shape [8, 32], expected [16, 32]"]) { try open(shape) }

        let shard = try variant(shards: 2)
        try FileManager.default.removeItem(at: shard.appendingPathComponent("model-00002-of-00002.safetensors"))
        assertQuantError([shard.appendingPathComponent("model.safetensors.index.json").path, "model-00002-of-00002.safetensors",
                          "not in the directory"]) { try open(shard) }

        let trunc = try variant()
        let st = trunc.appendingPathComponent("model.safetensors")
        let bytes = try readBytes(st)
        let headerLen = Int(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        try Data(bytes.prefix(8 + headerLen / 2)).write(to: st)
        assertQuantError([st.path, "header length"]) { try open(trunc) }

        var unigram = SyntheticHF.metaspaceTokenizer()
        var m = unigram["model"] as! [String: Any]
        m["type"] = "Unigram"
        unigram["model"] = m
        let uni = try variant(tokenizer: unigram)
        assertQuantError([uni.appendingPathComponent("tokenizer.json").path, "model type 'Unigram' is not supported"]) { try open(uni) }

        var wp = SyntheticHF.byteLevelTokenizer()
        wp["pre_tokenizer"] = ["type": "Whitespace"]
        let ws = try variant(tokenizer: wp)
        assertQuantError([ws.appendingPathComponent("tokenizer.json").path, "pre-tokenizer [Whitespace] is not supported"]) { try open(ws) }
    }

    /// Seeded mutations of config.json, model.safetensors.index.json and tokenizer.json (bytes
    /// flipped, cut short, values replaced by junk of other types): each either reads (and its
    /// tokenizer builds) or throws a QuantError / TokenizerError, never crashes or hangs.
    func testReadersFuzz() throws {
        let root = try makeTempDir(self, "hffuzz")
        let base = root.appendingPathComponent("base")
        try SyntheticHF.write(base, shards: 2)
        let files = ["config.json", "model.safetensors.index.json", "tokenizer.json"]
        var rng = SplitMix64(seed: 26)
        let junk: [Any] = [NSNull(), -1, 0, 1 << 40, 1e300, -0.5, "x", "", [1, 2], ["a": 1], true, [] as [Any], "model.layers.0"]
        func mutateJSON(_ v: Any, depth: Int) -> Any {
            if var d = v as? [String: Any], !d.isEmpty {
                let key = d.keys.sorted()[Int(rng.next() % UInt64(d.count))]
                if depth > 0, rng.next() % 3 != 0 { d[key] = mutateJSON(d[key]!, depth: depth - 1) }
                else if rng.next() % 5 == 0 { d.removeValue(forKey: key) }
                else { d[key] = junk[Int(rng.next() % UInt64(junk.count))] }
                return d
            }
            if var a = v as? [Any], !a.isEmpty {
                let i = Int(rng.next() % UInt64(a.count))
                a[i] = depth > 0 && rng.next() % 2 == 0 ? mutateJSON(a[i], depth: depth - 1) : junk[Int(rng.next() % UInt64(junk.count))]
                return a
            }
            return junk[Int(rng.next() % UInt64(junk.count))]
        }
        var read = 0, refused = 0
        for iter in 0 ..< 240 {
            let dir = root.appendingPathComponent("m\(iter)")
            try? FileManager.default.removeItem(at: dir)
            try FileManager.default.copyItem(at: base, to: dir)
            let name = files[iter % files.count]
            let u = dir.appendingPathComponent(name)
            var b = try readBytes(u)
            switch rng.next() % 3 {
            case 0:
                for _ in 0 ..< 1 + Int(rng.next() % 4) where !b.isEmpty { b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            case 1: b = Array(b.prefix(Int(rng.next() % UInt64(b.count + 1))))
            default:
                let obj = try JSONSerialization.jsonObject(with: Data(b))
                b = [UInt8](try JSONSerialization.data(withJSONObject: mutateJSON(obj, depth: 3)))
            }
            try Data(b).write(to: u)
            do {
                let c = try Checkpoint.open(dir)
                if let t = c.tokenizer { _ = try TokenizerPayloads.make(t, vocabSize: c.hparams.vocabSize) }
                read += 1
            } catch is QuantError { refused += 1 } catch is TokenizerError { refused += 1 } catch {
                XCTFail("\(name) mutation \(iter): \(type(of: error)) \(error)")
            }
        }
        print("hf fuzz: \(read) mutated directories read, \(refused) refused with a QuantError / TokenizerError")
        XCTAssertGreaterThan(refused, 100)
    }
}
