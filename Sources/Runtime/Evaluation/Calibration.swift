import CKernels
import Foundation
import Quant

/// GPTQ calibration: runs calibration text through the FLOAT model and collects, for every
/// matrix, H = Σ x xᵀ over its input rows (docs/quantization.md).
public enum Calibration {
    public struct Result {
        public var hessians: [String: [Double]]
        public var documents: Range<Int>
        public var documentsUsed: Int
        public var tokens: Int
        public var seconds: Double
    }

    /// The default calibration documents of a text with `total` documents: the second half
    /// (TinyStories' first 1000: stories 500..<1000), so evaluation on the first documents
    /// never sees calibration text.
    public static func defaultDocuments(total: Int) -> Range<Int> { (total / 2) ..< total }

    /// - Parameters:
    ///   - documents: which documents (0-based, end exclusive) of `text` to use.
    ///   - maxTokens: stop after this many tokens (whole documents, the last one truncated).
    ///   - ctx: each document is truncated to this many tokens (BOS first), as in the documents protocol.
    public static func collect(checkpoint: Checkpoint, tokenizer: TokenizerPayload, text: String, separator: String,
                               documents: Range<Int>, maxTokens: Int, ctx: Int, threads: Int) throws -> Result {
        let start = Date()
        let tmp = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("quantlm-calib-\(getpid()).qlm")
        defer { try? FileManager.default.removeItem(at: tmp) }
        _ = try Converter.convert(checkpoint, tokenizer: tokenizer,
                                  options: ConvertOptions(policy: QuantPolicy(defaultType: .f32), threads: threads), to: tmp)
        let lm = try LoadedModel(path: tmp.path, options: LoadOptions(threads: threads))
        let docs = Perplexity.splitDocuments(text, separator: separator)
        guard !docs.isEmpty else { throw QuantError("--calibrate", "the calibration text has no documents") }
        let lo = min(documents.lowerBound, docs.count), hi = min(documents.upperBound, docs.count)
        guard lo < hi else {
            throw QuantError("--calibrate-docs", "documents \(documents.lowerBound)..<\(documents.upperBound) are outside the text's \(docs.count) documents")
        }
        var sums: [String: UnsafeMutablePointer<Double>] = [:]
        var widths: [String: Int] = [:]
        defer { for p in sums.values { p.deallocate() } }
        lm.model.compute.observer = { m, x, T in
            let n = m.cols
            let h: UnsafeMutablePointer<Double>
            if let p = sums[m.name] { h = p } else {
                h = .allocate(capacity: n * n)
                h.initialize(repeating: 0, count: n * n)
                sums[m.name] = h
                widths[m.name] = n
            }
            qlm_accum_xtx(h, x, Int64(T), Int64(n))
        }
        defer { lm.model.compute.observer = nil }
        let limit = min(ctx, lm.model.positionLimit)
        var tokens = 0, used = 0
        for d in docs[lo ..< hi] {
            if tokens >= maxTokens { break }
            var ids = lm.tokenizer.encode(d)
            if let bos = lm.tokenizer.bosID, ids.first != bos { ids.insert(bos, at: 0) }
            ids = Array(ids.prefix(min(limit, maxTokens - tokens)))
            guard ids.count >= 2 else { continue }
            // Every row's logits are requested so the classifier sees every position's input.
            try lm.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, _ in }
            tokens += ids.count
            used += 1
        }
        guard tokens > 0 else { throw QuantError("--calibrate", "no calibration document has two or more tokens") }
        var out: [String: [Double]] = [:]
        for (name, p) in sums { out[name] = Array(UnsafeBufferPointer(start: p, count: widths[name]! * widths[name]!)) }
        return Result(hessians: out, documents: lo ..< hi, documentsUsed: used, tokens: tokens, seconds: Date().timeIntervalSince(start))
    }
}
