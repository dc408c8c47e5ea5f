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

    /// Tensors llama.cpp may write that carry no weights QuantLM needs (precomputed rotary tables).
    static func isIgnored(_ name: String) -> Bool {
        name == "rope_freqs.weight" || name.hasSuffix(".rope_freqs.weight") || name.hasSuffix("attn_rot_embd")
    }

    package static func read(_ url: URL, tokenizer: URL?, formats: [ArchitectureFormats]) throws -> Checkpoint {
        let g = try GGUFFile(url)
        // Hash the file while the tensors are checked and the tokenizer is built (as HFReader does).
        let hashing = SourceHasher([url], maps: [g.map])
        let file = url.path
        let md = g.metadata
        guard let archName = md["general.architecture"]?.string else {
            throw QuantError(file, "GGUF metadata lacks general.architecture")
        }
        let known = formats.compactMap(\.gguf)
        guard let arch = formats.first(where: { $0.gguf?.architecture == archName }), let mapping = arch.gguf else {
            throw QuantError(file, "general.architecture '\(archName)' is not supported (QuantLM reads GGUF \(known.map(\.architecture).joined(separator: ", ")) models)")
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
        for (key, name) in mapping.extraKeys {
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

        // GGUF's names are the roles themselves (TensorKey.description).
        var expected = arch.tensors(hp).map { ($0.key, $0.key.description, $0.shape) }
        let present = Set(g.tensors.map(\.name))
        for spec in mapping.optionalTensors(hp) where present.contains(spec.key.description) {
            expected.append((spec.key, spec.key.description, spec.shape))
        }

        var byName: [String: GGUFTensorInfo] = [:]
        for t in g.tensors where !isIgnored(t.name) || expected.contains(where: { $0.1 == t.name }) { byName[t.name] = t }
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
            throw QuantError(file, "unknown tensor \(QuantError.shown(extraTensor)) (not part of a \(nLayer)-layer \(archName))")
        }

        let tok: TokenizerSource?
        if let tokenizer {
            if HFReader.isDirectory(tokenizer) {
                tok = try HFReader.tokenizerSource(tokenizer, explicit: nil).source
            } else {
                tok = .llama2c(tokenizer)
            }
        } else if let tokens {
            tok = .data(try tokenizerData(md, tokens: tokens, file: file))
        } else {
            throw QuantError(file, "GGUF metadata lacks tokenizer.ggml.tokens; pass --tokenizer")
        }
        var ckpt = Checkpoint(architecture: arch.name, hparams: hp, tensors: tensors, tokenizer: tok,
                              sourceFiles: [url], keepAlive: [g])
        ckpt.hashing = hashing
        return ckpt
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
