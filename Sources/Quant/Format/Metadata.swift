import Foundation

/// Hyper-parameters of a model, decoded from the file's metadata. One description drives
/// every architecture; fields an architecture does not use keep their defaults.
package struct HParams: Codable, Equatable, Sendable {
    package var nLayer: Int
    package var nHead: Int
    package var nKVHead: Int
    package var dModel: Int
    package var dFF: Int
    package var nCtx: Int
    package var vocabSize: Int
    package var normEps: Float
    package var ropeTheta: Float?
    package var tiedEmbeddings: Bool
    /// An architecture's own numeric hyper-parameters (`head_dim`, `sliding_window`,
    /// `rope_local_theta`, ...): stored as further keys of the same `hparams` object, where
    /// the architecture's Config decodes them. Readers fill them; nothing between the reader
    /// and the architecture needs to know them.
    package var extra: [String: Double]

    package init(nLayer: Int, nHead: Int, nKVHead: Int, dModel: Int, dFF: Int, nCtx: Int, vocabSize: Int,
                normEps: Float, ropeTheta: Float? = nil, tiedEmbeddings: Bool, extra: [String: Double] = [:]) {
        self.nLayer = nLayer; self.nHead = nHead; self.nKVHead = nKVHead; self.dModel = dModel
        self.dFF = dFF; self.nCtx = nCtx; self.vocabSize = vocabSize; self.normEps = normEps
        self.ropeTheta = ropeTheta; self.tiedEmbeddings = tiedEmbeddings; self.extra = extra
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case nLayer = "n_layer", nHead = "n_head", nKVHead = "n_kv_head", dModel = "d_model", dFF = "d_ff"
        case nCtx = "n_ctx", vocabSize = "vocab_size", normEps = "norm_eps", ropeTheta = "rope_theta"
        case tiedEmbeddings = "tied_embeddings"
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        nLayer = try c.decode(Int.self, forKey: .nLayer)
        nHead = try c.decode(Int.self, forKey: .nHead)
        nKVHead = try c.decode(Int.self, forKey: .nKVHead)
        dModel = try c.decode(Int.self, forKey: .dModel)
        dFF = try c.decode(Int.self, forKey: .dFF)
        nCtx = try c.decode(Int.self, forKey: .nCtx)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        normEps = try c.decode(Float.self, forKey: .normEps)
        ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta)
        tiedEmbeddings = try c.decode(Bool.self, forKey: .tiedEmbeddings)
        let known = Set(CodingKeys.allCases.map(\.stringValue))
        let all = try decoder.container(keyedBy: AnyKey.self)
        extra = [:]
        for k in all.allKeys where !known.contains(k.stringValue) {
            extra[k.stringValue] = try all.decode(Double.self, forKey: k)
        }
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nLayer, forKey: .nLayer); try c.encode(nHead, forKey: .nHead); try c.encode(nKVHead, forKey: .nKVHead)
        try c.encode(dModel, forKey: .dModel); try c.encode(dFF, forKey: .dFF); try c.encode(nCtx, forKey: .nCtx)
        try c.encode(vocabSize, forKey: .vocabSize); try c.encode(normEps, forKey: .normEps)
        try c.encodeIfPresent(ropeTheta, forKey: .ropeTheta); try c.encode(tiedEmbeddings, forKey: .tiedEmbeddings)
        var all = encoder.container(keyedBy: AnyKey.self)
        for (k, v) in extra {
            // Whole numbers as integers, so Int fields of a Config decode them.
            if v.rounded() == v, abs(v) < 1e15 { try all.encode(Int(v), forKey: AnyKey(stringValue: k)) }
            else { try all.encode(v, forKey: AnyKey(stringValue: k)) }
        }
    }

    /// Per-head width: `head_dim` when the architecture stores one (Gemma: 256 ≠ d / n_head), else d_model / n_head.
    package var headDim: Int { extra["head_dim"].map { Int($0) } ?? dModel / nHead }
    package var kvDim: Int { headDim * nKVHead }
    /// Width of the queries: n_head × head_dim.
    package var qDim: Int { headDim * nHead }

    /// Checks the numbers make a model; `file` names where they came from.
    package func validate(file: String) throws {
        func need(_ ok: Bool, _ msg: String) throws { if !ok { throw QuantError(file, "bad hyper-parameters: \(msg)") } }
        try need(nLayer > 0 && nLayer <= 1024, "n_layer \(nLayer)")
        try need(dModel > 0 && dModel <= 1 << 16, "d_model \(dModel)")
        try need(nHead > 0 && nHead <= 1 << 10, "n_head \(nHead)")
        if let hd = extra["head_dim"] {
            try need(hd.rounded() == hd && hd >= 2 && hd <= 1024 && Int(hd) % 2 == 0, "head_dim \(hd) (even, at most 1024)")
        } else {
            try need(dModel % nHead == 0, "d_model \(dModel) not divisible by n_head \(nHead)")
        }
        try need(nKVHead > 0 && nHead % nKVHead == 0, "n_head \(nHead) not divisible by n_kv_head \(nKVHead)")
        try need(dFF > 0 && dFF <= 1 << 18, "d_ff \(dFF)")
        try need(nCtx > 0 && nCtx <= 1 << 20, "n_ctx \(nCtx)")
        try need(vocabSize > 0 && vocabSize <= 1 << 22, "vocab_size \(vocabSize)")
        try need(normEps.isFinite && normEps > 0, "norm_eps \(normEps)")
        for (k, v) in extra { try need(v.isFinite, "\(k) \(v)") }
        try ConfigValidation.checkRanges(self, file: file)
    }
}

/// Where the tokenizer lives inside the file: a U8 tensor holding the serialized tokenizer.
package struct TokenizerInfo: Codable, Equatable, Sendable {
    /// "gpt2-bpe" (QuantLM's compact byte-level BPE blob) or "llama2c" (tokenizer.bin verbatim).
    package var kind: String
    package var tensor: String
    package var bos: Int?
    package var eos: Int?
    /// `tokenizer.chat_template` of the source checkpoint (Jinja text), if it had one; absent
    /// in older files and then not written.
    package var chatTemplate: String? = nil

    enum CodingKeys: String, CodingKey {
        case kind, tensor, bos, eos, chatTemplate = "chat_template"
    }

    package init(kind: String, tensor: String = "tokenizer", bos: Int?, eos: Int?, chatTemplate: String? = nil) {
        self.kind = kind; self.tensor = tensor; self.bos = bos; self.eos = eos; self.chatTemplate = chatTemplate
    }
}

package struct QuantPolicyInfo: Codable, Equatable, Sendable {
    package var defaultType: String
    package var overrides: [String]      // "GLOB=TYPE", in the order they were given
    package var zstdLevel: Int?
    package var zstdChunkBytes: Int?
    /// The `--zstd-filter` choice (auto, none, shuffle, ...); absent in files written before
    /// filters existed (all their zstd tensors are unfiltered QZC1 streams).
    package var zstdFilter: String? = nil
    /// How GPTQ calibration was run (text, documents, tokens), or nil for data-free conversion.
    package var calibration: String? = nil
    /// How a size target chose the per-tensor types (`convert --max-size` / `--target-bpw`: the
    /// budget, the type counts; the per-tensor choices are the overrides), or nil.
    package var mix: String? = nil

    enum CodingKeys: String, CodingKey {
        case defaultType = "default_type", overrides, zstdLevel = "zstd_level", zstdChunkBytes = "zstd_chunk_bytes"
        case zstdFilter = "zstd_filter"
        case calibration, mix
    }
}

package struct SourceFileInfo: Codable, Equatable, Sendable {
    package var file: String
    package var bytes: Int
    package var sha256: String
}

package struct Provenance: Codable, Equatable, Sendable {
    package var sources: [SourceFileInfo]
    package var converter: String
    package var created: String
}

/// The JSON metadata block of a .qlm file (docs/format.md lists every key).
package struct ModelMetadata: Codable, Equatable, Sendable {
    package var format: String
    package var formatVersion: Int
    /// The architecture's registered name (Runtime's `Architectures`): "gpt2", "llama", ...
    package var architecture: String
    package var hparams: HParams
    package var tokenizer: TokenizerInfo
    package var quantization: QuantPolicyInfo
    package var provenance: Provenance

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", architecture, hparams, tokenizer, quantization, provenance
    }

    package static let converterVersion = "quantlm-convert 0.1.0"

    package func encoded() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try enc.encode(self)
    }

    package static func decode(_ data: Data, file: String) throws -> ModelMetadata {
        let dec = JSONDecoder()
        let depth = ConfigValidation.jsonDepth(data)
        guard depth <= ConfigValidation.maxMetadataDepth else {
            throw QuantError(file, "metadata nests \(depth) levels deep (this reader's limit is \(ConfigValidation.maxMetadataDepth))")
        }
        do {
            let m = try dec.decode(ModelMetadata.self, from: data)
            guard m.format == "quantlm", m.formatVersion == Int(QLMFormat.version) else {
                throw QuantError(file, "metadata says format '\(QuantError.shown(m.format))' version \(m.formatVersion); this build reads quantlm version \(QLMFormat.version)")
            }
            return m
        } catch let e as QuantError {
            throw e
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw QuantError(file, "metadata lacks \(ctx.codingPath.map(\.stringValue).joined(separator: ".")).\(key.stringValue)")
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx) {
            throw QuantError(file, "metadata field \(ctx.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw QuantError(file, "metadata is not valid JSON (\(ctx.debugDescription))")
        } catch {
            throw QuantError(file, "metadata cannot be read: \(error)")
        }
    }
}
