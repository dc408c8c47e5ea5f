import CKernels
import Foundation

/// A type per matrix under a byte budget (`convert --max-size` / `--target-bpw`).
///
/// Sensitivity: for every matrix and candidate type, the relative importance-weighted error of
/// rounding it, Σ_rj imp_j (w_rj - q_rj)² / Σ_rj imp_j w_rj² (imp = the calibration text's
/// per-column mean squares; all ones without calibration), measured by quantizing a sample of
/// its rows (every row up to `sampleRows`, else evenly spaced rows). The plan minimizes the sum
/// of these errors over the matrices, each times its matrix's weight (with calibration and a
/// size target: MixSensitivity's KL per unit error on the calibration text; else 1), under the budget: each matrix's (bytes, error) points are
/// reduced to their lower convex hull, and the steepest error-per-byte step of any matrix is
/// taken while it fits (greedy on the hull segments; optimal for the fractional problem).
/// Matrices a --keep pattern names keep that type. A type that takes only whole blocks (the
/// K-quants) is offered for a matrix whose rows are not whole blocks as its row fallback.
/// Nothing here reads evaluation text.
package enum MixPlanner {
    package struct Plan: Sendable {
        /// Matrix name -> chosen type.
        package var types: [String: QuantType]
        /// Bytes of every numeric tensor (matrices at their chosen types, the rest as the policy says).
        package var tensorBytes: Int
        /// The smallest tensorBytes any plan reaches (every free matrix at its smallest candidate).
        package var minimumTensorBytes: Int
        /// Σ relative weighted error of the chosen types (each times its matrix's weight).
        package var loss: Double
        /// "q4_0 120, iq4_k16 60, q8_0 31" (types by count, most used first).
        package var summary: String
    }

    /// The types a plan may choose from by default: every quantized weight type stored row by row
    /// (row-grouped forms are the same numbers as their plain types). A type added to the C table
    /// joins by itself.
    package static var defaultCandidates: [QuantType] {
        QuantType.weightTypes.filter { $0.isQuantized && $0.rowGroup == 1 }
    }

    /// - Parameters:
    ///   - budget: bytes for all numeric tensors.
    ///   - weights: per matrix, what a unit of its relative error costs (MixSensitivity: the
    ///     calibration text's KL per unit error); nil or a matrix missing: 1 (every matrix alike).
    package static func plan(_ ckpt: Checkpoint, policy: QuantPolicy, candidates: [QuantType], importance: [String: [Float]]?,
                             weights: [String: Double]? = nil, budget: Int, sampleRows: Int = 256, threads: Int) throws -> Plan {
        precondition(!candidates.isEmpty)
        struct Option { var type: QuantType; var bytes: Int; var err: Double }
        var hulls: [(name: String, options: [Option])] = []
        var fixedBytes = 0
        var chosen: [String: QuantType] = [:]
        for t in ckpt.tensors {
            let isFixed = t.shape.count < 2 || policy.overrides.contains { QuantPolicy.matches($0.glob, t.name) }
            if isFixed {
                let type = policy.type(for: t).type
                fixedBytes += t.rows * type.rowSize(t.rowLength)
                continue
            }
            let imp = importance?[t.name].flatMap { $0.count == t.rowLength ? $0 : nil }
            let weight = weights?[t.name] ?? 1
            // types that only take whole blocks are candidates for rows of whole blocks (else
            // their row fallback is, as the converter would store them)
            let usable = Array(Set(candidates.map { $0.allows(rowLength: t.rowLength) ? $0 : $0.rowFallback })).sorted { $0.rawValue < $1.rawValue }
            var opts = try usable.map { type in
                Option(type: type, bytes: t.rows * type.rowSize(t.rowLength),
                       err: weight * (try relativeError(t, type, importance: imp, sampleRows: sampleRows, threads: threads)))
            }
            // Pareto front by bytes, then its lower convex hull
            opts.sort { ($0.bytes, $0.err) < ($1.bytes, $1.err) }
            var front: [Option] = []
            for o in opts where front.last.map({ o.err < $0.err && o.bytes > $0.bytes }) ?? true { front.append(o) }
            var hull: [Option] = []
            for o in front {
                while hull.count >= 2 {
                    let a = hull[hull.count - 2], b = hull[hull.count - 1]
                    // drop b when it lies on or above the segment a -> o
                    let lhs = (b.err - a.err) * Double(o.bytes - a.bytes), rhs = (o.err - a.err) * Double(b.bytes - a.bytes)
                    if lhs >= rhs { hull.removeLast() } else { break }
                }
                hull.append(o)
            }
            hulls.append((t.name, hull))
        }
        let minimum = fixedBytes + hulls.reduce(0) { $0 + $1.options[0].bytes }
        var pos = [Int](repeating: 0, count: hulls.count)
        var used = minimum
        var open = Set(hulls.indices.filter { hulls[$0].options.count > 1 })
        while !open.isEmpty {
            var best = -1, bestSlope = -Double.infinity
            for i in open {
                let a = hulls[i].options[pos[i]], b = hulls[i].options[pos[i] + 1]
                let slope = (a.err - b.err) / Double(b.bytes - a.bytes)
                if slope > bestSlope || (slope == bestSlope && i < best) { bestSlope = slope; best = i }
            }
            let a = hulls[best].options[pos[best]], b = hulls[best].options[pos[best] + 1]
            if used + b.bytes - a.bytes <= budget {
                used += b.bytes - a.bytes
                pos[best] += 1
                if pos[best] + 1 >= hulls[best].options.count { open.remove(best) }
            } else {
                open.remove(best)
            }
        }
        var loss = 0.0
        var counts: [QuantType: Int] = [:]
        for (i, h) in hulls.enumerated() {
            let o = h.options[pos[i]]
            chosen[h.name] = o.type
            loss += o.err
            counts[o.type, default: 0] += 1
        }
        let summary = counts.sorted { ($1.value, $0.key.rawValue) < ($0.value, $1.key.rawValue) }.map { "\($0.key.name) \($0.value)" }
            .joined(separator: ", ")
        return Plan(types: chosen, tensorBytes: used, minimumTensorBytes: minimum, loss: loss, summary: summary)
    }

    /// Σ imp (w - q)² / Σ imp w² over a sample of the tensor's rows (`type` with importance-weighted
    /// rounding when it has it).
    static func relativeError(_ t: SourceTensor, _ type: QuantType, importance: [Float]?, sampleRows: Int, threads: Int) throws -> Double {
        let rows = t.rows, n = t.rowLength
        let pick = rows <= sampleRows ? Array(0 ..< rows) : (0 ..< sampleRows).map { $0 * rows / sampleRows }
        let all = UnsafeMutablePointer<Float>.allocate(capacity: t.elementCount)
        defer { all.deallocate() }
        t.readFloats(into: all)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: pick.count * n)
        defer { x.deallocate() }
        for (k, r) in pick.enumerated() { (x + k * n).update(from: all + r * n, count: n) }
        let rs = type.rowSize(n)
        let q = UnsafeMutableRawPointer.allocate(byteCount: max(1, rs * pick.count), alignment: 64)
        defer { q.deallocate() }
        let bad = (importance ?? []).withUnsafeBufferPointer {
            qlm_quantize_rows_imp(type.rawValue, x, importance == nil ? nil : $0.baseAddress, q, Int64(pick.count), Int64(n), Int32(threads))
        }
        if bad >= 0 { throw QuantError(t.origin, "row \(pick[Int(bad)]) holds NaN or infinity; cannot quantize") }
        var y = [Float](repeating: 0, count: n)
        var num = 0.0, den = 0.0
        for k in 0 ..< pick.count {
            qlm_dequantize_row(type.rawValue, q + k * rs, &y, Int64(n))
            let (a, b) = weightedError(x + k * n, y, count: n, importance: importance)
            num += a
            den += b
        }
        return den > 0 ? num / den : 0
    }

    /// (Σ imp (x - y)², Σ imp x²) over one row (imp nil: ones).
    package static func weightedError(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count n: Int,
                                      importance: [Float]?) -> (Double, Double) {
        var num = 0.0, den = 0.0
        for j in 0 ..< n {
            let imp = Double(importance?[j] ?? 1)
            let d = Double(x[j] - y[j])
            num += imp * d * d
            den += imp * Double(x[j]) * Double(x[j])
        }
        return (num, den)
    }

    /// Parses "90M", "90MB", "1.5G", "123456" (bytes; k/M/G are powers of 1000, Ki/Mi/Gi of 1024).
    package static func parseSize(_ s: String) -> Int? {
        var t = s.trimmingCharacters(in: .whitespaces)
        if t.hasSuffix("B") || t.hasSuffix("b") { t.removeLast() }
        let units: [(String, Double)] = [("Ki", 1024), ("Mi", 1_048_576), ("Gi", 1_073_741_824), ("k", 1e3), ("K", 1e3), ("M", 1e6), ("G", 1e9)]
        var mult = 1.0
        for (u, m) in units where t.hasSuffix(u) { mult = m; t.removeLast(u.count); break }
        guard let v = Double(t), v > 0, v.isFinite else { return nil }
        return Int(v * mult)
    }
}
