import Foundation
import Quant

public struct LoadOptions {
    public var threads: Int
    public var maxBatch: Int
    /// Check every tensor's CRC-32C before use.
    public var verifyChecksums: Bool
    /// Fault the whole map in at open (MAP_POPULATE).
    public var populate: Bool

    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount, maxBatch: Int = 128,
                verifyChecksums: Bool = false, populate: Bool = true) {
        self.threads = threads; self.maxBatch = maxBatch; self.verifyChecksums = verifyChecksums; self.populate = populate
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
        let cache = DenseKVCache(nLayer: hp.nLayer, kvDim: hp.kvDim, capacity: hp.nCtx)
        switch file.metadata.architecture {
        case .gpt2: model = try GPT2(weights: weights, compute: compute, cache: cache, maxBatch: options.maxBatch)
        case .llama: model = try Llama(weights: weights, compute: compute, cache: cache, maxBatch: options.maxBatch)
        }
        tokenizer = try TokenizerPayloads.load(from: file)
        loadSeconds = Date().timeIntervalSince(start)
    }
}
