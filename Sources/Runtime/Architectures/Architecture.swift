import Foundation
import Quant

/// The dimensions the shared machinery (attention, KV cache, scratch, memory planner) needs.
/// Each architecture's config supplies them; nothing derives head_dim from d_model globally.
package struct ModelShape: Sendable, Equatable {
    package var nLayer: Int
    package var dModel: Int
    package var nHead: Int
    package var nKVHead: Int
    package var headDim: Int
    package var dFF: Int
    package var nCtx: Int
    package var vocabSize: Int

    package init(nLayer: Int, dModel: Int, nHead: Int, nKVHead: Int, headDim: Int, dFF: Int, nCtx: Int, vocabSize: Int) {
        self.nLayer = nLayer; self.dModel = dModel; self.nHead = nHead; self.nKVHead = nKVHead
        self.headDim = headDim; self.dFF = dFF; self.nCtx = nCtx; self.vocabSize = vocabSize
    }

    /// Width of the queries (and of the attention output): n_head × head_dim.
    package var qDim: Int { nHead * headDim }
    /// Width of the keys and of the values: n_kv_head × head_dim.
    package var kvDim: Int { nKVHead * headDim }
}

extension ModelShape {
    private enum Keys: String, CodingKey {
        case nLayer = "n_layer", dModel = "d_model", nHead = "n_head", nKVHead = "n_kv_head", headDim = "head_dim"
        case dFF = "d_ff", nCtx = "n_ctx", vocabSize = "vocab_size"
    }

    /// The dimensions every architecture's `hparams` carries, under the same keys: n_layer,
    /// d_model, n_head, n_ctx, vocab_size required; n_kv_head (default n_head), head_dim
    /// (default d_model / n_head); d_ff required unless `defaultFF` gives it from d_model.
    /// A config decodes its own keys beside these from the same decoder.
    package init(decoding decoder: Decoder, defaultFF: ((Int) -> Int)? = nil) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        nLayer = try c.decode(Int.self, forKey: .nLayer)
        nHead = try c.decode(Int.self, forKey: .nHead)
        nKVHead = try c.decodeIfPresent(Int.self, forKey: .nKVHead) ?? nHead
        dModel = try c.decode(Int.self, forKey: .dModel)
        if let f = defaultFF { dFF = try c.decodeIfPresent(Int.self, forKey: .dFF) ?? f(dModel) }
        else { dFF = try c.decode(Int.self, forKey: .dFF) }
        nCtx = try c.decode(Int.self, forKey: .nCtx)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? dModel / nHead
    }
}

/// An architecture's hyper-parameters, decoded from the `hparams` object of a file's metadata
/// (each architecture has its own keys and defaults).
package protocol ModelConfig: Decodable, Sendable {
    var shape: ModelShape { get }
}

extension ModelConfig {
    package var nLayer: Int { shape.nLayer }
    package var dModel: Int { shape.dModel }
    package var nHead: Int { shape.nHead }
    package var nKVHead: Int { shape.nKVHead }
    package var headDim: Int { shape.headDim }
    package var dFF: Int { shape.dFF }
    package var nCtx: Int { shape.nCtx }
    package var vocabSize: Int { shape.vocabSize }
}

/// How a model knows where a token is: a learned table (no position past n_ctx, no
/// re-indexing), or rotary embeddings (positions may be re-indexed inside a window).
package enum PositionEncoding: Sendable { case learned, rotary }

/// What a model file declares about itself: its name in the metadata, its config, its tensor
/// names, how checkpoints store it, its attention pattern and its forward pass
/// (`LanguageModel`). Adding an architecture is one file conforming to this and one line in
/// `Architectures.all`.
package protocol Architecture: LanguageModel {
    associatedtype Config: ModelConfig
    /// The metadata's `architecture` value.
    static var name: String { get }
    /// Canonical tensor names: what the converter writes and what the model, the memory
    /// planner and the layer streamer read.
    static var tensorNames: TensorNames { get }
    static var positionEncoding: PositionEncoding { get }
    /// How checkpoints hold it: its tensors and their shapes, its GGUF keys, its config.json
    /// mapping and Hugging Face tensor names (the readers in Quant get these from the registry).
    static var formats: ArchitectureFormats { get }
    /// The attention pattern of each layer the model was trained with (nil: dense in every
    /// layer). `--attention` / `--attention-layers` override it.
    static func defaultAttention(_ config: Config) -> [AttentionPattern]?
    init(config: Config, context: ModelContext) throws
    /// The config the model was built from (its shape is `LanguageModel.shape`).
    var config: Config { get }
    /// Weights, compute, cache, scratch and position policy: set up once by `ModelCore`.
    var core: ModelCore { get }
}

/// What every model holds besides its own tensors, set up once here (each model repeated it):
/// the weights, the compute pool, the KV cache, the batch size, the position policy and the
/// shared forward steps over one scratch `RunState`.
package struct ModelCore {
    package let weights: WeightStore
    package let compute: Compute
    package let cache: KVCache
    package let maxBatch: Int
    package let positionMode: PositionMode
    let blocks: Blocks

    /// `attention` is the layers' attention (nil: plain scaled dot-product over `shape`, with
    /// rotary re-indexing by `reindexRotary` when positions are `.cache`).
    init(_ shape: ModelShape, context ctx: ModelContext, encoding: PositionEncoding, eps: Float,
         attention: Attention? = nil, reindexRotary: [Float]? = nil, model: String = "this model") throws {
        if encoding == .learned, ctx.positions != .absolute {
            throw ModelError("--positions cache re-indexes rotary positions; \(model) has learned absolute positions (use absolute)")
        }
        weights = ctx.weights; compute = ctx.compute; cache = ctx.cache; maxBatch = ctx.maxBatch; positionMode = ctx.positions
        let att = attention ?? Attention(shape, reindexRotary: ctx.positions == .cache ? reindexRotary : nil, compute: ctx.compute)
        let state = RunState(shape, maxBatch: ctx.maxBatch, logitChunk: 16, maxVisible: ctx.cache.maxVisible)
        blocks = Blocks(shape: shape, eps: eps, state: state, compute: ctx.compute, cache: ctx.cache, attention: att, weights: ctx.weights)
    }
}

extension Architecture {
    package var shape: ModelShape { config.shape }
    package var compute: Compute { core.compute }
    package var cache: KVCache { core.cache }
    package var maxBatch: Int { core.maxBatch }
    package var positionMode: PositionMode { core.positionMode }
    var weights: WeightStore { core.weights }
    var blocks: Blocks { core.blocks }
    /// Learned positions stop at n_ctx; rotary ones re-indexed inside the cache (`.cache`) do not.
    package var positionLimit: Int {
        Self.positionEncoding == .rotary && positionMode == .cache ? cache.capacity : min(shape.nCtx, cache.capacity)
    }
}

/// What a model is built from: its weights, the compute pool, the KV cache it fills.
package struct ModelContext {
    package let weights: WeightStore
    package let compute: Compute
    package let cache: KVCache
    /// The most tokens one forward call processes at once.
    package let maxBatch: Int
    package let positions: PositionMode
}

extension Architecture {
    package static func defaultAttention(_ config: Config) -> [AttentionPattern]? { nil }

    /// The config in `file`'s metadata.
    package static func config(of file: QLMFile) throws -> Config {
        do {
            return try JSONDecoder().decode(HParamsOf<Config>.self, from: file.metadataJSON).hparams
        } catch let DecodingError.keyNotFound(key, _) {
            throw QuantError(file.path, "metadata hparams lack \(key.stringValue), which \(name) needs")
        } catch {
            throw QuantError(file.path, "metadata hparams are not a valid \(name) config: \(error)")
        }
    }

    package static func shape(of file: QLMFile) throws -> ModelShape { try config(of: file).shape }

    package static func defaultAttention(of file: QLMFile) throws -> [AttentionPattern]? { defaultAttention(try config(of: file)) }

    /// The model of `weights.file` over a cache of the caller's (tests give reference caches).
    package init(weights: WeightStore, compute: Compute, cache: KVCache, maxBatch: Int, positions: PositionMode = .absolute) throws {
        try self.init(config: Self.config(of: weights.file),
                      context: ModelContext(weights: weights, compute: compute, cache: cache, maxBatch: maxBatch, positions: positions))
    }

    package static func make(_ file: QLMFile, context: ModelContext) throws -> LanguageModel {
        try Self(config: try config(of: file), context: context)
    }
}

/// The `hparams` object of a file's metadata JSON, decoded as one architecture's config.
private struct HParamsOf<C: Decodable>: Decodable { let hparams: C }

/// Every architecture QuantLM runs, by metadata name.
package enum Architectures {
    /// Adding an architecture: its model file, and one entry here.
    package static let all: [any Architecture.Type] = [
        GPT2.self,
        Llama.self,
        Gemma3.self,
        Qwen2.self,
        Mistral.self,
        Qwen3.self,
        Gemma2.self,
        Phi3.self,
        GPTNeo.self,
        OLMo2.self,
    ]

    /// Every architecture's checkpoint mapping, for the readers.
    package static var formats: [ArchitectureFormats] { all.map { $0.formats } }

    package static func named(_ name: String, file: String = "") throws -> any Architecture.Type {
        guard let a = all.first(where: { $0.name == name }) else {
            throw QuantError(file, "architecture '\(name)' is not supported (known: \(all.map { $0.name }.joined(separator: ", ")))")
        }
        return a
    }
}

extension Checkpoint {
    /// Reads a checkpoint and names its tensors as its architecture does (the converter's input).
    package static func open(_ url: URL, tokenizer: URL? = nil) throws -> Checkpoint {
        let c = try read(url, tokenizer: tokenizer, formats: Architectures.formats)
        let names = try Architectures.named(c.architecture, file: url.path).tensorNames
        let named = try c.named(by: names)
        try ConfigValidation.checkLayers(named.tensors.map(\.name), names: names, nLayer: c.hparams.nLayer, file: url.path)
        return named
    }
}
