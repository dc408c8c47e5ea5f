import CKernels
import Foundation
import Quant

/// GPTQ calibration: runs calibration text through the FLOAT model and collects, for every
/// matrix, H = Σ x xᵀ over its input rows (docs/quantization.md).
package enum Calibration {
    package struct Result {
        /// H = Σ x xᵀ per matrix (matrices that share an input share the array); empty when
        /// only importance was asked for.
        package var hessians: [String: [Double]]
        /// Per matrix, the mean square of each input column over every calibration token (an
        /// importance matrix): the weights of importance-weighted rounding.
        package var importance: [String: [Float]] = [:]
        /// Documents mode: the documents used; chunks mode: the chunks of the token stream.
        package var documents: Range<Int>
        package var documentsUsed: Int
        package var tokens: Int
        package var seconds: Double
        /// "chunks" (the text as one token stream cut into chunks of ctx) or "documents".
        package var mode = "documents"
        /// Chunks mode: how many whole chunks the text holds.
        package var chunksAvailable = 0
        /// Of `seconds`: writing and loading the temporary model, the forward passes (statistics
        /// included), and the statistics alone (the observer's time: mean squares and H).
        package var modelSeconds = 0.0, forwardSeconds = 0.0, statisticsSeconds = 0.0
        /// The weight type of the temporary model the text runs through.
        package var forwardType = QuantType.f32
    }

    /// The default calibration documents of a text with `total` documents: the second half
    /// (TinyStories' first 1000: stories 500..<1000), so evaluation on the first documents
    /// never sees calibration text.
    package static func defaultDocuments(total: Int) -> Range<Int> { (total / 2) ..< total }

    /// The f32 model's load: auto memory budget (it streams when the host or its cgroup is
    /// too small to map it), a KV cache of the documents' length.
    static func loadOptions(threads: Int, ctx: Int) -> LoadOptions {
        var o = LoadOptions(threads: threads, kvPositions: ctx)
        o.autoBudget = true
        return o
    }

    /// Statistics of every matrix's inputs from running calibration text through the float model.
    /// - Parameters:
    ///   - documents: documents mode (the text has `separator` lines): which documents (0-based,
    ///     end exclusive) to use. A text without separator lines is one token stream cut into
    ///     chunks of `ctx` tokens (the chunks protocol's cut: a chunk's first token becomes BOS),
    ///     `documents` ignored.
    ///   - maxTokens: stop after this many tokens (chunks mode: that many tokens' worth of chunks,
    ///     at least one, spread evenly over the text).
    ///   - ctx: documents are truncated to this many tokens; chunks are this long.
    ///   - hessians: collect H = Σ x xᵀ for GPTQ (else only the per-column mean squares, which cost
    ///     next to nothing beyond the forward passes).
    ///   - source: the file name errors name.
    ///   - progress: (chunks done, chunks in all), after each forward pass.
    ///   - forwardType: the temporary model's matrix type (f32: the float model itself).
    package static func collect(checkpoint: Checkpoint, tokenizer: TokenizerPayload, text: String, separator: String,
                               documents: Range<Int>, maxTokens: Int, ctx: Int, threads: Int, hessians: Bool = true,
                               forwardType: QuantType = .f32,
                               source: String = "--calibrate", progress: ((Int, Int) -> Void)? = nil) throws -> Result {
        let start = Date()
        let tmp = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("quantlm-calib-\(getpid()).qlm")
        defer { try? FileManager.default.removeItem(at: tmp) }
        _ = try Converter.convert(checkpoint, tokenizer: tokenizer,
                                  options: ConvertOptions(policy: QuantPolicy(defaultType: forwardType), threads: threads), to: tmp)
        let lm = try LoadedModel(path: tmp.path, options: loadOptions(threads: threads, ctx: ctx))
        let plan = try calibrationBatches(text: text, separator: separator, documents: documents,
                                          maxTokens: maxTokens, ctx: ctx, lm: lm, source: source)
        let modelSeconds = Date().timeIntervalSince(start)
        let acc = InputStatistics(hessians: hessians, pool: lm.model.compute.pool)
        let isClassifier = classifierTest(lm.model)
        var observed: UInt64 = 0
        lm.model.compute.observer = { m, x, T in
            let t0 = BenchClock.nanoseconds()
            acc.add(m, x, T)
            observed &+= BenchClock.nanoseconds() &- t0
            return isClassifier(m)
        }
        defer { lm.model.compute.observer = nil }
        let f0 = Date()
        for (i, ids) in plan.batches.enumerated() {
            // Every row's logits are requested so the classifier sees every position's input (the
            // product itself is skipped: the observer returns true for it).
            try lm.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, _ in }
            acc.endPass()
            progress?(i + 1, plan.batches.count)
        }
        let forwardSeconds = Date().timeIntervalSince(f0)
        var r = Result(hessians: acc.hessianArrays(), importance: acc.importance(), documents: plan.range,
                       documentsUsed: plan.batches.count, tokens: plan.batches.reduce(0) { $0 + $1.count },
                       seconds: Date().timeIntervalSince(start))
        r.mode = plan.chunks ? "chunks" : "documents"
        r.chunksAvailable = plan.chunksAvailable
        r.modelSeconds = modelSeconds
        r.forwardSeconds = forwardSeconds
        r.statisticsSeconds = Double(observed) / 1e9
        r.forwardType = forwardType
        return r
    }

    /// Whether a product is the classifier's (vocab rows over d_model inputs): calibration needs
    /// its input rows, never its logits.
    static func classifierTest(_ model: any LanguageModel) -> (Matrix) -> Bool {
        let vocab = model.shape.vocabSize, d = model.shape.dModel
        return { m in m.rows == vocab && m.cols == d }
    }

    struct BatchPlan {
        var batches: [[Int32]]
        var range: Range<Int>
        var chunks: Bool
        var chunksAvailable: Int
    }

    /// The forward passes of a calibration text. Documents mode (the text has `separator`
    /// lines): documents `documents`, each encoded from BOS and truncated to `ctx` and the
    /// model's positions, until `maxTokens` tokens in all (the last one truncated); documents of
    /// fewer than two tokens are skipped. Chunks mode (no separator line): the whole text as one
    /// token stream, cut into chunks of `ctx` tokens whose first token becomes BOS; ceil(maxTokens
    /// / ctx) of them (all if fewer), spread evenly over the text. A text shorter than one chunk
    /// is an error naming `source`.
    static func calibrationBatches(text: String, separator: String, documents: Range<Int>, maxTokens: Int, ctx: Int,
                                   lm: LoadedModel, source: String = "--calibrate") throws -> BatchPlan {
        let limit = min(ctx, lm.model.positionLimit)
        let docs = Perplexity.splitDocuments(text, separator: separator)
        guard !docs.isEmpty else { throw QuantError(source, "the calibration text is empty") }
        if docs.count == 1 {
            guard limit >= 2 else { throw QuantError(source, "--calibrate-ctx must be at least 2") }
            let ids = lm.tokenizer.encode(text)
            let available = ids.count / limit
            guard available >= 1 else {
                throw QuantError(source, "the calibration text is \(ids.count) tokens, shorter than one chunk of \(limit) (--calibrate-ctx)")
            }
            let want = min(available, max(1, (maxTokens + limit - 1) / limit))
            let bos = lm.tokenizer.bosID
            var batches: [[Int32]] = []
            for k in 0 ..< want {
                let c = want == 1 ? 0 : k * (available - 1) / (want - 1)
                var w = Array(ids[c * limit ..< (c + 1) * limit])
                if let bos { w[0] = bos }
                batches.append(w)
            }
            return BatchPlan(batches: batches, range: 0 ..< available, chunks: true, chunksAvailable: available)
        }
        let lo = min(documents.lowerBound, docs.count), hi = min(documents.upperBound, docs.count)
        guard lo < hi else {
            throw QuantError(source, "--calibrate-docs \(documents.lowerBound):\(documents.upperBound) is outside the text's \(docs.count) documents")
        }
        var batches: [[Int32]] = []
        var tokens = 0
        for d in docs[lo ..< hi] {
            if tokens >= maxTokens { break }
            var ids = lm.tokenizer.encode(d)
            if let bos = lm.tokenizer.bosID, ids.first != bos { ids.insert(bos, at: 0) }
            ids = Array(ids.prefix(min(limit, maxTokens - tokens)))
            guard ids.count >= 2 else { continue }
            batches.append(ids)
            tokens += ids.count
        }
        guard tokens > 0 else { throw QuantError(source, "no calibration document has two or more tokens") }
        return BatchPlan(batches: batches, range: lo ..< hi, chunks: false, chunksAvailable: 0)
    }

    /// Sequential GPTQ (as in the GPTQ paper): the matrices are quantized stage by stage in the
    /// order the forward pass uses them — a stage is a run of products over the same input (a
    /// layer's q/k/v, then wo, then w1/w3, then w2, ..., the classifier last) — and each stage's
    /// H = Σ x xᵀ is collected from a model whose EARLIER stages already hold their GPTQ-quantized
    /// (dequantized to f32) weights, so later matrices compensate the earlier matrices' error.
    /// Returns the Hessians to give `Converter.convert` (GPTQ is deterministic given W and H, so
    /// the converter reproduces exactly the weights used here).
    /// - Parameters:
    ///   - policy: the types the final conversion will use.
    ///   - compensate: whether a matrix gets GPTQ (false: it is quantized plainly, also here).
    package static func collectSequential(checkpoint: Checkpoint, tokenizer: TokenizerPayload, text: String, separator: String,
                                         documents: Range<Int>, maxTokens: Int, ctx: Int, threads: Int,
                                         policy: QuantPolicy, damp: Double, compensate: (String) -> Bool = { _ in true },
                                         log: ((String) -> Void)? = nil) throws -> Result {
        let start = Date()
        let tmp = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("quantlm-calib-seq-\(getpid()).qlm")
        defer { try? FileManager.default.removeItem(at: tmp) }
        // Working copy of every tensor as f32; quantized stages are written back dequantized.
        let copy = FloatWorkingCopy(checkpoint)
        defer { withExtendedLifetime(copy) {} }
        let work = copy.checkpoint, buffers = copy.buffers, index = copy.index
        let f32 = ConvertOptions(policy: QuantPolicy(defaultType: .f32), threads: threads)
        _ = try Converter.convert(work, tokenizer: tokenizer, options: f32, to: tmp)
        var lm = try LoadedModel(path: tmp.path, options: loadOptions(threads: threads, ctx: ctx))
        let plan = try calibrationBatches(text: text, separator: separator, documents: documents,
                                          maxTokens: maxTokens, ctx: ctx, lm: lm)
        let batches = plan.batches, range = plan.range
        let tokens = batches.reduce(0) { $0 + $1.count }

        // Stages: consecutive products over the same input pointer, in first-use order.
        var stages: [[String]] = []
        var lastX: UnsafePointer<Float>? = nil
        var seen = Set<String>()
        lm.model.compute.observer = { m, x, _ in
            guard !seen.contains(m.name), index[m.name] != nil else { return false }
            seen.insert(m.name)
            if x == lastX, !stages.isEmpty { stages[stages.count - 1].append(m.name) } else { stages.append([m.name]) }
            lastX = x
            return false
        }
        try lm.model.forward(Array(batches[0].prefix(2)), startPos: 0, logitRows: 0 ..< 2) { _, _ in }
        lm.model.compute.observer = nil

        var out: [String: [Double]] = [:]
        for (si, stage) in stages.enumerated() {
            if si > 0 {
                _ = try Converter.convert(work, tokenizer: tokenizer, options: f32, to: tmp)
                lm = try LoadedModel(path: tmp.path, options: loadOptions(threads: threads, ctx: ctx))
            }
            let want = Set(stage)
            let acc = InputStatistics(hessians: true, pool: lm.model.compute.pool)
            let isClassifier = classifierTest(lm.model)
            lm.model.compute.observer = { m, x, T in
                if want.contains(m.name) { acc.add(m, x, T) }
                return isClassifier(m)
            }
            for ids in batches {
                try lm.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, _ in }
                acc.endPass()
            }
            lm.model.compute.observer = nil
            let stageH = acc.hessianArrays()
            // Quantize this stage's matrices and write them back dequantized.
            for name in stage {
                guard let h = stageH[name], let ti = index[name] else { continue }
                let n = Int(Double(h.count).squareRoot())
                let t = checkpoint.tensors[ti]
                let type = policy.type(for: name, shape: t.shape)
                let rows = t.rows, cols = t.rowLength
                let rs = Int(qlm_row_size(type.rawValue, Int64(cols)))
                let q = UnsafeMutableRawPointer.allocate(byteCount: max(1, rs * rows), alignment: 64)
                defer { q.deallocate() }
                let w = UnsafeMutablePointer<Float>.allocate(capacity: t.elementCount)
                defer { w.deallocate() }
                t.readFloats(into: w)
                if compensate(name), ConvertOptions.gptqTypes.contains(type), n == cols {
                    let rc = h.withUnsafeBufferPointer {
                        qlm_gptq_quantize(type.rawValue, w, Int64(rows), Int64(cols), $0.baseAddress, damp, q, Int32(threads))
                    }
                    if rc != 0 { throw QuantError(t.origin, "GPTQ failed (non-finite weights, or a Hessian that cannot be factored)") }
                    out[name] = h
                } else if type != .f32 {
                    t.readFloats(into: w)
                    _ = qlm_quantize_rows(type.rawValue, w, q, Int64(rows), Int64(cols), Int32(threads))
                } else { continue }
                for r in 0 ..< rows { qlm_get_row(type.rawValue, q, Int64(rows), Int64(cols), Int64(r), buffers[ti] + r * cols) }
            }
            log?("stage \(si + 1)/\(stages.count): \(stage.joined(separator: " "))")
        }
        var r = Result(hessians: out, documents: range, documentsUsed: batches.count, tokens: tokens, seconds: Date().timeIntervalSince(start))
        r.mode = plan.chunks ? "chunks" : "documents"
        r.chunksAvailable = plan.chunksAvailable
        return r
    }
}

/// Statistics of each matrix's inputs, keyed by matrix name: the per-column sum of squares, and
/// (with `hessians`) H = Σ x xᵀ in double precision. Products that read the same input one after
/// the other (a layer's q/k/v, w1/w3: consecutive observer calls with the same input pointer,
/// rows and width) share one accumulator. H grows by Xᵀ X per product call: its upper triangle
/// in 8 × 32 tiles of f32 sums over the call's T tokens (FMA, token order), added into the
/// double sums, on the model's pool (`qlm_xtx_upper`); `hessianArrays` mirrors it whole.
final class InputStatistics {
    private final class Entry {
        let n: Int
        var sumsq: [Double]
        var h: UnsafeMutablePointer<Double>?
        var tokens = 0
        init(n: Int, hessian: Bool) {
            self.n = n
            sumsq = [Double](repeating: 0, count: n)
            if hessian {
                h = .allocate(capacity: n * n)
                h!.initialize(repeating: 0, count: n * n)
            }
        }
        deinit { h?.deallocate() }
    }
    private let hessians: Bool
    private let pool: OpaquePointer?
    private var entries: [String: Entry] = [:]
    /// Matrix name -> the name of the entry it shares (itself when it owns one).
    private var owner: [String: String] = [:]
    private var last: (x: UnsafePointer<Float>, T: Int, n: Int, name: String)?

    init(hessians: Bool, pool: OpaquePointer?) {
        self.hessians = hessians
        self.pool = pool
    }

    /// Ends a forward pass (the next call never shares the previous one's input).
    func endPass() { last = nil }

    func add(_ m: Matrix, _ x: UnsafePointer<Float>, _ T: Int) {
        let n = m.cols
        if let l = last, l.x == x, l.T == T, l.n == n {
            if owner[m.name] == nil { owner[m.name] = l.name }
            if owner[m.name] != m.name { return }  // shares an entry this pass already fed
        }
        let key = owner[m.name] ?? m.name
        owner[m.name] = key
        last = (x, T, n, key)
        let e: Entry
        if let have = entries[key] { e = have } else { e = Entry(n: n, hessian: hessians); entries[key] = e }
        e.tokens += T
        e.sumsq.withUnsafeMutableBufferPointer { qlm_accum_sumsq($0.baseAddress, x, Int64(T), Int64(n)) }
        guard let h = e.h else { return }
        qlm_xtx_upper(pool, h, x, Int64(T), Int64(n))
    }

    /// H per matrix; matrices sharing an input share one array (no copy).
    func hessianArrays() -> [String: [Double]] {
        var arrays: [String: [Double]] = [:]
        for (k, e) in entries {
            guard let h = e.h else { continue }
            var a = Array(UnsafeBufferPointer(start: h, count: e.n * e.n))
            a.withUnsafeMutableBufferPointer { qlm_sym_mirror_upper($0.baseAddress, Int64(e.n)) }
            arrays[k] = a
        }
        var out: [String: [Double]] = [:]
        for (name, key) in owner { if let a = arrays[key] { out[name] = a } }
        return out
    }

    /// Mean square of each input column per matrix.
    func importance() -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for (name, key) in owner {
            guard let e = entries[key], e.tokens > 0 else { continue }
            out[name] = e.sumsq.map { Float($0 / Double(e.tokens)) }
        }
        return out
    }
}
