import Foundation
import Quant

/// Positions the KV cache holds and tokens per forward pass, decided once the tokenizer is known
/// (generation sizes them to the prompt and the tokens it will produce).
package struct RunSizing: Sendable {
    package var kvPositions: Int
    package var maxBatch: Int
    /// Trailing KV positions the cache must be able to discard exactly (speculative decoding).
    package var kvRollback: Int
    package init(kvPositions: Int, maxBatch: Int, kvRollback: Int = 1) {
        self.kvPositions = kvPositions; self.maxBatch = maxBatch; self.kvRollback = kvRollback
    }
}

package struct LoadOptions {
    package var threads: Int
    package var maxBatch: Int
    /// Check every tensor's CRC-32C before use.
    package var verifyChecksums: Bool
    /// Fault the whole map in at open (MAP_POPULATE). Off by default: measured on a 476 MiB file in
    /// page cache, a lazy map loads in ~5 ms instead of ~23 ms and still reaches the first token
    /// sooner (docs/benchmarks.md). Ignored under a memory budget.
    package var populate: Bool
    /// Attention pattern per layer, sinks, KV type and position policy.
    package var attention: AttentionConfig
    /// Hard budget in bytes for the whole process's peak resident set (nil: everything resident,
    /// mapped): the baseline at plan time + a margin + weights, KV cache, buffers and scratch.
    package var memoryBudget: Int?
    /// The process baseline the plan subtracts from the budget (nil: VmRSS at plan time, after
    /// the tokenizer is loaded). Tests pass a fixed value so plans are deterministic.
    package var memoryBaseline: Int?
    /// Room the plan leaves for what grows after plan time (MemoryPlan.defaultMarginBytes).
    package var memoryMargin: Int = MemoryPlan.defaultMarginBytes
    /// KV cache positions (nil: the model's n_ctx).
    package var kvPositions: Int?
    /// Trailing KV positions `KVCache.truncate` must discard exactly (ring layers get
    /// kvRollback - 1 extra slots; see `LayerKV`).
    package var kvRollback: Int = 1
    /// Overrides kvPositions and maxBatch once the tokenizer is loaded.
    package var sizing: ((any Tokenizer, ModelShape) -> RunSizing)?
    /// Top-k-only logits through a 4-bit screen of the classifier (`LogitScreen`): K candidates
    /// rescored exactly; `verify` passes the full logits on and counts argmax misses instead.
    package var screen: (k: Int, verify: Bool)?

    package init(threads: Int = ProcessInfo.processInfo.activeProcessorCount, maxBatch: Int = 128,
                verifyChecksums: Bool = false, populate: Bool = false, attention: AttentionConfig = AttentionConfig(),
                memoryBudget: Int? = nil, memoryBaseline: Int? = nil, kvPositions: Int? = nil,
                sizing: ((any Tokenizer, ModelShape) -> RunSizing)? = nil) {
        self.threads = threads; self.maxBatch = maxBatch; self.verifyChecksums = verifyChecksums; self.populate = populate
        self.attention = attention
        self.memoryBudget = memoryBudget; self.memoryBaseline = memoryBaseline; self.kvPositions = kvPositions; self.sizing = sizing
    }
}

/// A model and its tokenizer, loaded from a .qlm file.
package final class LoadedModel {
    package let file: QLMFile
    package let model: LanguageModel
    package let tokenizer: any Tokenizer
    package let weights: WeightStore
    package let loadSeconds: Double
    /// What is resident and what streams (computed for unbudgeted runs too, for reports).
    package let plan: MemoryPlan
    /// How `model` was built, so `makeSequence` can build more over the same weights.
    private let arch: any Architecture.Type
    private let patterns: [AttentionPattern]
    private let positionMode: PositionMode
    private let attention: AttentionConfig
    private let shape: ModelShape

    package init(path: String, options: LoadOptions = LoadOptions()) throws {
        let start = Date()
        let url = URL(fileURLWithPath: path)
        let budgeted = options.memoryBudget != nil
        file = try QLMFile(url, populate: options.populate && !budgeted)
        if options.verifyChecksums {
            for t in file.tensors { try file.verify(t) }
            // Under a budget nothing is used through the map: give the pages back.
            if budgeted { file.map.advise(0 ..< file.map.count, willNeed: false) }
        }
        let arch = try Architectures.named(file.metadata.architecture, file: path)
        let shape = try arch.shape(of: file)
        tokenizer = try TokenizerPayloads.load(from: file)
        if budgeted, let t = try? file.info(file.metadata.tokenizer.tensor) {
            file.map.advise(t.offset ..< t.offset + t.storedLength, willNeed: false)
        }
        // The process so far (libraries, heap, the tokenizer; before the KV cache,
        // which the plan counts): what the budget holds besides the plan.
        let baseline = options.memoryBaseline ?? MemoryStats.current().rss
        var sizing = RunSizing(kvPositions: options.kvPositions ?? shape.nCtx, maxBatch: options.maxBatch, kvRollback: options.kvRollback)
        if let f = options.sizing { sizing = f(tokenizer, shape) }
        let positions = min(max(1, sizing.kvPositions), shape.nCtx), maxBatch = max(1, sizing.maxBatch)
        let a = options.attention
        let patterns = try a.layers(nLayer: shape.nLayer, nCtx: shape.nCtx, modelDefault: try arch.defaultAttention(of: file))
        // Re-indexing is what lets an all-banded rotary model run past n_ctx; inside n_ctx
        // absolute positions score slightly better (docs/attention.md), so patterns that are
        // limited to n_ctx anyway (any dense or strided layer) default to absolute.
        let allBanded = patterns.allSatisfy { if case .banded = $0 { return true }; return false }
        let mode = a.positions ?? (arch.positionEncoding == .rotary && allBanded ? .cache : .absolute)
        let cache = PatternKVCache(patterns: patterns, sinks: a.sinks, kvType: a.kvType, nKVHead: shape.nKVHead,
                                   headDim: shape.headDim, positions: positions, rollback: max(1, sizing.kvRollback))
        plan = try MemoryPlan.make(model: url.lastPathComponent, tensors: file.tensors, metadata: file.metadata,
                                   settings: MemorySettings(kvBytes: cache.bytes, maxBatch: maxBatch), budget: options.memoryBudget,
                                   baseline: baseline, margin: options.memoryMargin, shape: shape)
        weights = budgeted ? try WeightStore(file: file, plan: plan) : WeightStore(file: file)
        if let sc = options.screen { weights.screenRequest = (sc.k, sc.verify, options.threads) }
        let compute = Compute(threads: options.threads, maxCols: max(shape.dModel, shape.qDim, shape.dFF), maxBatch: max(maxBatch, 16))
        model = try arch.make(file, context: ModelContext(weights: weights, compute: compute, cache: cache, maxBatch: maxBatch, positions: mode))
        self.arch = arch
        self.patterns = patterns
        self.positionMode = mode
        self.attention = a
        self.shape = shape
        weights.finishLoading()
        loadSeconds = Date().timeIntervalSince(start)
        MemoryStats.sample()
    }

    /// The plan and the streaming counters, per token over `tokens` tokens since `since`.
    package func memoryReport(since: (stored: Int, raw: Int) = (0, 0), tokens: Int) -> MemoryReport {
        let n = Double(max(tokens, 1)), now = streamedCounters
        return MemoryReport(plan: plan, streamedBytesPerToken: Double(now.stored - since.stored) / n,
                            streamedRawBytesPerToken: Double(now.raw - since.raw) / n)
    }

    /// Streaming counters now (pass to memoryReport): streamed layers and classifier chunks,
    /// and embedding row lookups.
    package var streamedCounters: (stored: Int, raw: Int) {
        (weights.streamedStoredBytes + weights.embeddingStoredBytes, weights.streamedRawBytes + weights.embeddingRawBytes)
    }

    /// Another model over the same weights and compute pool with a KV cache of its own
    /// (`positions` positions, the same attention patterns and KV type): one more sequence
    /// for a server's slots. Use it from the thread that uses `model` (they share the pool).
    package func makeSequence(positions: Int, maxBatch: Int? = nil, rollback: Int = 1) throws -> LanguageModel {
        let cache = PatternKVCache(patterns: patterns, sinks: attention.sinks, kvType: attention.kvType, nKVHead: shape.nKVHead,
                                   headDim: shape.headDim, positions: min(max(1, positions), shape.nCtx), rollback: max(1, rollback))
        return try arch.make(file, context: ModelContext(weights: weights, compute: model.compute, cache: cache,
                                                         maxBatch: maxBatch ?? model.maxBatch, positions: positionMode))
    }
}
