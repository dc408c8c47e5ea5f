import CKernels
import CKernels.Testing
import XCTest
import TestSupport

/// Tolerances. Integer formats: each 32-block's integer dot is exact in int32 on every path,
/// so paths differ only in the order of the float accumulation (scalar: one running sum in
/// block order; SIMD: 8 lanes summed at the end). Each reordering changes the result by at
/// most a few ulp of the partial sums, so we allow 1e-5 * sum|terms| (sum|terms| computed in
/// double from the decoded operands). Float weights (f32/f16, FMA, 16 lanes): 2e-5 * sum|terms|.
/// Within one path, matvec and matmul reuse the dot kernel's exact arithmetic per row, so they
/// must equal qlm_vec_dot bit for bit (asserted with ==), with and without the thread pool.
func pathTolerance(_ t: Int32, _ mag: Double) -> Double {
    (qlm_traits(t)!.pointee.is_quantized != 0 ? 1e-5 : 2e-5) * mag + 1e-30
}

final class ProductTests: XCTestCase {
    func makeWeights(_ t: Int32, rows: Int, n: Int, rng: inout SplitMix64) -> (q: [UInt8], deq: [[Float]]) {
        var q = [UInt8](), deq = [[Float]]()
        for r in 0..<rows {
            let row = rng.normals(n, scale: r % 5 == 0 ? 0.02 : 1)
            let qr = quantize(t, row)
            q += qr
            deq.append(dequantize(t, qr, n))
        }
        return (q, deq)
    }

    func testVecDotAgainstScalarAndReference() {
        var rng = SplitMix64(seed: 10)
        for n in [32, 64, 172, 224, 768, 1000, 4096] { // 224: 7 blocks (a q4_0 AVX-512 step of 3)
            for t in allTypes {
                let w = rng.normals(n)
                let x = rng.normals(n, scale: 3)
                let wq = withPath(pScalar) { quantize(t, w) }
                let wd = dequantize(t, wq, n)
                let act = withPath(pScalar) { prepareAct(t, x) }
                let (ref, mag) = refDot(wd, decodeAct(t, act, n))
                let s = withPath(pScalar) { vecDot(t, n, wq, act) }
                XCTAssertEqual(Double(s), ref, accuracy: pathTolerance(t, mag), "scalar \(typeName(t)) n=\(n)")
                for p in supportedPaths where p != pScalar {
                    let v = withPath(p) { vecDot(t, n, wq, act) }
                    XCTAssertEqual(Double(v), Double(s), accuracy: pathTolerance(t, mag), "\(pathName(p)) \(typeName(t)) n=\(n)")
                }
            }
        }
    }

    /// Extreme codes: q8_0 weights of +-127 against activations of +-127 (the int8 products and the
    /// AVX2 maddubs pair sums at their maximum, 2*127*127 < 32767), q4 codes 0 and 15.
    func testVecDotExtremeCodes() {
        let n = 256
        let w = (0..<n).map { Float($0 % 3 == 0 ? -1 : 1) }
        let x = (0..<n).map { Float($0 % 2 == 0 ? -1 : 1) }
        for t in allTypes {
            let wq = withPath(pScalar) { quantize(t, w) }
            let act = withPath(pScalar) { prepareAct(t, x) }
            let (ref, mag) = refDot(dequantize(t, wq, n), decodeAct(t, act, n))
            for p in supportedPaths {
                XCTAssertEqual(Double(withPath(p) { vecDot(t, n, wq, act) }), ref, accuracy: pathTolerance(t, mag), "\(pathName(p)) \(typeName(t))")
            }
        }
    }

    func testMatvec() {
        var rng = SplitMix64(seed: 11)
        let pool = qlm_pool_create(2)!
        defer { qlm_pool_destroy(pool) }
        // n = 416: 13 blocks, an odd number of whole 4-block steps plus a partial one (q4_0 AVX-512
        // alternates two accumulators by step parity).
        for n in [32, 172, 416, 768, 4096] {
            for rows in [1, 7, 64, 513] {
                if n == 4096 && rows == 513 { continue }
                for t in allTypes {
                    let (wq, _) = makeWeights(t, rows: rows, n: n, rng: &rng)
                    let x = rng.normals(n)
                    let rs = qlm_row_size(t, Int64(n))
                    var scalarY = [Float]()
                    for p in supportedPaths {
                        withPath(p) {
                            let act = prepareAct(t, x)
                            let dots = (0..<rows).map { vecDot(t, n, wq, act, rowOffset: $0 * rs) }
                            for usePool in [false, true] {
                                var y = [Float](repeating: .nan, count: rows)
                                var scratch = [UInt8](repeating: 0, count: qlm_act_row_size(t, Int64(n)))
                                wq.withUnsafeBytes { wp in
                                    qlm_matvec(usePool ? pool : nil, t, wp.baseAddress, Int64(rows), Int64(n), x, &y, &scratch)
                                }
                                XCTAssertEqual(y.map(\.bitPattern), dots.map(\.bitPattern), "\(pathName(p)) \(typeName(t)) \(rows)x\(n) pool=\(usePool)")
                            }
                            if p == pScalar { scalarY = dots }
                            else {
                                let xd = decodeAct(t, act, n)
                                for r in 0..<rows {
                                    let wd = dequantize(t, Array(wq[r * rs..<(r + 1) * rs]), n)
                                    let mag = refDot(wd, xd).1
                                    XCTAssertEqual(Double(dots[r]), Double(scalarY[r]), accuracy: pathTolerance(t, mag))
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Threaded matvec/matmul hand rows out dynamically, and a worker that starts late skips the
    /// job; repeat many times (interleaved with static pool jobs) and require the single-thread
    /// result bit for bit every time.
    func testThreadedProductsRepeated() {
        var rng = SplitMix64(seed: 13)
        let pool = qlm_pool_create(2)!
        defer { qlm_pool_destroy(pool) }
        let rows = 600, n = 512
        let (wq, _) = makeWeights(tQ8_0, rows: rows, n: n, rng: &rng)
        let x = rng.normals(n)
        var scratch = [UInt8](repeating: 0, count: 4 * qlm_act_row_size(tQ8_0, Int64(n)))
        var ref = [Float](repeating: 0, count: rows)
        wq.withUnsafeBytes { qlm_matvec(nil, tQ8_0, $0.baseAddress, Int64(rows), Int64(n), x, &ref, &scratch) }
        let X = x + x + x + x
        var refMM = [Float](repeating: 0, count: 4 * rows)
        wq.withUnsafeBytes { qlm_matmul(nil, tQ8_0, $0.baseAddress, Int64(rows), Int64(n), X, 4, &refMM, Int64(rows), &scratch) }
        let counter = UnsafeMutablePointer<Int64>.allocate(capacity: 16)
        counter.initialize(repeating: 0, count: 16)
        defer { counter.deallocate() }
        for i in 0..<3000 {
            var y = [Float](repeating: .nan, count: rows)
            wq.withUnsafeBytes { qlm_matvec(pool, tQ8_0, $0.baseAddress, Int64(rows), Int64(n), x, &y, &scratch) }
            if y != ref { XCTFail("matvec differs at iteration \(i)"); break }
            if i % 10 == 0 {
                var Y = [Float](repeating: .nan, count: 4 * rows)
                wq.withUnsafeBytes { qlm_matmul(pool, tQ8_0, $0.baseAddress, Int64(rows), Int64(n), X, 4, &Y, Int64(rows), &scratch) }
                if Y != refMM { XCTFail("matmul differs at iteration \(i)"); break }
            }
            if i % 3 == 0 {
                qlm_pool_run(pool, { ctx, ith, _ in ctx!.assumingMemoryBound(to: Int64.self)[Int(ith) * 8] += 1 }, counter)
            }
        }
        XCTAssertEqual(counter[0], 1000); XCTAssertEqual(counter[8], 1000) // static jobs run on every thread
        // long prefill (T * n >= 64K: activations are prepared on the pool too)
        let T = 130
        let XL = rng.normals(T * n)
        var big = [UInt8](repeating: 0, count: T * qlm_act_row_size(tQ8_0, Int64(n)))
        var refL = [Float](repeating: 0, count: T * rows)
        wq.withUnsafeBytes { qlm_matmul(nil, tQ8_0, $0.baseAddress, Int64(rows), Int64(n), XL, Int64(T), &refL, Int64(rows), &big) }
        for _ in 0..<20 {
            var Y = [Float](repeating: .nan, count: T * rows)
            wq.withUnsafeBytes { qlm_matmul(pool, tQ8_0, $0.baseAddress, Int64(rows), Int64(n), XL, Int64(T), &Y, Int64(rows), &big) }
            XCTAssertEqual(Y, refL)
        }
    }

    /// matmul must equal vec_dot per (row, token) bit for bit on each path; Y has stride ldy > rows
    /// and the padding columns stay untouched.
    func testMatmul() {
        var rng = SplitMix64(seed: 12)
        let pool = qlm_pool_create(2)!
        defer { qlm_pool_destroy(pool) }
        for (rows, n) in [(1, 32), (7, 172), (9, 320), (9, 416), (64, 768), (513, 64), (70, 1000)] { // 320: 3 q4_0 steps (odd), 416: 3 whole + 1 partial
            for T in [1, 2, 3, 4, 5, 8, 9, 17] { // 2...8: the few-token kernels; 4, 5, 9, 17: the tiles and their edges
                for t in allTypes {
                    let (wq, _) = makeWeights(t, rows: rows, n: n, rng: &rng)
                    let X = rng.normals(T * n)
                    let rs = qlm_row_size(t, Int64(n))
                    let ldy = rows + 3
                    var scalarY = [Float]()
                    for p in supportedPaths {
                        withPath(p) {
                            var expect = [Float](repeating: 0, count: T * rows)
                            for tok in 0..<T {
                                let act = prepareAct(t, Array(X[tok * n..<(tok + 1) * n]))
                                for r in 0..<rows { expect[tok * rows + r] = vecDot(t, n, wq, act, rowOffset: r * rs) }
                            }
                            for usePool in [false, true] {
                                var Y = [Float](repeating: -7, count: T * ldy)
                                var scratch = [UInt8](repeating: 0, count: T * qlm_act_row_size(t, Int64(n)))
                                wq.withUnsafeBytes { wp in
                                    qlm_matmul(usePool ? pool : nil, t, wp.baseAddress, Int64(rows), Int64(n), X, Int64(T), &Y, Int64(ldy), &scratch)
                                }
                                for tok in 0..<T {
                                    XCTAssertEqual(Y[tok * ldy..<tok * ldy + rows].map(\.bitPattern),
                                                   expect[tok * rows..<(tok + 1) * rows].map(\.bitPattern),
                                                   "\(pathName(p)) \(typeName(t)) \(rows)x\(n) T=\(T) pool=\(usePool)")
                                    XCTAssertEqual(Array(Y[tok * ldy + rows..<(tok + 1) * ldy]), [-7, -7, -7])
                                }
                            }
                            if p == pScalar { scalarY = expect } else {
                                for i in 0..<expect.count {
                                    XCTAssertEqual(expect[i], scalarY[i], accuracy: 2e-4 * (abs(scalarY[i]) + 1))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
