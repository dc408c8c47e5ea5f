import Foundation
import Quant

/// Which tokens are scored, with which context.
package enum PerplexityProtocol: Sendable {
    /// Hugging Face's sliding window over one token stream: windows of `ctx` tokens advance
    /// by `stride`; each token at position p ≥ 1 is scored once, by the first window whose
    /// scored region (its last `end - prevEnd` positions) contains it.
    /// `maxTokens` keeps only the first N tokens of the stream.
    case stride(ctx: Int, stride: Int, maxTokens: Int? = nil)
    /// Each document scored on its own from its start (BOS first where the tokenizer has
    /// one), truncated to `ctx` tokens; every next-token prediction inside it counts.
    case documents(separator: String, maxDocs: Int?, ctx: Int)
    /// llama.cpp's llama-perplexity: the whole text as one stream, cut into non-overlapping
    /// chunks of `ctx` tokens (a partial last chunk dropped); a chunk's first token becomes
    /// BOS when the tokenizer starts its encodings with BOS; only the second half of each chunk
    /// is scored (rows ctx/2 ..< ctx-1, predicting its last ctx/2 - 1 tokens).
    case chunks(ctx: Int, maxChunks: Int?)
}

/// One scoring pass: the token window and which of its positions are predicted.
struct ScoringWindow {
    var tokens: [Int32]
    /// Rows whose logits predict tokens[row + 1].
    var rows: Range<Int>
}

package struct ModelScore: Codable, Sendable {
    package var model: String
    package var fileBytes: Int
    package var bitsPerWeight: Double
    package var storedBitsPerWeight: Double
    package var tokensScored: Int
    package var meanNLL: Double
    package var perplexity: Double
    // Against the reference (the first model); nil for the reference itself.
    package var deltaPerplexity: Double?
    package var deltaPercent: Double?
    package var klMean: Double?
    package var klP99: Double?
    package var top1Agreement: Double?
    /// Bytes of the model's KV cache as allocated (pattern, sinks and KV type).
    package var kvCacheBytes: Int = 0

    enum CodingKeys: String, CodingKey {
        case model, fileBytes = "file_bytes", bitsPerWeight = "bits_per_weight", storedBitsPerWeight = "stored_bits_per_weight"
        case tokensScored = "tokens_scored", meanNLL = "mean_nll", perplexity
        case deltaPerplexity = "delta_ppl", deltaPercent = "delta_percent", klMean = "kl_mean", klP99 = "kl_p99"
        case top1Agreement = "top1_agreement", kvCacheBytes = "kv_cache_bytes"
    }
}

package struct PerplexityReport: Codable, Sendable {
    package var protocolName: String
    package var ctx: Int
    package var stride: Int?
    package var documents: Int?
    package var textTokens: Int
    package var tokensScored: Int
    package var seconds: Double
    package var tokensPerSecond: Double
    package var models: [ModelScore]
    /// Filled by callers that run under a memory budget: each model's plan (streamed bytes per
    /// scored token) and the process's memory after scoring.
    package var memoryPlans: [MemoryReport]?
    package var memory: MemoryStats?

    enum CodingKeys: String, CodingKey {
        case protocolName = "protocol", ctx, stride, documents, textTokens = "text_tokens", tokensScored = "tokens_scored"
        case seconds, tokensPerSecond = "tokens_per_second", models, memoryPlans = "memory_plans", memory
    }
}

package enum PerplexityError: Error, CustomStringConvertible {
    case bad(String)
    package var description: String { if case .bad(let s) = self { return s }; return "" }
}

package enum Perplexity {
    /// Splits on lines equal to `separator` (a trailing \r ignored); each document is its
    /// lines joined with \n and trimmed of surrounding whitespace; empty documents dropped.
    package static func splitDocuments(_ text: String, separator: String) -> [String] {
        var docs: [String] = []
        var cur: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let l = line.hasSuffix("\r") ? line.dropLast() : line
            if l == separator {
                docs.append(cur.joined(separator: "\n"))
                cur = []
            } else {
                cur.append(line)
            }
        }
        docs.append(cur.joined(separator: "\n"))
        return docs.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
    }

    /// The windows of a protocol over `text`. Throws a one-line error for unusable input.
    /// Each document (split as `splitDocuments`) encoded on its own, BOS first where the
    /// tokenizer has one, concatenated: one token stream of many documents without encoding
    /// the whole text at once (llama2.c's merge loop is quadratic in the text length).
    package static func encodeDocuments(_ text: String, separator: String, tokenizer: any Tokenizer) -> [Int32] {
        var ids: [Int32] = []
        for d in splitDocuments(text, separator: separator) {
            var t = tokenizer.encode(d)
            if let bos = tokenizer.bosID, t.first != bos { t.insert(bos, at: 0) }
            ids += t
        }
        return ids
    }

    static func windows(_ proto: PerplexityProtocol, text: String, tokenizer: any Tokenizer, modelContext: Int,
                        tokenIDs: [Int32]? = nil) throws
        -> (windows: [ScoringWindow], textTokens: Int, documents: Int?) {
        guard !text.isEmpty || tokenIDs != nil else { throw PerplexityError.bad("the text is empty") }
        switch proto {
        case .stride(let ctx, let stride, let maxTokens):
            guard ctx >= 2 else { throw PerplexityError.bad("--ctx must be at least 2, got \(ctx)") }
            guard ctx <= modelContext else { throw PerplexityError.bad("--ctx \(ctx) exceeds the model's context of \(modelContext) tokens") }
            guard stride >= 1, stride <= ctx else { throw PerplexityError.bad("--stride must be in 1...ctx (\(ctx)), got \(stride)") }
            if let m = maxTokens, m < 2 { throw PerplexityError.bad("--max-tokens must be at least 2") }
            var ids = tokenIDs ?? tokenizer.encode(text)
            if let m = maxTokens, ids.count > m { ids = Array(ids.prefix(m)) }
            guard ids.count >= 2 else { throw PerplexityError.bad("the text is \(ids.count) token(s); at least 2 are needed to score anything") }
            var out: [ScoringWindow] = []
            var prevEnd = 0
            var begin = 0
            while begin < ids.count {
                let end = min(begin + ctx, ids.count)
                // Scored: absolute positions max(prevEnd, begin + 1) ..< end; row r predicts begin + r + 1.
                let first = max(prevEnd, begin + 1)
                if first < end {
                    out.append(ScoringWindow(tokens: Array(ids[begin ..< end]), rows: (first - begin - 1) ..< (end - begin - 1)))
                }
                prevEnd = end
                if end == ids.count { break }
                begin += stride
            }
            return (out, ids.count, nil)
        case .chunks(let ctx, let maxChunks):
            guard ctx >= 4 else { throw PerplexityError.bad("--ctx must be at least 4, got \(ctx)") }
            guard ctx <= modelContext else { throw PerplexityError.bad("--ctx \(ctx) exceeds the model's context of \(modelContext) tokens") }
            if let m = maxChunks, m < 1 { throw PerplexityError.bad("--chunks must be ≥ 1") }
            let ids = tokenIDs ?? tokenizer.encode(text)
            var n = ids.count / ctx
            if let m = maxChunks { n = min(n, m) }
            guard n >= 1 else { throw PerplexityError.bad("the text is \(ids.count) tokens, less than one chunk of \(ctx)") }
            let bos = ids.first.flatMap { $0 == tokenizer.bosID ? $0 : nil }
            var out: [ScoringWindow] = []
            for c in 0 ..< n {
                var w = Array(ids[c * ctx ..< (c + 1) * ctx])
                if let bos { w[0] = bos }
                out.append(ScoringWindow(tokens: w, rows: ctx / 2 ..< ctx - 1))
            }
            return (out, ids.count, nil)
        case .documents(let separator, let maxDocs, let ctx):
            guard ctx >= 2 else { throw PerplexityError.bad("--ctx must be at least 2, got \(ctx)") }
            guard ctx <= modelContext else { throw PerplexityError.bad("--ctx \(ctx) exceeds the model's context of \(modelContext) tokens") }
            if let m = maxDocs, m < 1 { throw PerplexityError.bad("--max-docs must be ≥ 1") }
            guard text.contains(separator) else {
                throw PerplexityError.bad("the separator '\(separator)' never occurs in the text (use --protocol stride for one stream)")
            }
            var docs = splitDocuments(text, separator: separator)
            if let m = maxDocs { docs = Array(docs.prefix(m)) }
            var out: [ScoringWindow] = []
            var total = 0
            for d in docs {
                var ids = tokenizer.encode(d)
                if let bos = tokenizer.bosID, ids.first != bos { ids.insert(bos, at: 0) }
                ids = Array(ids.prefix(ctx))
                total += ids.count
                if ids.count >= 2 { out.append(ScoringWindow(tokens: ids, rows: 0 ..< ids.count - 1)) }
            }
            guard !out.isEmpty else { throw PerplexityError.bad("no document has two or more tokens") }
            return (out, total, docs.count)
        }
    }

    /// Scores `models` over the same windows in one pass. The first model is the reference
    /// for Δppl, KL divergence and top-1 agreement when there are several.
    package static func evaluate(_ models: [LoadedModel], names: [String], text: String, proto: PerplexityProtocol,
                                tokenIDs: [Int32]? = nil, progress: ((Int, Int) -> Void)? = nil) throws -> PerplexityReport {
        precondition(!models.isEmpty && names.count == models.count)
        let ref = models[0]
        let vocab = ref.model.shape.vocabSize
        for (m, n) in zip(models, names).dropFirst() {
            // Keep each TensorData alive while its bytes are copied (a zstd tensor's buffer is freed with it).
            func blob(_ lm: LoadedModel) throws -> [UInt8] {
                let t = try lm.file.load(lm.file.metadata.tokenizer.tensor)
                return withExtendedLifetime(t) { [UInt8](t.bytes) }
            }
            guard m.model.shape.vocabSize == vocab, m.file.metadata.tokenizer == ref.file.metadata.tokenizer,
                  try blob(m) == blob(ref) else {
                throw PerplexityError.bad("\(n) has a different tokenizer than \(names[0]); they cannot be compared")
            }
        }
        let modelContext = models.map { $0.model.positionLimit }.min()!
        let start = Date()
        let (windows, textTokens, docCount) = try windows(proto, text: text, tokenizer: ref.tokenizer, modelContext: modelContext, tokenIDs: tokenIDs)
        let totalScored = windows.reduce(0) { $0 + $1.rows.count }
        let batch = models.map { $0.model.maxBatch }.min()!

        var nll = [Double](repeating: 0, count: models.count)
        var agree = [Int](repeating: 0, count: models.count)
        var kls = [[Float]](repeating: [], count: models.count)
        for i in 1 ..< models.count { kls[i].reserveCapacity(totalScored) }
        // Reference log-probabilities of one sub-batch, and its argmax per row.
        let refLogp = UnsafeMutablePointer<Float>.allocate(capacity: batch * vocab)
        defer { refLogp.deallocate() }
        var refTop = [Int32](repeating: 0, count: batch)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: vocab)
        defer { scratch.deallocate() }
        var done = 0

        for w in windows {
            var lo = 0
            while lo < w.tokens.count {
                let hi = min(w.tokens.count, lo + batch)
                let sub = Array(w.tokens[lo ..< hi])
                let localRows = w.rows.localized(to: lo ..< hi)
                for (mi, m) in models.enumerated() {
                    try m.model.forward(sub, startPos: lo, logitRows: localRows) { r, logits in
                        let row = lo + r
                        let target = Int(w.tokens[row + 1])
                        let slot = r - localRows.lowerBound
                        if mi == 0 {
                            let lp = refLogp + slot * vocab
                            logSoftmax(logits, into: lp)
                            nll[0] -= Double(lp[target])
                            refTop[slot] = Sampler.argmax(UnsafeBufferPointer(start: lp, count: vocab))
                        } else {
                            logSoftmax(logits, into: scratch)
                            nll[mi] -= Double(scratch[target])
                            let lp = refLogp + slot * vocab
                            var kl: Double = 0
                            for v in 0 ..< vocab {
                                let p = lp[v]
                                kl += Double(expf(p) * (p - scratch[v]))
                            }
                            kls[mi].append(Float(max(0, kl)))
                            if Sampler.argmax(UnsafeBufferPointer(start: scratch, count: vocab)) == refTop[slot] { agree[mi] += 1 }
                        }
                    }
                }
                done += localRows.count
                progress?(done, totalScored)
                lo = hi
            }
        }
        let seconds = Date().timeIntervalSince(start)
        let refMean = nll[0] / Double(totalScored)
        var scores: [ModelScore] = []
        for (i, m) in models.enumerated() {
            let numeric = m.file.tensors.filter { $0.type != .u8 }
            let params = Double(numeric.reduce(0) { $0 + $1.elementCount })
            let mean = nll[i] / Double(totalScored)
            var s = ModelScore(model: names[i], fileBytes: m.file.map.count,
                               bitsPerWeight: Double(numeric.reduce(0) { $0 + $1.rawLength } * 8) / params,
                               storedBitsPerWeight: Double(numeric.reduce(0) { $0 + $1.storedLength } * 8) / params,
                               tokensScored: totalScored, meanNLL: mean, perplexity: exp(mean))
            s.kvCacheBytes = m.model.cache.bytes
            if i > 0 {
                s.deltaPerplexity = exp(mean) - exp(refMean)
                s.deltaPercent = (exp(mean) / exp(refMean) - 1) * 100
                let sorted = kls[i].sorted()
                s.klMean = kls[i].reduce(0.0) { $0 + Double($1) } / Double(max(1, kls[i].count))
                s.klP99 = sorted.isEmpty ? 0 : Double(sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.99).rounded(.up)) - 1)])
                s.top1Agreement = Double(agree[i]) / Double(totalScored) * 100
            }
            scores.append(s)
        }
        var report = PerplexityReport(protocolName: "stride", ctx: 0, stride: nil, documents: docCount, textTokens: textTokens,
                                      tokensScored: totalScored, seconds: seconds,
                                      tokensPerSecond: Double(totalScored * models.count) / max(seconds, 1e-9), models: scores)
        switch proto {
        case .stride(let ctx, let stride, _): report.ctx = ctx; report.stride = stride
        case .documents(_, _, let ctx): report.protocolName = "documents"; report.ctx = ctx
        case .chunks(let ctx, _): report.protocolName = "chunks"; report.ctx = ctx
        }
        return report
    }

    /// out = logits - logsumexp(logits), in double-accumulated float.
    static func logSoftmax(_ logits: UnsafeBufferPointer<Float>, into out: UnsafeMutablePointer<Float>) {
        var mx = -Float.infinity
        for v in logits where v > mx { mx = v }
        var sum: Double = 0
        for v in logits { sum += Double(expf(v - mx)) }
        let lse = mx + Float(log(sum))
        for i in 0 ..< logits.count { out[i] = logits[i] - lse }
    }
}
