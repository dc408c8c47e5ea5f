import CKernels
import CKernels.Testing
import XCTest
import TestSupport

/// Importance-weighted rounding (the traits rows' quantize_row_imp) and GPTQ's H^-1 factor.
final class ImportanceTests: XCTestCase {
    /// Σ imp_j (x_j - q_j)² of one row.
    private func weightedError(_ t: Int32, _ x: [Float], _ q: [UInt8], _ imp: [Float]) -> Double {
        let d = dequantize(t, q, x.count)
        var e = 0.0
        for j in 0..<x.count { let r = Double(x[j] - d[j]); e += Double(imp[j]) * r * r }
        return e
    }

    private func quantizeImp(_ t: Int32, _ x: [Float], _ imp: [Float]) -> [UInt8] {
        var q = [UInt8](repeating: 0, count: qlm_row_size(t, Int64(x.count)))
        XCTAssertEqual(qlm_quantize_rows_imp(t, x, imp, &q, 1, Int64(x.count), 1), -1)
        return q
    }

    /// The types with an importance-weighted quantizer: every quantized type ggml has, and iq4_k*.
    static let impTypes: [Int32] = [tQ8_0, tQ4_0, tQ4_1, tIQ4K16, tIQ4K32, tQ5_0, tQ5_1, tIQ4NL, tIQ4XS, tQ3K, tQ2K, tQ4K, tQ5K, tQ6K]

    /// With importance, every row's weighted error is no larger than plain rounding's (q8_0,
    /// q4_0, q4_1: the plain rule's own scale is one of the candidates, so per row; the other
    /// searches differ from the plain one, so over the whole matrix), and clearly smaller on
    /// skewed importance (all but q8_0: at most 0.9x over 64 rows, measured 0.3-0.8x).
    /// Row lengths include a partial last block (100) and a partial super-block (300).
    func testWeightedErrorNeverWorseThanPlain() {
        var rng = SplitMix64(seed: 27)
        for n in [100, 300] {
            // heavy-tailed importance, as activations' mean squares are
            let imp = (0..<n).map { _ -> Float in let z = rng.normal(1.5); return exp(z) }
            for t in Self.impTypes {
                XCTAssertEqual(qlm_has_quantize_imp(t), 1, typeName(t))
                var sumPlain = 0.0, sumImp = 0.0
                for r in 0..<64 {
                    let x = rng.normals(n, scale: r % 3 == 0 ? 0.05 : 1)
                    let ep = weightedError(t, x, quantize(t, x), imp)
                    let ei = weightedError(t, x, quantizeImp(t, x, imp), imp)
                    if t == tQ8_0 || t == tQ4_0 || t == tQ4_1 {
                        XCTAssertLessThanOrEqual(ei, ep * (1 + 1e-5), "\(typeName(t)) n=\(n) row \(r)")
                    }
                    sumPlain += ep; sumImp += ei
                }
                XCTAssertLessThan(sumImp, sumPlain * (t == tQ8_0 ? 1.0 : 0.9), "\(typeName(t)) n=\(n): \(sumImp) vs \(sumPlain)")
            }
        }
    }

    /// No importance (NULL) is plain rounding, byte for byte; all-zero importance (dead inputs)
    /// codes like plain rounding (squared error within 1% of it); non-finite input is still
    /// reported by row.
    func testNullAndZeroImportanceArePlain() {
        var rng = SplitMix64(seed: 5)
        let n = 288, rows = 3 // a partial block and a partial super-block
        let x = rng.normals(rows * n)
        for t in Self.impTypes {
            let rs = qlm_row_size(t, Int64(n))
            var a = [UInt8](repeating: 0, count: rows * rs), b = a, c = a
            XCTAssertEqual(qlm_quantize_rows(t, x, &a, Int64(rows), Int64(n), 1), -1)
            XCTAssertEqual(qlm_quantize_rows_imp(t, x, nil, &b, Int64(rows), Int64(n), 1), -1)
            XCTAssertEqual(a, b, typeName(t))
            let zeros = [Float](repeating: 0, count: n)
            XCTAssertEqual(qlm_quantize_rows_imp(t, x, zeros, &c, Int64(rows), Int64(n), 1), -1)
            let ones = [Float](repeating: 1, count: n)
            var ea = 0.0, ec = 0.0
            for r in 0..<rows {
                let row = Array(x[r * n..<(r + 1) * n])
                ea += weightedError(t, row, Array(a[r * rs..<(r + 1) * rs]), ones)
                ec += weightedError(t, row, Array(c[r * rs..<(r + 1) * rs]), ones)
            }
            XCTAssertLessThan(ec, ea * 1.01, typeName(t))
            var bad = x
            bad[n + 7] = .nan
            XCTAssertEqual(qlm_quantize_rows_imp(t, bad, zeros.map { $0 + 1 }, &c, Int64(rows), Int64(n), 1), 1, typeName(t))
        }
    }

    /// U from qlm_gptq_inverse_factor is upper triangular and Uᵀ U H = I (to 1e-9 relative), for
    /// sizes that leave partial panels (1, 17, 70) and one of several panels (160).
    func testInverseFactor() {
        var rng = SplitMix64(seed: 3)
        for n in [1, 17, 70, 160] {
            let T = n + 20
            let X = rng.normals(T * n)
            var H = [Double](repeating: 0, count: n * n)
            qlm_accum_xtx(&H, X, Int64(T), Int64(n))
            for i in 0..<n { H[i * n + i] += 0.1 }
            var U = [Double](repeating: .nan, count: n * n)
            XCTAssertEqual(qlm_gptq_inverse_factor(H, Int64(n), &U, 2), 0)
            var worst = 0.0
            for i in 0..<n {
                for j in 0..<i { XCTAssertEqual(U[i * n + j], 0, "below the diagonal") }
                XCTAssertGreaterThan(U[i * n + i], 0)
            }
            // M = Uᵀ U, then (M H)_ij vs δ_ij
            var M = [Double](repeating: 0, count: n * n)
            for i in 0..<n { for j in 0..<n { var s = 0.0; for k in 0...min(i, j) { s += U[k * n + i] * U[k * n + j] }; M[i * n + j] = s } }
            for i in 0..<n {
                for j in 0..<n {
                    var s = 0.0
                    for k in 0..<n { s += M[i * n + k] * H[k * n + j] }
                    worst = max(worst, abs(s - (i == j ? 1 : 0)))
                }
            }
            XCTAssertLessThan(worst, 1e-9, "n=\(n)")
        }
        var notPD: [Double] = [1, 2, 2, 1]
        var U = [Double](repeating: 0, count: 4)
        XCTAssertEqual(qlm_gptq_inverse_factor(&notPD, 2, &U, 1), -1)
    }
    /// The calibration's blocked H (qlm_xtx_upper: f32 sums over ≤ 512 tokens per entry, added
    /// into double; then mirrored) equals the double-precision Σ x xᵀ (qlm_accum_xtx) within the
    /// f32 summation bound T · 2⁻²⁴ · Σ_t |x_ti x_tj| per entry (measured ≤ 0.08 of it), on every
    /// CPU path, with and without the pool, for widths that leave partial 8-row and 32-column
    /// tiles (77, 200) and token counts above one 512-token block (700); exactly symmetric.
    func testBlockedXtXWithinTheF32Bound() {
        var rng = SplitMix64(seed: 11)
        let pool = qlm_pool_create(2)
        defer { qlm_pool_destroy(pool) }
        for (T, n) in [(300, 200), (700, 77), (40, 8)] {
            var X = rng.normals(T * n)
            for i in 0..<X.count { X[i] *= Float(1 + i % n % 5) }
            var ref = [Double](repeating: 0, count: n * n)
            qlm_accum_xtx(&ref, X, Int64(T), Int64(n))
            var bound = [Double](repeating: 0, count: n * n)
            for t in 0..<T { for i in 0..<n { for j in 0..<n { bound[i * n + j] += abs(Double(X[t * n + i]) * Double(X[t * n + j])) } } }
            for p in supportedPaths {
                for usePool in [false, true] {
                    var h = [Double](repeating: 0, count: n * n)
                    withPath(p) { qlm_xtx_upper(usePool ? pool : nil, &h, X, Int64(T), Int64(n)) }
                    qlm_sym_mirror_upper(&h, Int64(n))
                    var worst = 0.0
                    for i in 0..<n {
                        for j in 0..<n {
                            XCTAssertEqual(h[i * n + j], h[j * n + i])
                            worst = max(worst, abs(h[i * n + j] - ref[i * n + j]) / (Double(T) * 0x1p-24 * max(bound[i * n + j], 1e-30)))
                        }
                    }
                    XCTAssertLessThanOrEqual(worst, 1, "T=\(T) n=\(n) \(pathName(p)) pool \(usePool)")
                }
            }
        }
    }

    /// qlm_gptq_quantize's multi-row sweep (q4_0 / q8_0: 8 rows walk the columns together) gives
    /// the row-by-row sweep's bytes and compensated weights bit for bit, on every CPU path, for
    /// row counts that leave a partial group (37) and widths with a partial block (100).
    func testMultiRowSweepEqualsRowByRow() {
        var rng = SplitMix64(seed: 12)
        for (rows, n) in [(37, 100), (16, 192)] {
            let X = rng.normals(3 * n * n)
            var H = [Double](repeating: 0, count: n * n)
            qlm_accum_xtx(&H, X, Int64(3 * n), Int64(n))
            var mean = 0.0
            for i in 0..<n { mean += H[i * n + i] }
            mean /= Double(n)
            var Hd = H  // qlm_gptq_quantize's dampening
            for i in 0..<n { Hd[i * n + i] += 0.01 * mean }
            var U = [Double](repeating: 0, count: n * n)
            XCTAssertEqual(qlm_gptq_inverse_factor(Hd, Int64(n), &U, 1), 0)
            let w0 = rng.normals(rows * n).map { $0 * 0.05 }
            for t in [tQ4_0, tQ8_0] {
                let rs = qlm_row_size(t, Int64(n))
                for p in supportedPaths {
                    var w1 = w0, w2 = w0
                    var q1 = [UInt8](repeating: 0xAA, count: rows * rs), q2 = q1
                    let rc = withPath(p) { qlm_gptq_quantize(t, &w1, Int64(rows), Int64(n), H, 0.01, &q1, 2) }
                    XCTAssertEqual(rc, 0)
                    let row = qlm_traits(t)!.pointee.gptq_row!
                    withPath(p) {
                        w2.withUnsafeMutableBufferPointer { wp in q2.withUnsafeMutableBytes { qp in
                            for r in 0..<rows { row(wp.baseAddress! + r * n, Int64(n), U, qp.baseAddress! + r * rs) }
                        } }
                    }
                    XCTAssertEqual(q1, q2, "\(typeName(t)) \(pathName(p)) rows \(rows) n \(n)")
                    XCTAssertEqual(w1.map(\.bitPattern), w2.map(\.bitPattern), "\(typeName(t)) \(pathName(p))")
                }
            }
        }
    }
    /// The weighted scale search (sym_search: q8_0, q4_0, q5_0, and q3_k / q6_k's groups) is
    /// vectorized over its candidates on AVX-512; every path gives the same bytes, on smooth
    /// weights, on weights that sit on the grid's half-steps (rounding ties), with zero and
    /// uniform importance, and on tiny weights.
    func testWeightedSearchIsTheSameOnEveryPath() {
        var rng = SplitMix64(seed: 13)
        let rows = 8, n = 512
        for trial in 0..<4 {
            var x = rng.normals(rows * n)
            for i in 0..<x.count { x[i] *= Float(1 + i % 11) }
            if trial == 1 { x = x.map { ($0 * 4).rounded(.towardZero) / 8 } }
            if trial == 3 { for i in 0..<x.count { x[i] = i % 7 == 0 ? 0 : x[i] * 1e-6 } }
            var imp = [Float](repeating: 1, count: n)
            if trial != 2 {
                for j in 0..<n { imp[j] = j % 5 == 0 ? 0 : Float(1 + (j * 7919) % 97) * 0.01 }
            }
            for t in [tQ8_0, tQ4_0, tQ5_0, tQ3K, tQ6K] {
                let rs = qlm_row_size(t, Int64(n))
                let want: [UInt8] = withPath(pScalar) {
                    var q = [UInt8](repeating: 0, count: rows * rs)
                    _ = qlm_quantize_rows_imp(t, x, imp, &q, Int64(rows), Int64(n), 1)
                    return q
                }
                for p in supportedPaths {
                    let got: [UInt8] = withPath(p) {
                        var q = [UInt8](repeating: 0, count: rows * rs)
                        _ = qlm_quantize_rows_imp(t, x, imp, &q, Int64(rows), Int64(n), 1)
                        return q
                    }
                    XCTAssertEqual(got, want, "\(typeName(t)) \(pathName(p)) trial \(trial)")
                }
            }
        }
    }
}
