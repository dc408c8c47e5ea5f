import Foundation

/// Reads a GGUF checkpoint (llama.cpp's format) of a Llama-architecture model: hyper-parameters
/// from the `llama.*` keys, tensors renamed to QuantLM's llama names (ggml's reversed dims give
/// QuantLM's [out, in] directly), tensors kept as ggml blocks (dequantized, or passed through
/// when the target type has the same bytes), and the vocabulary from `tokenizer.ggml.*`.
///
/// Rotary layout: llama.cpp's Hugging Face converter permutes wq / wk so that GGUF llama models
/// rotate ADJACENT pairs (x[2i], x[2i+1]), which is what QuantLM's Llama (llama2.c style) does;
/// no permutation is needed (checked end to end against a numpy forward in GGUFModelTests).
package enum GGUFReader: CheckpointReader {
    package static func canRead(_ url: URL) -> Bool {
        prefix(url, 4) == GGUFFile.magic
    }

    /// GGUF llama names -> QuantLM names (per layer, after "blk.N.").
    static let layerNames: [(String, String)] = [
        ("attn_norm.weight", "attention_norm.weight"),
        ("attn_q.weight", "attention.wq.weight"),
        ("attn_k.weight", "attention.wk.weight"),
        ("attn_v.weight", "attention.wv.weight"),
        ("attn_output.weight", "attention.wo.weight"),
        ("ffn_norm.weight", "ffn_norm.weight"),
        ("ffn_gate.weight", "feed_forward.w1.weight"),
        ("ffn_down.weight", "feed_forward.w2.weight"),
        ("ffn_up.weight", "feed_forward.w3.weight"),
    ]

    /// Tensors llama.cpp may write that carry no weights QuantLM needs (precomputed rotary tables).
    static func isIgnored(_ name: String) -> Bool {
        name == "rope_freqs.weight" || name.hasSuffix(".rope_freqs.weight") || name.hasSuffix("attn_rot_embd")
    }

    package static func read(_ url: URL, tokenizer: URL?) throws -> Checkpoint {
        let g = try GGUFFile(url)
        let file = url.path
        let md = g.metadata
        guard let arch = md["general.architecture"]?.string else {
            throw QuantError(file, "GGUF metadata lacks general.architecture")
        }
        guard arch == "llama" else {
            throw QuantError(file, "general.architecture '\(arch)' is not supported (QuantLM reads GGUF llama models)")
        }
        func int(_ key: String, default def: Int? = nil) throws -> Int {
            guard let v = md[key] else {
                if let def { return def }
                throw QuantError(file, "GGUF metadata lacks \(key)")
            }
            guard let i = v.int else { throw QuantError(file, "\(key) must be an integer") }
            return i
        }
        func float(_ key: String, default def: Double) throws -> Double {
            guard let v = md[key] else { return def }
            guard let d = v.double else { throw QuantError(file, "\(key) must be a number") }
            return d
        }
        let tokens = try stringArray(md, "tokenizer.ggml.tokens", file: file)
        let nLayer = try int("llama.block_count"), d = try int("llama.embedding_length")
        let nHead = try int("llama.attention.head_count")
        let nKV = try int("llama.attention.head_count_kv", default: nHead)
        let vocab = try int("llama.vocab_size", default: tokens?.count ?? 0)
        if let tokens, tokens.count != vocab {
            throw QuantError(file, "tokenizer.ggml.tokens has \(tokens.count) tokens but llama.vocab_size is \(vocab)")
        }
        let hp = HParams(nLayer: nLayer, nHead: nHead, nKVHead: nKV, dModel: d, dFF: try int("llama.feed_forward_length"),
                         nCtx: try int("llama.context_length"), vocabSize: vocab,
                         normEps: Float(try float("llama.attention.layer_norm_rms_epsilon", default: 1e-5)),
                         ropeTheta: Float(try float("llama.rope.freq_base", default: 10000)),
                         tiedEmbeddings: !g.tensors.contains { $0.name == "output.weight" })
        try hp.validate(file: file)
        if let rd = md["llama.rope.dimension_count"] {
            guard rd.int == hp.headDim else {
                throw QuantError(file, "llama.rope.dimension_count \(rd.int.map(String.init) ?? "?") differs from the head size \(hp.headDim) (partial rotary is not supported)")
            }
        }
        if let s = md["llama.rope.scaling.type"]?.string, s != "none" {
            throw QuantError(file, "llama.rope.scaling.type '\(s)' is not supported")
        }
        if let e = md["llama.expert_count"]?.int, e > 0 {
            throw QuantError(file, "llama.expert_count \(e): mixture-of-experts models are not supported")
        }

        // (tensor key, GGUF name, expected shape): GGUF's names are the roles themselves.
        let kv = hp.kvDim, f = hp.dFF
        var expected: [(TensorKey, String, [Int])] = [(TensorKey(.tokenEmbedding), "token_embd.weight", [vocab, d])]
        for l in 0 ..< nLayer {
            let shapes: [String: [Int]] = [
                "attn_norm.weight": [d], "attn_q.weight": [d, d], "attn_k.weight": [kv, d], "attn_v.weight": [kv, d],
                "attn_output.weight": [d, d], "ffn_norm.weight": [d], "ffn_gate.weight": [f, d], "ffn_down.weight": [d, f],
                "ffn_up.weight": [f, d],
            ]
            for (gn, _) in layerNames {
                expected.append((TensorKey(TensorRole(rawValue: String(gn.dropLast(".weight".count))), layer: l), "blk.\(l).\(gn)", shapes[gn]!))
            }
        }
        expected.append((TensorKey(.outputNorm), "output_norm.weight", [d]))
        if !hp.tiedEmbeddings { expected.append((TensorKey(.output), "output.weight", [vocab, d])) }

        var byName: [String: GGUFTensorInfo] = [:]
        for t in g.tensors where !isIgnored(t.name) { byName[t.name] = t }
        var tensors: [SourceTensor] = []
        for (key, gname, shape) in expected {
            guard let t = byName.removeValue(forKey: gname) else {
                throw QuantError(file, "missing tensor \(gname) (expected for a \(nLayer)-layer llama)")
            }
            guard t.shape == shape else {
                throw QuantError(file, "tensor \(gname): shape \(t.shape) (ggml dims reversed), expected \(shape) from the llama.* metadata")
            }
            tensors.append(SourceTensor(key: key, shape: shape, payload: .ggml(t.type), bytes: g.bytes(t),
                                        transposed: false, origin: "\(file): \(gname)"))
        }
        if let extra = byName.keys.sorted().first {
            throw QuantError(file, "unknown tensor \(extra) (not part of a \(nLayer)-layer llama)")
        }

        let tok: TokenizerSource?
        if let tokenizer {
            if HFGPT2Reader.isDirectory(tokenizer) {
                tok = try HFGPT2Reader.tokenizerFiles(tokenizer, explicit: nil)
            } else {
                tok = .llama2c(tokenizer)
            }
        } else if let tokens {
            tok = .data(try tokenizerData(md, tokens: tokens, file: file))
        } else {
            throw QuantError(file, "GGUF metadata lacks tokenizer.ggml.tokens; pass --tokenizer")
        }
        return Checkpoint(architecture: "llama", hparams: hp, tensors: tensors, tokenizer: tok,
                          sourceFiles: [url], keepAlive: [g])
    }

    static func stringArray(_ md: [String: GGUFValue], _ key: String, file: String) throws -> [String]? {
        guard let v = md[key] else { return nil }
        guard case .array(8, let a) = v else { throw QuantError(file, "\(key) must be an array of strings") }
        return a.map { $0.string! }
    }

    /// The vocabulary of a GGUF file of any architecture (its `tokenizer.ggml.*` keys), without
    /// reading tensors: for tools and tests.
    package static func tokenizerData(of url: URL) throws -> TokenizerData {
        let g = try GGUFFile(url)
        guard let tokens = try stringArray(g.metadata, "tokenizer.ggml.tokens", file: url.path) else {
            throw QuantError(url.path, "GGUF metadata lacks tokenizer.ggml.tokens")
        }
        return try tokenizerData(g.metadata, tokens: tokens, file: url.path)
    }

    /// TokenizerData from the `tokenizer.ggml.*` keys (and `tokenizer.chat_template`).
    static func tokenizerData(_ md: [String: GGUFValue], tokens: [String], file: String) throws -> TokenizerData {
        guard let model = md["tokenizer.ggml.model"]?.string else { throw QuantError(file, "GGUF metadata lacks tokenizer.ggml.model") }
        func optInt(_ key: String) throws -> Int? {
            guard let v = md[key] else { return nil }
            guard let i = v.int else { throw QuantError(file, "\(key) must be an integer") }
            guard i >= 0, i < tokens.count else { throw QuantError(file, "\(key) \(i) is not a token id (vocabulary of \(tokens.count))") }
            return i
        }
        func optBool(_ key: String) throws -> Bool? {
            guard let v = md[key] else { return nil }
            guard let b = v.bool else { throw QuantError(file, "\(key) must be a bool") }
            return b
        }
        func optString(_ key: String) throws -> String? {
            guard let v = md[key] else { return nil }
            guard let s = v.string else { throw QuantError(file, "\(key) must be a string") }
            return s
        }
        var scores: [Float]?
        if let v = md["tokenizer.ggml.scores"] {
            guard case .array(6, let a) = v else { throw QuantError(file, "tokenizer.ggml.scores must be an array of float32") }
            guard a.count == tokens.count else { throw QuantError(file, "tokenizer.ggml.scores has \(a.count) entries for \(tokens.count) tokens") }
            scores = a.map { if case .f32(let x) = $0 { return x }; return 0 }
        }
        var types: [Int32]?
        if let v = md["tokenizer.ggml.token_type"] {
            guard case .array(_, let a) = v, let ints = Optional(a.compactMap(\.int)), ints.count == a.count else {
                throw QuantError(file, "tokenizer.ggml.token_type must be an array of integers")
            }
            guard a.count == tokens.count else { throw QuantError(file, "tokenizer.ggml.token_type has \(a.count) entries for \(tokens.count) tokens") }
            types = ints.map { Int32(truncatingIfNeeded: $0) }
        }
        return TokenizerData(model: model, pre: try optString("tokenizer.ggml.pre"), tokens: tokens, scores: scores, tokenTypes: types,
                             merges: try stringArray(md, "tokenizer.ggml.merges", file: file),
                             bos: try optInt("tokenizer.ggml.bos_token_id"), eos: try optInt("tokenizer.ggml.eos_token_id"),
                             unk: try optInt("tokenizer.ggml.unknown_token_id"), pad: try optInt("tokenizer.ggml.padding_token_id"),
                             addBos: try optBool("tokenizer.ggml.add_bos_token"), addEos: try optBool("tokenizer.ggml.add_eos_token"),
                             addSpacePrefix: try optBool("tokenizer.ggml.add_space_prefix"),
                             chatTemplate: try optString("tokenizer.chat_template"), source: file)
    }
}
