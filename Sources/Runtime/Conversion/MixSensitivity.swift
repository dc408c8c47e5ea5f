import CKernels
import Foundation
import Quant

/// How much the model's output moves per unit of a matrix's rounding error, measured on the
/// calibration text (never evaluation text), for the size target's planner
/// (`MixPlanner.plan(weights:)`).
///
/// Matrices are grouped by kind (the name with its layer number replaced, e.g. `blk.*.attn_v.weight`)
/// and by a band of consecutive layers (`bands` per kind); a matrix outside the layers (the tied
/// embedding/classifier) is its own group. For each group, the model with only that group's
/// matrices rounded to `probe` (importance-weighted, as the converter would) runs the calibration
/// chunks, and the mean KL divergence of its next-token distributions from the float model's is
/// divided by the group's summed relative importance-weighted error (`MixPlanner.relativeError`'s
/// measure, on every row). A matrix's weight is its group's KL per unit error: the planner then
/// minimizes Σ weight × error, a first-order model of the KL (both grow with the squared
/// perturbation), instead of weighting every matrix's relative error alike.
package enum MixSensitivity {
    package struct Group: Sendable {
        package var name: String
        package var matrices: [String]
        /// Mean KL of the model with only this group at the probe type.
        package var kl: Double
        /// Σ relative weighted error of the group's matrices at the probe type.
        package var error: Double
    }

    package struct Result: Sendable {
        /// Matrix name -> KL per unit relative error.
        package var weights: [String: Double]
        package var groups: [Group]
        package var positions: Int
        package var seconds: Double
    }

    /// (kind, layer) of a tensor name: the first dot-separated all-digit component is the layer.
    static func kindAndLayer(_ name: String) -> (String, Int?) {
        var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard let i = parts.firstIndex(where: { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              let layer = Int(parts[i]) else { return (name, nil) }
        parts[i] = "*"
        return (parts.joined(separator: "."), layer)
    }

    /// Groups of the matrices in `names`: (group name, members), in first-seen order.
    package static func groups(_ names: [String], bands: Int) -> [(String, [String])] {
        let parsed = names.map { ($0, kindAndLayer($0)) }
        let layers = (parsed.compactMap { $0.1.1 }.max() ?? -1) + 1
        var order: [String] = []
        var members: [String: [String]] = [:]
        for (name, (kind, layer)) in parsed {
            let key: String
            if let l = layer {
                let b = l * max(1, min(bands, layers)) / max(1, layers)
                key = "\(kind) band \(b)"
            } else {
                key = kind
            }
            if members[key] == nil { order.append(key) }
            members[key, default: []].append(name)
        }
        return order.map { ($0, members[$0]!) }
    }

    /// - Parameters:
    ///   - matrices: the matrices the planner chooses types for (others stay float here).
    ///   - text, separator, documents, maxTokens, ctx: the calibration text and its forward passes
    ///     (`Calibration.calibrationBatches`: chunks of `ctx` spread over the text, `maxTokens` in all).
    ///   - maxLogitFloats: bound on the stored float log-probabilities (positions × vocabulary);
    ///     each chunk scores its last positions.
    package static func measure(checkpoint: Checkpoint, tokenizer: TokenizerPayload, matrices: Set<String>,
                                importance: [String: [Float]], text: String, separator: String, documents: Range<Int>,
                                maxTokens: Int, ctx: Int, probe: QuantType, bands: Int, threads: Int,
                                maxLogitFloats: Int = 48 << 20, source: String = "--calibrate",
                                log: ((String) -> Void)? = nil) throws -> Result {
        let start = Date()
        let tmp = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("quantlm-sens-\(getpid()).qlm")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let copy = FloatWorkingCopy(checkpoint)
        defer { withExtendedLifetime(copy) {} }
        let work = copy.checkpoint, buffers = copy.buffers, index = copy.index
        let f32 = ConvertOptions(policy: QuantPolicy(defaultType: .f32), threads: threads)
        let load = Calibration.loadOptions(threads: threads, ctx: ctx)

        // the float model's log-probabilities at the scored positions
        _ = try Converter.convert(work, tokenizer: tokenizer, options: f32, to: tmp)
        var lm = try LoadedModel(path: tmp.path, options: load)
        let batches = try Calibration.calibrationBatches(text: text, separator: separator, documents: documents,
                                                         maxTokens: maxTokens, ctx: ctx, lm: lm, source: source).batches
        let vocab = lm.model.shape.vocabSize
        let perChunk = max(1, min(batches.map(\.count).min()!, maxLogitFloats / vocab / batches.count))
        let rows = batches.map { ($0.count - perChunk) ..< $0.count }
        let positions = perChunk * batches.count
        let ref = UnsafeMutablePointer<Float>.allocate(capacity: positions * vocab)
        defer { ref.deallocate() }
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: vocab)
        defer { scratch.deallocate() }
        for (bi, ids) in batches.enumerated() {
            try lm.model.forward(ids, startPos: 0, logitRows: rows[bi]) { r, logits in
                Perplexity.logSoftmax(logits, into: ref + (bi * perChunk + r - rows[bi].lowerBound) * vocab)
            }
        }

        let names = checkpoint.tensors.map(\.name).filter { matrices.contains($0) }
        var groups: [Group] = []
        var weights: [String: Double] = [:]
        for (gi, (gname, members)) in Self.groups(names, bands: bands).enumerated() {
            var err = 0.0
            for name in members {
                let ti = index[name]!, t = checkpoint.tensors[ti]
                let type = probe.allows(rowLength: t.rowLength) ? probe : probe.rowFallback
                err += try roundTrip(t, type, importance: importance[name].flatMap { $0.count == t.rowLength ? $0 : nil },
                                     into: buffers[ti], threads: threads)
            }
            _ = try Converter.convert(work, tokenizer: tokenizer, options: f32, to: tmp)
            lm = try LoadedModel(path: tmp.path, options: load)
            var kl = 0.0
            for (bi, ids) in batches.enumerated() {
                try lm.model.forward(ids, startPos: 0, logitRows: rows[bi]) { r, logits in
                    Perplexity.logSoftmax(logits, into: scratch)
                    let lp = ref + (bi * perChunk + r - rows[bi].lowerBound) * vocab
                    var s = 0.0
                    for v in 0 ..< vocab { s += Double(expf(lp[v]) * (lp[v] - scratch[v])) }
                    kl += max(0, s)
                }
            }
            kl /= Double(positions)
            // restore the group's float weights
            for name in members {
                let ti = index[name]!
                checkpoint.tensors[ti].readFloats(into: buffers[ti])
            }
            groups.append(Group(name: gname, matrices: members, kl: kl, error: err))
            log?("sensitivity \(gi + 1): \(gname) (\(members.count) matrices): KL \(String(format: "%.5f", kl)), error \(String(format: "%.4g", err))")
        }
        // KL per unit error; a group without error (or KL) takes the median of the others
        let ratios = groups.filter { $0.error > 0 && $0.kl > 0 }.map { $0.kl / $0.error }.sorted()
        let median = ratios.isEmpty ? 1 : ratios[ratios.count / 2]
        for g in groups {
            let w = g.error > 0 && g.kl > 0 ? g.kl / g.error : median
            for m in g.matrices { weights[m] = w }
        }
        return Result(weights: weights, groups: groups, positions: positions, seconds: Date().timeIntervalSince(start))
    }

    /// Rounds every row of `t` to `type` (importance-weighted when given) and writes the
    /// dequantized values to `out`; returns Σ imp (w - q)² / Σ imp w².
    static func roundTrip(_ t: SourceTensor, _ type: QuantType, importance: [Float]?, into out: UnsafeMutablePointer<Float>,
                          threads: Int) throws -> Double {
        let rows = t.rows, n = t.rowLength
        let w = UnsafeMutablePointer<Float>.allocate(capacity: t.elementCount)
        defer { w.deallocate() }
        t.readFloats(into: w)
        let rs = type.rowSize(n)
        let q = UnsafeMutableRawPointer.allocate(byteCount: max(1, rs * rows), alignment: 64)
        defer { q.deallocate() }
        let bad = (importance ?? []).withUnsafeBufferPointer {
            qlm_quantize_rows_imp(type.rawValue, w, importance == nil ? nil : $0.baseAddress, q, Int64(rows), Int64(n), Int32(threads))
        }
        if bad >= 0 { throw QuantError(t.origin, "row \(bad) holds NaN or infinity; cannot quantize") }
        var num = 0.0, den = 0.0
        for r in 0 ..< rows {
            qlm_get_row(type.rawValue, q, Int64(rows), Int64(n), Int64(r), out + r * n)
            let (a, b) = MixPlanner.weightedError(w + r * n, out + r * n, count: n, importance: importance)
            num += a
            den += b
        }
        return den > 0 ? num / den : 0
    }
}
