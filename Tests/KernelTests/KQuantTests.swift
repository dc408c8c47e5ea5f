import CKernels
import CKernels.Testing
import XCTest
import TestSupport

let tQ4K = Int32(QLM_TYPE_Q4_K.rawValue)
let tQ5K = Int32(QLM_TYPE_Q5_K.rawValue)
let tQ6K = Int32(QLM_TYPE_Q6_K.rawValue)
let kTypes: [Int32] = [tQ4K, tQ5K, tQ6K]

/// The K-quant rows (q4_k, q5_k, q6_k) and their q8k activation.
///
/// Products: every path and kernel shape forms the same exact int32 sums per 32-weight group
/// (one activation scale per 32) and does the same float steps, lane g for group g, in
/// super-block order (ksuper.h), so scalar, AVX2 and AVX-512 dot kernels, the few-token kernels
/// and the prefill tiles must agree bit for bit (==). Against a double-precision dot of the
/// dequantized weights and the decoded activation, the float accumulation's rounding is bounded
/// by 1e-5 * sum |terms| (a few float ulps per step).
final class KQuantTests: XCTestCase {
    static let q8kBytes = 320 // float d[8], int8 qs[256], int16 bsums[16]

    /// The q8k values an activation row stands for: per 256 eight float scales (one per 32) and
    /// int8 codes (320-byte blocks).
    func decodeQ8K(_ a: [UInt8], _ n: Int) -> [Float] {
        a.withUnsafeBytes { p in
            (0 ..< n).map { i in
                let base = (i / 256) * Self.q8kBytes, e = i % 256
                return p.load(fromByteOffset: base + 4 * (e / 32), as: Float.self) * Float(Int8(bitPattern: p[base + 32 + e]))
            }
        }
    }

    func testTraits() {
        for (t, bb, name) in [(tQ4K, 144, "q4_k"), (tQ5K, 176, "q5_k"), (tQ6K, 210, "q6_k")] {
            let tr = qlm_traits(t)!.pointee
            XCTAssertEqual(typeName(t), name)
            XCTAssertEqual(tr.block_size, 256)
            XCTAssertEqual(Int(tr.block_bytes), bb)
            XCTAssertEqual(tr.whole_blocks, 1)
            XCTAssertEqual(tr.act_type, QLM_ACT_Q8K)
            XCTAssertEqual(qlm_row_size(t, 1536), 6 * bb)
            XCTAssertEqual(qlm_act_row_size(t, 1536), 6 * Self.q8kBytes)
        }
    }

    /// q8k: the same bytes on every path; bsums are the exact 16-sums of the codes; |codes| <= 127;
    /// every value is within half a step of its own 32-group's scale (absmax / 127 of those 32), so
    /// an outlier costs only its own group precision (one scale per 256 would fail this).
    func testActivationBitIdenticalAndSums() {
        var rng = SplitMix64(seed: 28)
        for n in [256, 768, 2304, 300] { // 300: a zero-padded last block
            var x = rng.normals(n, scale: 2)
            x[n / 2] = 40 // an outlier group
            let ref = withPath(pScalar) { prepareAct(tQ4K, x) }
            XCTAssertEqual(ref.count, (n + 255) / 256 * Self.q8kBytes)
            for p in supportedPaths { XCTAssertEqual(withPath(p) { prepareAct(tQ4K, x) }, ref, "\(pathName(p)) n=\(n)") }
            ref.withUnsafeBytes { a in
                for b in 0 ..< (n + 255) / 256 {
                    let base = b * Self.q8kBytes
                    for k in 0 ..< 16 {
                        var s = 0
                        for j in 0 ..< 16 {
                            let q = Int(Int8(bitPattern: a[base + 32 + 16 * k + j]))
                            XCTAssertGreaterThanOrEqual(q, -127)
                            s += q
                        }
                        XCTAssertEqual(Int(a.load(fromByteOffset: base + 288 + 2 * k, as: Int16.self)), s)
                    }
                }
            }
            let dec = decodeQ8K(ref, n)
            for g in stride(from: 0, to: n, by: 32) {
                let end = min(g + 32, n), amax = x[g ..< end].map(abs).max()!
                for i in g ..< end { XCTAssertEqual(dec[i], x[i], accuracy: amax / 127 / 2 * 1.0001 + 1e-30, "n=\(n) i=\(i)") }
            }
        }
    }

    /// Round trip: the quantizer's error per type (relative rms on gaussian rows with outliers)
    /// is below q4_0's for every K type and shrinks with the bits (q4_k > q5_k > q6_k); the
    /// quantizer is one scalar function, so every path writes the same bytes.
    func testRoundTripErrorOrdering() {
        var rng = SplitMix64(seed: 5)
        let n = 2048
        var err: [Int32: Double] = [:]
        for t in kTypes + [tQ4_0, tQ8_0] {
            var se = 0.0, ss = 0.0
            for r in 0 ..< 8 {
                var w = rng.normals(n, scale: 0.02)
                if r % 2 == 0 { for i in stride(from: 7, to: n, by: 97) { w[i] *= 6 } }
                let q = withPath(pScalar) { quantize(t, w) }
                for p in supportedPaths { XCTAssertEqual(withPath(p) { quantize(t, w) }, q) }
                let y = dequantize(t, q, n)
                for i in 0 ..< n { se += Double(y[i] - w[i]) * Double(y[i] - w[i]); ss += Double(w[i]) * Double(w[i]) }
            }
            err[t] = (se / ss).squareRoot()
        }
        print("relative rms error:", err.sorted { $0.key < $1.key }.map { "\(typeName($0.key)) \(String(format: "%.4f", $0.value))" })
        XCTAssertLessThan(err[tQ4K]!, err[tQ4_0]! * 0.85)
        XCTAssertLessThan(err[tQ5K]!, err[tQ4K]! * 0.6)
        XCTAssertLessThan(err[tQ6K]!, err[tQ5K]! * 0.7)
        // zero rows stay zero
        for t in kTypes { XCTAssertTrue(dequantize(t, quantize(t, [Float](repeating: 0, count: 512)), 512).allSatisfy { $0 == 0 }) }
    }

    func testDotEveryPathBitIdentical() {
        var rng = SplitMix64(seed: 6)
        for n in [256, 512, 1536, 2304, 640] { // 640: a padded last super-block (C handles it; files never hold one)
            for t in kTypes {
                let w = rng.normals(n, scale: 0.05), x = rng.normals(n, scale: 3)
                let wq = quantize(t, w)
                let act = withPath(pScalar) { prepareAct(t, x) }
                let (ref, mag) = refDot(dequantize(t, wq, n), decodeQ8K(act, n))
                let s = withPath(pScalar) { vecDot(t, n, wq, act) }
                XCTAssertEqual(Double(s), ref, accuracy: 1e-5 * mag, "\(typeName(t)) n=\(n)")
                for p in supportedPaths { XCTAssertEqual(withPath(p) { vecDot(t, n, wq, act) }, s, "\(pathName(p)) \(typeName(t)) n=\(n)") }
            }
        }
    }

    /// Codes at their extremes (every weight at +-max, activations +-127): the pair sums of the
    /// SIMD paths' u8 x s8 products must not saturate, so all paths still equal the reference.
    func testExtremeCodes() {
        let n = 512
        let w = (0 ..< n).map { Float($0 % 3 == 0 ? -1 : 1) * ($0 % 5 == 0 ? 2 : 1) }
        let x = (0 ..< n).map { Float($0 % 2 == 0 ? -1 : 1) }
        for t in kTypes {
            let wq = quantize(t, w), act = withPath(pScalar) { prepareAct(t, x) }
            let (ref, mag) = refDot(dequantize(t, wq, n), decodeQ8K(act, n))
            for p in supportedPaths {
                XCTAssertEqual(Double(withPath(p) { vecDot(t, n, wq, act) }), ref, accuracy: 1e-5 * mag, "\(pathName(p)) \(typeName(t))")
            }
        }
    }

    /// The largest sums the SIMD paths hold in int16 words (ksuper.h: kq_groups32 adds 8 products
    /// of codes <= 31, kq_groups16 4 of codes <= 63): nearly every weight at its largest code and every
    /// activation code +-127. Every path equals the scalar one and the reference.
    func testLargestWordSums() {
        let n = 1024
        let w = (0 ..< n).map { Float($0 % 16 == 0 ? -1 : 1) }
        for sign: Float in [1, -1] {
            let x = [Float](repeating: sign, count: n)
            for t in kTypes {
                let wq = quantize(t, w), act = withPath(pScalar) { prepareAct(t, x) }
                let (ref, mag) = refDot(dequantize(t, wq, n), decodeQ8K(act, n))
                let s = withPath(pScalar) { vecDot(t, n, wq, act) }
                XCTAssertEqual(Double(s), ref, accuracy: 1e-5 * mag, "\(typeName(t)) sign \(sign)")
                for p in supportedPaths { XCTAssertEqual(withPath(p) { vecDot(t, n, wq, act) }, s, "\(pathName(p)) \(typeName(t)) sign \(sign)") }
            }
        }
    }

    /// matvec, and matmul at every token count the few-token kernels (T <= 8), the generic loop
    /// and the 1 x 16 tiles (T >= 16, with a remainder) run: each output equals qlm_vec_dot of
    /// its row and token on the same path, with and without the pool.
    func testProductsEqualDotBitForBit() {
        var rng = SplitMix64(seed: 7)
        let pool = qlm_pool_create(2)!
        defer { qlm_pool_destroy(pool) }
        let n = 768, rows = 67
        for t in kTypes {
            var wq = [UInt8]()
            for r in 0 ..< rows { wq += quantize(t, rng.normals(n, scale: r % 7 == 0 ? 0.001 : 0.05)) }
            let rs = qlm_row_size(t, Int64(n))
            for T in [1, 2, 3, 5, 8, 9, 16, 17, 35] {
                let X = rng.normals(T * n)
                for p in supportedPaths {
                    withPath(p) {
                        let acts = (0 ..< T).map { prepareAct(t, Array(X[$0 * n ..< ($0 + 1) * n])) }
                        var want = [Float](repeating: 0, count: T * rows)
                        for tt in 0 ..< T { for r in 0 ..< rows { want[tt * rows + r] = vecDot(t, n, wq, acts[tt], rowOffset: r * rs) } }
                        for pl in [nil, pool] as [OpaquePointer?] {
                            var Y = [Float](repeating: .nan, count: T * rows)
                            var scratch = [UInt8](repeating: 0, count: T * qlm_act_row_size(t, Int64(n)))
                            wq.withUnsafeBytes { w in X.withUnsafeBufferPointer { xp in Y.withUnsafeMutableBufferPointer { yp in scratch.withUnsafeMutableBytes { s in
                                if T == 1 { qlm_matvec(pl, t, w.baseAddress, Int64(rows), Int64(n), xp.baseAddress, yp.baseAddress, s.baseAddress) }
                                else { qlm_matmul(pl, t, w.baseAddress, Int64(rows), Int64(n), xp.baseAddress, Int64(T), yp.baseAddress, Int64(rows), s.baseAddress) }
                            } } } }
                            XCTAssertEqual(Y, want, "\(typeName(t)) T=\(T) \(pathName(p)) pool=\(pl != nil)")
                        }
                    }
                }
            }
        }
    }
}
