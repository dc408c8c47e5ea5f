import CKernels
import CKernels.Testing
import XCTest
import TestSupport

/// The IQ4_K* super-block types: every CPU path against the scalar reference, for the row
/// lengths that exercise the row rule (partial super-blocks, a trailing half group: 172, 1000,
/// 1600) and the row counts that exercise matvec/matmul chunking; GPTQ against plain rounding.
final class SuperBlockTests: XCTestCase {
    let kTypes = [tIQ4K16, tIQ4K32]
    let lengths = [32, 64, 172, 256, 768, 1000, 1600]

    func testDotMatvecMatmulEveryPath() {
        var rng = SplitMix64(seed: 77)
        let pool = qlm_pool_create(2)!
        defer { qlm_pool_destroy(pool) }
        for t in kTypes {
            for n in lengths {
                for rows in [1, 7, 64, 513] {
                    if rows == 513 && n > 256 { continue } // keep the test quick; 513 rows covers chunking
                    var wq = [UInt8]()
                    for r in 0..<rows { wq += withPath(pScalar) { quantize(t, rng.normals(n, scale: r % 5 == 0 ? 0.02 : 1)) } }
                    let rs = qlm_row_size(t, Int64(n))
                    XCTAssertEqual(wq.count, rows * rs)
                    let T = 3
                    let X = rng.normals(T * n, scale: 2)
                    var scalar = [Float]()
                    for p in supportedPaths {
                        withPath(p) {
                            var dots = [Float](repeating: 0, count: T * rows)
                            for tok in 0..<T {
                                let act = prepareAct(t, Array(X[tok * n..<(tok + 1) * n]))
                                let xd = decodeAct(t, act, n)
                                for r in 0..<rows {
                                    dots[tok * rows + r] = vecDot(t, n, wq, act, rowOffset: r * rs)
                                    if p == pScalar && r < 8 { // scalar dot == double reference of the decoded operands
                                        let (ref, mag) = refDot(dequantize(t, Array(wq[r * rs..<(r + 1) * rs]), n), xd)
                                        XCTAssertEqual(Double(dots[tok * rows + r]), ref, accuracy: pathTolerance(t, mag), "ref \(typeName(t)) n=\(n)")
                                    }
                                }
                                // matvec (decode) == vec_dot bit for bit, with and without the pool
                                for usePool in [false, true] {
                                    var y = [Float](repeating: .nan, count: rows)
                                    var scratch = [UInt8](repeating: 0, count: qlm_act_row_size(t, Int64(n)))
                                    let x = Array(X[tok * n..<(tok + 1) * n])
                                    wq.withUnsafeBytes { qlm_matvec(usePool ? pool : nil, t, $0.baseAddress, Int64(rows), Int64(n), x, &y, &scratch) }
                                    XCTAssertEqual(y.map(\.bitPattern), dots[tok * rows..<(tok + 1) * rows].map(\.bitPattern), "matvec \(pathName(p)) \(typeName(t)) \(rows)x\(n)")
                                }
                            }
                            // matmul (prefill) == vec_dot bit for bit
                            for usePool in [false, true] {
                                var Y = [Float](repeating: .nan, count: T * rows)
                                var scratch = [UInt8](repeating: 0, count: T * qlm_act_row_size(t, Int64(n)))
                                wq.withUnsafeBytes { qlm_matmul(usePool ? pool : nil, t, $0.baseAddress, Int64(rows), Int64(n), X, Int64(T), &Y, Int64(rows), &scratch) }
                                XCTAssertEqual(Y.map(\.bitPattern), dots.map(\.bitPattern), "matmul \(pathName(p)) \(typeName(t)) \(rows)x\(n)")
                            }
                            if p == pScalar { scalar = dots } else {
                                for i in 0..<dots.count {
                                    XCTAssertEqual(dots[i], scalar[i], accuracy: 1e-4 * (abs(scalar[i]) + 1), "\(pathName(p)) vs scalar \(typeName(t)) \(rows)x\(n)")
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Relative round-trip error on Gaussian-like rows: below q4_0's (same data), for every length.
    func testRoundTripBeatsQ4_0() {
        var rng = SplitMix64(seed: 5)
        for n in lengths {
            var e = [Double](repeating: 0, count: 3), s = 0.0
            for _ in 0..<50 {
                let x = rng.normals(n)
                s += x.reduce(0) { $0 + Double($1 * $1) }
                for (k, t) in [tQ4_0, tIQ4K16, tIQ4K32].enumerated() {
                    let y = dequantize(t, quantize(t, x), n)
                    e[k] += zip(x, y).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
                }
            }
            XCTAssertLessThan(e[1], e[0], "iq4_k16 n=\(n)")
            XCTAssertLessThan(e[2], e[0] * 1.05, "iq4_k32 n=\(n)")
            XCTAssertLessThan(e[1] / s, 0.01)
        }
    }

    /// GPTQ lowers the output error ||X W^T - X Q^T|| on correlated inputs versus plain rounding,
    /// for every type it supports, and its output decodes like any other row.
    func testGPTQLowersOutputError() {
        var rng = SplitMix64(seed: 9)
        let n = 172, rows = 24, T = 400
        // correlated inputs: x = z A with a fixed random mixing
        let A = rng.normals(n * n, scale: 0.2)
        var X = [Float](repeating: 0, count: T * n)
        for t in 0..<T {
            let z = rng.normals(n)
            for j in 0..<n { var s: Float = 0; for k in 0..<n { s += z[k] * A[k * n + j] }; X[t * n + j] = s }
        }
        var H = [Double](repeating: 0, count: n * n)
        qlm_accum_xtx(&H, X, Int64(T), Int64(n))
        let W = rng.normals(rows * n)
        func outErr(_ t: Int32, _ q: [UInt8]) -> Double {
            let rs = qlm_row_size(t, Int64(n))
            var e = 0.0
            for r in 0..<rows {
                let wd = dequantize(t, Array(q[r * rs..<(r + 1) * rs]), n)
                for tk in 0..<T {
                    var d = 0.0
                    for j in 0..<n { d += Double(W[r * n + j] - wd[j]) * Double(X[tk * n + j]) }
                    e += d * d
                }
            }
            return e
        }
        for t in [tQ8_0, tQ4_0, tIQ4K16, tIQ4K32] {
            let rs = qlm_row_size(t, Int64(n))
            var plain = [UInt8]()
            for r in 0..<rows { plain += quantize(t, Array(W[r * n..<(r + 1) * n])) }
            var g = [UInt8](repeating: 0, count: rows * rs)
            var Wc = W
            let rc = qlm_gptq_quantize(t, &Wc, Int64(rows), Int64(n), H, 0.01, &g, 2)
            XCTAssertEqual(rc, 0)
            let ep = outErr(t, plain), eg = outErr(t, g)
            XCTAssertLessThan(eg, ep * 0.9, "\(typeName(t)): GPTQ \(eg) vs plain \(ep)")
        }
        var z = [Float](repeating: 0, count: n)
        var sink = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(qlm_gptq_quantize(tQ4_1, &z, 1, Int64(n), H, 0.01, &sink, 1), -2)
    }
}
