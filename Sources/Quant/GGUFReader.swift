import Foundation

/// Reads a GGUF checkpoint (llama.cpp's format): hyper-parameters from the `<arch>.*` keys,
/// tensors named by their GGUF roles (ggml's reversed dims give QuantLM's [out, in] directly),
/// kept as ggml blocks (dequantized, or passed through when the target type has the same
/// bytes), and the vocabulary from `tokenizer.ggml.*`. What differs per architecture (its
/// extra keys, its tensors and their shapes) is one `GGUFArchitecture` row in `architectures`.
///
/// Rotary layout: llama.cpp's Hugging Face converter permutes wq / wk so that GGUF llama models
/// rotate ADJACENT pairs (x[2i], x[2i+1]), which is what QuantLM's Llama (llama2.c style) does;
/// no permutation is needed (checked end to end against a numpy forward in GGUFModelTests).
/// Gemma 3 is not permuted (llama.cpp rotates it NeoX-style, halves); its model does the same.
package enum GGUFReader: CheckpointReader {
    package static func canRead(_ url: URL) -> Bool {
        prefix(url, 4) == GGUFFile.magic
    }

    /// What the reader knows about one GGUF architecture.
    struct GGUFArchitecture {
        /// `general.architecture`, also the prefix of its keys and QuantLM's architecture name.
        let name: String
        /// (key after "<name>.", `hparams` key): numeric values copied into `HParams.extra` when present.
        let extraKeys: [(String, String)]
        /// Per block: GGUF tensor name after "blk.N." and before ".weight", and its [out, in] shape.
        let layerTensors: (HParams) -> [(String, [Int])]
    }

    static let architectures: [GGUFArchitecture] = [
        GGUFArchitecture(name: "llama", extraKeys: [("attention.key_length", "head_dim")], layerTensors: { hp in
            let d = hp.dModel, q = hp.qDim, kv = hp.kvDim, f = hp.dFF
            return [("attn_norm", [d]), ("attn_q", [q, d]), ("attn_k", [kv, d]), ("attn_v", [kv, d]), ("attn_output", [d, q]),
                    ("ffn_norm", [d]), ("ffn_gate", [f, d]), ("ffn_down", [d, f]), ("ffn_up", [f, d])]
        }),
        // llama.cpp src/models/gemma3.cpp: norms before and after attention and MLP, per-head
        // q/k norms; local (sliding-window) layers by the pattern's period (default 6 there).
        GGUFArchitecture(name: "gemma3", extraKeys: [
            ("attention.key_length", "head_dim"), ("attention.sliding_window", "sliding_window"),
            ("attention.sliding_window_pattern", "sliding_window_pattern"), ("rope.freq_base_swa", "rope_local_theta"),
            ("final_logit_softcapping", "final_logit_softcap"),
        ], layerTensors: { hp in
            let d = hp.dModel, q = hp.qDim, kv = hp.kvDim, f = hp.dFF, hd = hp.headDim
            return [("attn_norm", [d]), ("attn_q", [q, d]), ("attn_k", [kv, d]), ("attn_v", [kv, d]),
                    ("attn_q_norm", [hd]), ("attn_k_norm", [hd]), ("attn_output", [d, q]), ("post_attention_norm", [d]),
                    ("ffn_norm", [d]), ("ffn_gate", [f, d]), ("ffn_up", [f, d]), ("ffn_down", [d, f]), ("post_ffw_norm", [d])]
        }),
        GGUFArchitecture(name: "qwen2", extraKeys: [], layerTensors: { hp in
            let d = hp.dModel, q = hp.qDim, kv = hp.kvDim, f = hp.dFF
            return [("attn_norm", [d]), ("attn_q", [q, d]), ("attn_k", [kv, d]), ("attn_v", [kv, d]), ("attn_q.bias", [q]), ("attn_k.bias", [kv]), ("attn_v.bias", [kv]), ("attn_output", [d, q]),
                    ("ffn_norm", [d]), ("ffn_gate", [f, d]), ("ffn_down", [d, f]), ("ffn_up", [f, d])]
        }),
        GGUFArchitecture(name: "qwen3", extraKeys: [("attention.key_length", "head_dim")], layerTensors: { hp in
            let d = hp.dModel, q = hp.qDim, kv = hp.kvDim, f = hp.dFF, hd = hp.headDim
            return [("attn_norm", [d]), ("attn_q", [q, d]), ("attn_k", [kv, d]), ("attn_v", [kv, d]), ("attn_q_norm", [hd]), ("attn_k_norm", [hd]), ("attn_output", [d, q]),
                    ("ffn_norm", [d]), ("ffn_gate", [f, d]), ("ffn_down", [d, f]), ("ffn_up", [f, d])]
        }),
        GGUFArchitecture(name: "olmo2", extraKeys: [], layerTensors: { hp in
            let d = hp.dModel, q = hp.qDim, kv = hp.kvDim, f = hp.dFF
            return [("attn_q", [q, d]), ("attn_k", [kv, d]), ("attn_v", [kv, d]), ("attn_q_norm", [q]), ("attn_k_norm", [kv]), ("attn_output", [d, q]), ("post_attention_norm", [d]),
                    ("ffn_gate", [f, d]), ("ffn_down", [d, f]), ("ffn_up", [f, d]), ("post_ffw_norm", [d])]
        }),
        GGUFArchitecture(name: "phi3", extraKeys: [("attention.sliding_window", "sliding_window")], layerTensors: { hp in
            let d = hp.dModel, q = hp.qDim, kv = hp.kvDim, f = hp.dFF
            return [("attn_norm", [d]), ("attn_qkv", [q + 2 * kv, d]), ("attn_output", [d, q]),
                    ("ffn_norm", [d]), ("ffn_down", [d, f]), ("ffn_up", [2 * f, d])]
        }),
        GGUFArchitecture(name: "gemma2", extraKeys: [("attention.key_length", "head_dim"), ("attention.sliding_window", "sliding_window"),
                                                    ("attn_logit_softcapping", "attn_softcap"), ("final_logit_softcapping", "final_softcap")], layerTensors: { hp in
            let d = hp.dModel, q = hp.qDim, kv = hp.kvDim, f = hp.dFF
            return [("attn_norm", [d]), ("attn_q", [q, d]), ("attn_k", [kv, d]), ("attn_v", [kv, d]), ("attn_output", [d, q]), ("post_attention_norm", [d]),
                    ("ffn_norm", [d]), ("ffn_gate", [f, d]), ("ffn_up", [f, d]), ("ffn_down", [d, f]), ("post_ffw_norm", [d])]
        }),
    ]

    /// Tensors llama.cpp may write that carry no weights QuantLM needs (precomputed rotary tables).
    static func isIgnored(_ name: String) -> Bool {
        name == "rope_freqs.weight" || name.hasSuffix(".rope_freqs.weight") || name.hasSuffix("attn_rot_embd")
    }

    package static func read(_ url: URL, tokenizer: URL?) throws -> Checkpoint {
        let g = try GGUFFile(url)
        let file = url.path
        let md = g.metadata
        guard let archName = md["general.architecture"]?.string else {
            throw QuantError(file, "GGUF metadata lacks general.architecture")
        }
        guard let arch = architectures.first(where: { $0.name == archName }) else {
            throw QuantError(file, "general.architecture '\(archName)' is not supported (QuantLM reads GGUF \(architectures.map(\.name).joined(separator: ", ")) models)")
        }
        let p = archName + "."
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
        let nLayer = try int(p + "block_count"), d = try int(p + "embedding_length")
        let nHead = try int(p + "attention.head_count")
        let nKV = try int(p + "attention.head_count_kv", default: nHead)
        let vocab = try int(p + "vocab_size", default: tokens?.count ?? 0)
        if let tokens, tokens.count != vocab {
            throw QuantError(file, "tokenizer.ggml.tokens has \(tokens.count) tokens but \(p)vocab_size is \(vocab)")
        }
        var extra: [String: Double] = [:]
        for (key, name) in arch.extraKeys {
            guard let v = md[p + key] else { continue }
            guard let x = v.double else { throw QuantError(file, "\(p + key) must be a number (per-layer arrays are not supported)") }
            extra[name] = x
        }
        if let kl = md[p + "attention.key_length"]?.int, let vl = md[p + "attention.value_length"]?.int, kl != vl {
            throw QuantError(file, "\(p)attention.key_length \(kl) differs from value_length \(vl) (not supported)")
        }
        let hp = HParams(nLayer: nLayer, nHead: nHead, nKVHead: nKV, dModel: d, dFF: try int(p + "feed_forward_length"),
                         nCtx: try int(p + "context_length"), vocabSize: vocab,
                         normEps: Float(try float(p + "attention.layer_norm_rms_epsilon", default: 1e-5)),
                         ropeTheta: Float(try float(p + "rope.freq_base", default: 10000)),
                         tiedEmbeddings: !g.tensors.contains { $0.name == "output.weight" }, extra: extra)
        try hp.validate(file: file)
        if let rd = md[p + "rope.dimension_count"] {
            guard rd.int == hp.headDim else {
                throw QuantError(file, "\(p)rope.dimension_count \(rd.int.map(String.init) ?? "?") differs from the head size \(hp.headDim) (partial rotary is not supported)")
            }
        }
        if let s = md[p + "rope.scaling.type"]?.string, s != "none" {
            throw QuantError(file, "\(p)rope.scaling.type '\(s)' is not supported")
        }
        if let e = md[p + "expert_count"]?.int, e > 0 {
            throw QuantError(file, "\(p)expert_count \(e): mixture-of-experts models are not supported")
        }

        // (tensor key, GGUF name, expected shape): GGUF's names are the roles themselves.
        var expected: [(TensorKey, String, [Int])] = [(TensorKey(.tokenEmbedding), "token_embd.weight", [vocab, d])]
        let perLayer = arch.layerTensors(hp)
        for l in 0 ..< nLayer {
            for (role, shape) in perLayer {
                let bias = role.hasSuffix(".bias"), r = bias ? String(role.dropLast(5)) : role
                expected.append((TensorKey(TensorRole(rawValue: r), layer: l, bias: bias), "blk.\(l).\(r).\(bias ? "bias" : "weight")", shape))
            }
        }
        expected.append((TensorKey(.outputNorm), "output_norm.weight", [d]))
        if !hp.tiedEmbeddings { expected.append((TensorKey(.output), "output.weight", [vocab, d])) }

        var byName: [String: GGUFTensorInfo] = [:]
        for t in g.tensors where !isIgnored(t.name) { byName[t.name] = t }
        var tensors: [SourceTensor] = []
        for (key, gname, shape) in expected {
            guard let t = byName.removeValue(forKey: gname) else {
                throw QuantError(file, "missing tensor \(gname) (expected for a \(nLayer)-layer \(archName))")
            }
            guard t.shape == shape else {
                throw QuantError(file, "tensor \(gname): shape \(t.shape) (ggml dims reversed), expected \(shape) from the \(p)* metadata")
            }
            tensors.append(SourceTensor(key: key, shape: shape, payload: .ggml(t.type), bytes: g.bytes(t),
                                        transposed: false, origin: "\(file): \(gname)"))
        }
        if let extraTensor = byName.keys.sorted().first {
            throw QuantError(file, "unknown tensor \(extraTensor) (not part of a \(nLayer)-layer \(archName))")
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
        return Checkpoint(architecture: archName, hparams: hp, tensors: tensors, tokenizer: tok,
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
