import Foundation
import Quant

public struct LoadOptions {
    public var threads: Int
    public var maxBatch: Int
    /// Check every tensor's CRC-32C before use.
    public var verifyChecksums: Bool
    /// Fault the whole map in at open (MAP_POPULATE).
    public var populate: Bool
    /// Attention pattern per layer, sinks, KV type and position policy.
    public var attention: AttentionConfig

    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount, maxBatch: Int = 128,
                verifyChecksums: Bool = false, populate: Bool = true, attention: AttentionConfig = AttentionConfig()) {
        self.threads = threads; self.maxBatch = maxBatch; self.verifyChecksums = verifyChecksums; self.populate = populate
        self.attention = attention
    }
}

/// A model and its tokenizer, loaded from a .qlm file.
public final class LoadedModel {
    public let file: QLMFile
    public let model: LanguageModel
    public let tokenizer: any Tokenizer
    public let weights: WeightStore
    public let loadSeconds: Double

    public init(path: String, options: LoadOptions = LoadOptions()) throws {
        let start = Date()
        let url = URL(fileURLWithPath: path)
        file = try QLMFile(url, populate: options.populate)
        if options.verifyChecksums { for t in file.tensors { try file.verify(t) } }
        let hp = file.metadata.hparams
        weights = WeightStore(file: file)
        let compute = Compute(threads: options.threads, maxCols: max(hp.dModel, hp.dFF), maxBatch: max(options.maxBatch, 16))
        let a = options.attention
        let patterns = try a.layers(nLayer: hp.nLayer, nCtx: hp.nCtx)
        // Re-indexing is what lets an all-banded rotary model run past n_ctx; inside n_ctx
        // absolute positions score slightly better (docs/attention.md), so patterns that are
        // limited to n_ctx anyway (any dense or strided layer) default to absolute.
        let allBanded = patterns.allSatisfy { if case .banded = $0 { return true }; return false }
        let arch = file.metadata.architecture
        let mode = a.positions ?? (arch == .llama && allBanded ? .cache : .absolute)
        if arch == .gpt2 && mode == .cache {
            throw ModelError("--positions cache re-indexes rotary positions; GPT-2 has learned absolute positions (use absolute)")
        }
        let cache = PatternKVCache(patterns: patterns, sinks: a.sinks, kvType: a.kvType, nKVHead: hp.nKVHead,
                                   headDim: hp.headDim, positions: hp.nCtx)
        switch arch {
        case .gpt2: model = try GPT2(weights: weights, compute: compute, cache: cache, maxBatch: options.maxBatch)
        case .llama: model = try Llama(weights: weights, compute: compute, cache: cache, maxBatch: options.maxBatch, positions: mode)
        }
        tokenizer = try TokenizerPayloads.load(from: file)
        loadSeconds = Date().timeIntervalSince(start)
    }
}
