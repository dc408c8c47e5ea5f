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
    /// With no `memoryBudget`: choose one from what the host and its memory cgroup allow
    /// (`AutoBudget`): nothing changes when the model fits, else layers stream (one line on stderr).
    package var autoBudget = false
    /// The limits auto planning reads (nil: the live system's). Tests pass fixed ones.
    package var memoryLimit: MemoryLimit?
    /// The process baseline the plan subtracts from the budget (nil: VmRSS at plan time, after
    /// the tokenizer is loaded). Tests pass a fixed value so plans are deterministic.
    package var memoryBaseline: Int?
    /// Room the plan leaves for what grows after plan time (MemoryPlan.defaultMarginBytes).
    package var memoryMargin: Int = MemoryPlan.defaultMarginBytes
    /// Streamed raw layers read with O_DIRECT (`MemoryPlan.directReads`); nil: when the auto
    /// budget streams (unless QUANTLM_STREAM_READS=buffered), not under an explicit budget.
    package var directReads: Bool?
    /// KV cache positions (nil: the model's n_ctx).
    package var kvPositions: Int?
    /// KV bytes the plan counts instead of this cache's, given the budget (nil: none) and this
    /// cache's bytes: a server's pool for all its slots (`KVAdmission.poolBytes`).
    package var plannedKVBytes: ((_ budget: Int?, _ cacheBytes: Int) -> Int)?
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

extension LoadOptions {
    /// QUANTLM_STREAM_READS: direct (the default: the auto budget's streamed layers are read with
    /// O_DIRECT) or buffered (pread through the page cache, each range dropped after it is read).
    package static func directStreamReads(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> Bool {
        switch env["QUANTLM_STREAM_READS"] {
        case nil, "", "direct": return true
        case "buffered": return false
        case let v?: throw ModelError("QUANTLM_STREAM_READS='\(v)' must be direct or buffered")
        }
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
    /// The auto budget's one-line account when it chose to stream (nil: explicit, or it fits).
    package let autoNote: String?
    /// How `model` was built, so `makeSequence` can build more over the same weights.
    private let arch: any Architecture.Type
    private let patterns: [AttentionPattern]
    private let positionMode: PositionMode
    private let attention: AttentionConfig
    private let shape: ModelShape

    package init(path: String, options: LoadOptions = LoadOptions()) throws {
        let start = Date()
        let url = URL(fileURLWithPath: path)
        var budgeted = options.memoryBudget != nil
        let file = try QLMFile(url, populate: options.populate && !budgeted)
        self.file = file
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
        let now = MemoryStats.current()
        // Auto planning counts the process's anonymous memory (its file pages are taken off the
        // ceiling instead: `MemoryLimit.ceiling`); an explicit budget the whole resident set.
        let autoPlanning = options.memoryBudget == nil && options.autoBudget
        let baseline = options.memoryBaseline ?? (autoPlanning ? now.rssAnon : now.rss)
        // Models already loaded in this process (their untouched KV, buffers, mapped weights)
        // stay outside this plan: the margin keeps room for them.
        let margin = options.memoryMargin + (options.memoryBaseline == nil ? AutoBudget.committed() : 0)
        var sizing = RunSizing(kvPositions: options.kvPositions ?? shape.nCtx, maxBatch: options.maxBatch, kvRollback: options.kvRollback)
        if let f = options.sizing { sizing = f(tokenizer, shape) }
        let positions = min(max(1, sizing.kvPositions), shape.nCtx)
        var maxBatch = max(1, sizing.maxBatch)
        let a = options.attention
        try ConfigValidation.checkLayers(file.tensors.map(\.name), names: arch.tensorNames, nLayer: shape.nLayer, file: path)
        if !budgeted { try ConfigValidation.checkScales(file) } // one pass over the map (docs/reliability.md)
        let patterns = try a.layers(nLayer: shape.nLayer, nCtx: shape.nCtx, modelDefault: try arch.defaultAttention(of: file))
        // Re-indexing is what lets an all-banded rotary model run past n_ctx; inside n_ctx
        // absolute positions score slightly better (docs/attention.md), so patterns that are
        // limited to n_ctx anyway (any dense or strided layer) default to absolute.
        let allBanded = patterns.allSatisfy { if case .banded = $0 { return true }; return false }
        let mode = a.positions ?? (arch.positionEncoding == .rotary && allBanded ? .cache : .absolute)
        let cache = PatternKVCache(patterns: patterns, sinks: a.sinks, kvType: a.kvType, nKVHead: shape.nKVHead,
                                   headDim: shape.headDim, positions: positions, rollback: max(1, sizing.kvRollback))
        func settings(_ budget: Int?) -> MemorySettings {
            MemorySettings(kvBytes: options.plannedKVBytes?(budget, cache.bytes) ?? cache.bytes, maxBatch: maxBatch)
        }
        // The auto budget streams with O_DIRECT reads (QUANTLM_STREAM_READS=buffered: pread through the page cache).
        let directReads = try options.directReads ?? (autoPlanning && LoadOptions.directStreamReads())
        // `pool`: the budget the KV pool is sized for (the budget itself unless said otherwise).
        func makePlan(_ budget: Int?, pool: Int?? = .none) throws -> MemoryPlan {
            try MemoryPlan.make(model: url.lastPathComponent, tensors: file.tensors, metadata: file.metadata,
                                settings: settings(pool ?? budget), budget: budget, baseline: baseline, margin: margin, shape: shape,
                                directReads: directReads)
        }
        var poolBudget: Int?? = .none
        var budget = options.memoryBudget
        var note: String?
        if autoPlanning {
            let limit = options.memoryLimit ?? MemoryLimit.current()
            let ceiling = limit.ceiling(ownAnon: now.rssAnon)
            let full = try makePlan(nil)
            let need = baseline + margin + full.totalBytes
            if var b = AutoBudget.decide(ceiling: ceiling, mappedNeed: need).map({ $0 / 1024 * 1024 }) {
                // Below the smallest plan the page-cache reserve gives way, down to the ceiling
                // itself (the KV pool stays sized for the first choice).
                var smallest = try makePlan(nil, pool: .some(b))
                // Still too big: prefill in batches of 16 (each batch streams the weights once;
                // the activations and logit rows of a long prompt's one batch are the scratch
                // that did not fit). A verification pass keeps its 1 + k rows.
                let fewer = max(16, sizing.kvRollback)
                if smallest.minimumBytes > ceiling && maxBatch > fewer {
                    maxBatch = fewer
                    smallest = try makePlan(nil, pool: .some(b))
                }
                if b < smallest.minimumBytes {
                    guard smallest.minimumBytes <= ceiling else {
                        throw ModelError("\(path): needs at least \(mib(smallest.minimumBytes)) MiB resident even with every layer streamed "
                            + "(baseline \(mib(baseline)) MiB, KV cache \(mib(smallest.kvBytes)) MiB), but \(limit.source) leaves "
                            + "\(mib(ceiling)) MiB for this process: raise the limit or use a shorter context")
                    }
                    poolBudget = .some(b)
                    b = smallest.minimumBytes
                }
                budget = b
                budgeted = true
                note = "memory: \(url.lastPathComponent) needs \(mib(need)) MiB resident; \(limit.source) leaves \(mib(ceiling)) MiB: "
                    + "streaming from the file under a budget of \(mib(b)) MiB (--memory-budget none maps it whole)"
            }
        }
        if budgeted && options.memoryBudget == nil {
            // Decided after the open: give back what the tokenizer (or --populate) faulted in.
            file.map.advise(0 ..< file.map.count, willNeed: false)
        }
        var chosen = try makePlan(budget, pool: poolBudget)
        chosen.dropReadPages = note != nil
        plan = chosen
        if let n = note {
            var what: [String] = []
            if !plan.streamedLayers.isEmpty { what.append("\(plan.streamedLayers.count) of \(shape.nLayer) layers") }
            if plan.outputStreams { what.append("the classifier") }
            if plan.embeddingStreams { what.append("embedding rows") }
            note = n + "; streams " + (what.isEmpty ? "nothing" : what.joined(separator: " + "))
                + ", \(mib(plan.estimatedStoredBytesPerToken)) MiB per token"
            AutoBudget.announce(note!, model: path)
        }
        autoNote = note
        weights = budget != nil ? try WeightStore(file: file, plan: plan) : WeightStore(file: file)
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
        // What later models' plans must leave room for: everything, when mapped (its pages
        // fault in as they are used); the allocations not yet filled, when budgeted.
        if options.memoryBaseline == nil {
            AutoBudget.commit(ObjectIdentifier(self), bytes: budgeted
                ? plan.kvBytes + plan.bufferCount * plan.bufferBytes + plan.stagingBytes + plan.scratchBytes + plan.embeddingBufferBytes
                : plan.totalBytes)
        }
    }

    deinit { AutoBudget.release(ObjectIdentifier(self)) }

    /// How the architecture encodes positions (learned table, or rotary); `model.positionMode`
    /// says whether rotary positions are absolute or re-indexed in the cache.
    package var positionEncoding: PositionEncoding { arch.positionEncoding }

    /// The plan and the streaming counters, per token over `tokens` tokens since `since`.
    /// `readSince`: the loader's read seconds (`weights.streamReadSeconds`) at the same point.
    package func memoryReport(since: (stored: Int, raw: Int) = (0, 0), readSince: Double = 0, tokens: Int) -> MemoryReport {
        let n = Double(max(tokens, 1)), now = streamedCounters
        var r = MemoryReport(plan: plan, streamedBytesPerToken: Double(now.stored - since.stored) / n,
                             streamedRawBytesPerToken: Double(now.raw - since.raw) / n)
        if plan.streams { r.loaderReadSecondsPerToken = (weights.streamReadSeconds - readSince) / n }
        return r
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
