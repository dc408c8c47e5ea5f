import CKernels
import Foundation
import Quant

/// GPTQ calibration: runs calibration text through the FLOAT model and collects, for every
/// matrix, H = Σ x xᵀ over its input rows (docs/quantization.md).
package enum Calibration {
    package struct Result {
        package var hessians: [String: [Double]]
        package var documents: Range<Int>
        package var documentsUsed: Int
        package var tokens: Int
        package var seconds: Double
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

    /// - Parameters:
    ///   - documents: which documents (0-based, end exclusive) of `text` to use.
    ///   - maxTokens: stop after this many tokens (whole documents, the last one truncated).
    ///   - ctx: each document is truncated to this many tokens (BOS first), as in the documents protocol.
    package static func collect(checkpoint: Checkpoint, tokenizer: TokenizerPayload, text: String, separator: String,
                               documents: Range<Int>, maxTokens: Int, ctx: Int, threads: Int) throws -> Result {
        let start = Date()
        let tmp = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("quantlm-calib-\(getpid()).qlm")
        defer { try? FileManager.default.removeItem(at: tmp) }
        _ = try Converter.convert(checkpoint, tokenizer: tokenizer,
                                  options: ConvertOptions(policy: QuantPolicy(defaultType: .f32), threads: threads), to: tmp)
        let lm = try LoadedModel(path: tmp.path, options: loadOptions(threads: threads, ctx: ctx))
        let (batches, range) = try calibrationBatches(text: text, separator: separator, documents: documents,
                                                      maxTokens: maxTokens, ctx: ctx, lm: lm)
        let acc = HessianAccumulator()
        lm.model.compute.observer = { m, x, T in acc.add(m, x, T) }
        defer { lm.model.compute.observer = nil }
        for ids in batches {
            // Every row's logits are requested so the classifier sees every position's input.
            try lm.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, _ in }
        }
        var out: [String: [Double]] = [:]
        for (name, (p, n)) in acc.sums { out[name] = Array(UnsafeBufferPointer(start: p, count: n * n)) }
        return Result(hessians: out, documents: range, documentsUsed: batches.count,
                      tokens: batches.reduce(0) { $0 + $1.count }, seconds: Date().timeIntervalSince(start))
    }

    /// Documents `documents` of `text` (split on `separator` lines), each encoded from BOS and
    /// truncated to `ctx` and the model's positions, until `maxTokens` tokens in all (the last
    /// one truncated); documents of fewer than two tokens are skipped.
    static func calibrationBatches(text: String, separator: String, documents: Range<Int>, maxTokens: Int, ctx: Int,
                                   lm: LoadedModel) throws -> (batches: [[Int32]], range: Range<Int>) {
        let docs = Perplexity.splitDocuments(text, separator: separator)
        guard !docs.isEmpty else { throw QuantError("--calibrate", "the calibration text has no documents") }
        let lo = min(documents.lowerBound, docs.count), hi = min(documents.upperBound, docs.count)
        guard lo < hi else {
            throw QuantError("--calibrate-docs", "documents \(documents.lowerBound)..<\(documents.upperBound) are outside the text's \(docs.count) documents")
        }
        let limit = min(ctx, lm.model.positionLimit)
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
        guard tokens > 0 else { throw QuantError("--calibrate", "no calibration document has two or more tokens") }
        return (batches, lo ..< hi)
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
        var buffers: [UnsafeMutablePointer<Float>] = []
        defer { for b in buffers { b.deallocate() } }
        var work = checkpoint
        var index: [String: Int] = [:]
        for (i, t) in checkpoint.tensors.enumerated() {
            let b = UnsafeMutablePointer<Float>.allocate(capacity: t.elementCount)
            t.readFloats(into: b)
            buffers.append(b)
            index[t.name] = i
            work.tensors[i] = SourceTensor(key: t.key, name: t.name, shape: t.shape, dtype: .f32,
                                           bytes: UnsafeRawBufferPointer(start: b, count: t.elementCount * 4),
                                           transposed: false, origin: t.origin)
        }
        let f32 = ConvertOptions(policy: QuantPolicy(defaultType: .f32), threads: threads)
        _ = try Converter.convert(work, tokenizer: tokenizer, options: f32, to: tmp)
        var lm = try LoadedModel(path: tmp.path, options: loadOptions(threads: threads, ctx: ctx))
        let (batches, range) = try calibrationBatches(text: text, separator: separator, documents: documents,
                                                      maxTokens: maxTokens, ctx: ctx, lm: lm)
        let tokens = batches.reduce(0) { $0 + $1.count }

        // Stages: consecutive products over the same input pointer, in first-use order.
        var stages: [[String]] = []
        var lastX: UnsafePointer<Float>? = nil
        var seen = Set<String>()
        lm.model.compute.observer = { m, x, _ in
            guard !seen.contains(m.name), index[m.name] != nil else { return }
            seen.insert(m.name)
            if x == lastX, !stages.isEmpty { stages[stages.count - 1].append(m.name) } else { stages.append([m.name]) }
            lastX = x
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
            let acc = HessianAccumulator()
            lm.model.compute.observer = { m, x, T in if want.contains(m.name) { acc.add(m, x, T) } }
            for ids in batches {
                try lm.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, _ in }
            }
            lm.model.compute.observer = nil
            // Quantize this stage's matrices and write them back dequantized.
            for name in stage {
                guard let (p, n) = acc.sums[name], let ti = index[name] else { continue }
                let t = checkpoint.tensors[ti]
                let type = policy.type(for: name, shape: t.shape)
                let h = Array(UnsafeBufferPointer(start: p, count: n * n))
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
        return Result(hessians: out, documents: range, documentsUsed: batches.count, tokens: tokens, seconds: Date().timeIntervalSince(start))
    }
}

/// H = Σ x xᵀ of each matrix's inputs (double precision), keyed by matrix name; the buffers are
/// freed with the accumulator.
final class HessianAccumulator {
    private(set) var sums: [String: (UnsafeMutablePointer<Double>, Int)] = [:]

    func add(_ m: Matrix, _ x: UnsafePointer<Float>, _ T: Int) {
        let n = m.cols
        let h: UnsafeMutablePointer<Double>
        if let (p, _) = sums[m.name] {
            h = p
        } else {
            h = .allocate(capacity: n * n)
            h.initialize(repeating: 0, count: n * n)
            sums[m.name] = (h, n)
        }
        qlm_accum_xtx(h, x, Int64(T), Int64(n))
    }

    deinit { for (p, _) in sums.values { p.deallocate() } }
}
