import Foundation

/// Hyper-parameters of a model, decoded from the file's metadata. One description drives
/// every architecture; fields an architecture does not use keep their defaults.
public struct HParams: Codable, Equatable, Sendable {
    public var nLayer: Int
    public var nHead: Int
    public var nKVHead: Int
    public var dModel: Int
    public var dFF: Int
    public var nCtx: Int
    public var vocabSize: Int
    public var normEps: Float
    public var ropeTheta: Float?
    public var tiedEmbeddings: Bool

    public init(nLayer: Int, nHead: Int, nKVHead: Int, dModel: Int, dFF: Int, nCtx: Int, vocabSize: Int,
                normEps: Float, ropeTheta: Float? = nil, tiedEmbeddings: Bool) {
        self.nLayer = nLayer; self.nHead = nHead; self.nKVHead = nKVHead; self.dModel = dModel
        self.dFF = dFF; self.nCtx = nCtx; self.vocabSize = vocabSize; self.normEps = normEps
        self.ropeTheta = ropeTheta; self.tiedEmbeddings = tiedEmbeddings
    }

    enum CodingKeys: String, CodingKey {
        case nLayer = "n_layer", nHead = "n_head", nKVHead = "n_kv_head", dModel = "d_model", dFF = "d_ff"
        case nCtx = "n_ctx", vocabSize = "vocab_size", normEps = "norm_eps", ropeTheta = "rope_theta"
        case tiedEmbeddings = "tied_embeddings"
    }

    public var headDim: Int { dModel / nHead }
    public var kvDim: Int { headDim * nKVHead }

    /// Checks the numbers make a model; `file` names where they came from.
    public func validate(file: String) throws {
        func need(_ ok: Bool, _ msg: String) throws { if !ok { throw QuantError(file, "bad hyper-parameters: \(msg)") } }
        try need(nLayer > 0 && nLayer <= 1024, "n_layer \(nLayer)")
        try need(dModel > 0 && dModel <= 1 << 16, "d_model \(dModel)")
        try need(nHead > 0 && dModel % nHead == 0, "d_model \(dModel) not divisible by n_head \(nHead)")
        try need(nKVHead > 0 && nHead % nKVHead == 0, "n_head \(nHead) not divisible by n_kv_head \(nKVHead)")
        try need(dFF > 0 && dFF <= 1 << 18, "d_ff \(dFF)")
        try need(nCtx > 0 && nCtx <= 1 << 20, "n_ctx \(nCtx)")
        try need(vocabSize > 0 && vocabSize <= 1 << 22, "vocab_size \(vocabSize)")
        try need(normEps.isFinite && normEps > 0, "norm_eps \(normEps)")
    }
}

/// Where the tokenizer lives inside the file: a U8 tensor holding the serialized tokenizer.
public struct TokenizerInfo: Codable, Equatable, Sendable {
    /// "gpt2-bpe" (QuantLM's compact byte-level BPE blob) or "llama2c" (tokenizer.bin verbatim).
    public var kind: String
    public var tensor: String
    public var bos: Int?
    public var eos: Int?
    /// `tokenizer.chat_template` of the source checkpoint (Jinja text), if it had one; absent
    /// in older files and then not written.
    public var chatTemplate: String? = nil

    enum CodingKeys: String, CodingKey {
        case kind, tensor, bos, eos, chatTemplate = "chat_template"
    }

    public init(kind: String, tensor: String = "tokenizer", bos: Int?, eos: Int?, chatTemplate: String? = nil) {
        self.kind = kind; self.tensor = tensor; self.bos = bos; self.eos = eos; self.chatTemplate = chatTemplate
    }
}

public struct QuantPolicyInfo: Codable, Equatable, Sendable {
    public var defaultType: String
    public var overrides: [String]      // "GLOB=TYPE", in the order they were given
    public var zstdLevel: Int?
    public var zstdChunkBytes: Int?
    /// The `--zstd-filter` choice (auto, none, shuffle, ...); absent in files written before
    /// filters existed (all their zstd tensors are unfiltered QZC1 streams).
    public var zstdFilter: String? = nil
    /// How GPTQ calibration was run (text, documents, tokens), or nil for data-free conversion.
    public var calibration: String? = nil

    enum CodingKeys: String, CodingKey {
        case defaultType = "default_type", overrides, zstdLevel = "zstd_level", zstdChunkBytes = "zstd_chunk_bytes"
        case zstdFilter = "zstd_filter"
        case calibration
    }
}

public struct SourceFileInfo: Codable, Equatable, Sendable {
    public var file: String
    public var bytes: Int
    public var sha256: String
}

public struct Provenance: Codable, Equatable, Sendable {
    public var sources: [SourceFileInfo]
    public var converter: String
    public var created: String
}

/// The JSON metadata block of a .qlm file (docs/format.md lists every key).
public struct ModelMetadata: Codable, Equatable, Sendable {
    public var format: String
    public var formatVersion: Int
    /// The architecture's registered name (Runtime's `Architectures`): "gpt2", "llama", ...
    public var architecture: String
    public var hparams: HParams
    public var tokenizer: TokenizerInfo
    public var quantization: QuantPolicyInfo
    public var provenance: Provenance

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", architecture, hparams, tokenizer, quantization, provenance
    }

    public static let converterVersion = "quantlm-convert 0.1.0"

    public func encoded() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try enc.encode(self)
    }

    public static func decode(_ data: Data, file: String) throws -> ModelMetadata {
        let dec = JSONDecoder()
        do {
            return try dec.decode(ModelMetadata.self, from: data)
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
