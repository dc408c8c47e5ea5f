import CKernels
import CKernels.Testing
import XCTest
import TestSupport

/// The attention kernels (scores and weighted sums over runs of cached rows) on every CPU path
/// against plain double-precision loops, for every KV type.
final class AttentionKernelTests: XCTestCase {
    func testScoresAndAccumulateMatchReference() {
        var seed: UInt64 = 99
        func rnd() -> Float { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: seed >> 11) % 2001 - 1000) / 500 }
        let saved = qlm_get_path()
        defer { qlm_set_path(saved) }
        for path in Int32(0) ... 2 where qlm_path_supported(path) != 0 {
            qlm_set_path(path)
            for hd in [8, 16, 24, 64, 128] {
                for n in [1, 3, 4, 5, 17, 300] {
                    let nHead = 2, stride = nHead * hd // rows hold two heads; the kernels read head 0
                    let q = (0 ..< hd).map { _ in rnd() }
                    let keys = (0 ..< n * stride).map { _ in rnd() }
                    let w = (0 ..< n).map { _ in abs(rnd()) / Float(n) }
                    for kvType in [QLM_KV_F32, QLM_KV_F16, QLM_KV_Q8_0] {
                        let headBytes = Int(qlm_kv_head_bytes(kvType, Int64(hd)))
                        var stored = [UInt8](repeating: 0, count: n * nHead * headBytes)
                        // What the cache holds, and its exact float value (the reference uses it).
                        var decoded = [Float](repeating: 0, count: n * hd)
                        stored.withUnsafeMutableBytes { dst in
                            for i in 0 ..< n {
                                qlm_kv_store_row(kvType, Array(keys[i * stride ..< (i + 1) * stride]), dst.baseAddress! + i * nHead * headBytes, Int64(nHead), Int64(hd))
                                decoded.withUnsafeMutableBufferPointer { d in
                                    qlm_kv_load_head(kvType, dst.baseAddress! + i * nHead * headBytes, Int64(hd), d.baseAddress! + i * hd)
                                }
                            }
                        }
                        var scores = [Float](repeating: 0, count: n)
                        var out = [Float](repeating: 0.5, count: hd)
                        stored.withUnsafeBytes { src in
                            qlm_attn_scores(kvType, q, src.baseAddress!, Int64(nHead * headBytes), Int64(n), Int64(hd), 0.125, &scores)
                            qlm_attn_accum(kvType, w, src.baseAddress!, Int64(nHead * headBytes), Int64(n), Int64(hd), &out)
                        }
                        for i in 0 ..< n {
                            var ref = 0.0, mag = 0.0
                            for j in 0 ..< hd { ref += Double(q[j]) * Double(decoded[i * hd + j]); mag += abs(Double(q[j]) * Double(decoded[i * hd + j])) }
                            // Float accumulation in a different order than the double reference:
                            // 1e-5 of the sum of |terms| covers it on every path.
                            XCTAssertEqual(Double(scores[i]), ref * 0.125, accuracy: 1e-5 * mag * 0.125 + 1e-7,
                                           "path \(path) hd \(hd) n \(n) kv \(kvType) key \(i)")
                        }
                        for j in 0 ..< hd {
                            var ref = 0.5, mag = 0.5
                            for i in 0 ..< n { ref += Double(w[i]) * Double(decoded[i * hd + j]); mag += abs(Double(w[i]) * Double(decoded[i * hd + j])) }
                            XCTAssertEqual(Double(out[j]), ref, accuracy: 1e-5 * mag + 1e-7, "path \(path) hd \(hd) n \(n) kv \(kvType) out \(j)")
                        }
                    }
                }
            }
        }
    }

    /// Several query heads over the same rows (grouped-query attention): every score and every
    /// output element equals the one-head call's bit for bit, on every path, for group sizes
    /// past the kernel's 4 heads, head sizes with and without a grouped kernel (48: none for
    /// the accumulation) and run lengths around the 4-key groups.
    func testGroupedHeadsEqualOneHeadAtATime() {
        var seed: UInt64 = 7
        func rnd() -> Float { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: seed >> 11) % 2001 - 1000) / 500 }
        let saved = qlm_get_path()
        defer { qlm_set_path(saved) }
        for path in Int32(0) ... 2 where qlm_path_supported(path) != 0 {
            qlm_set_path(path)
            for hd in [48, 64, 256] {
                for n in [1, 3, 4, 7, 13, 64] {
                    for nq in [1, 3, 4, 6] {
                        let nKV = 2, stride = nKV * hd
                        let q = (0 ..< nq * hd).map { _ in rnd() }
                        let rows = (0 ..< n * stride).map { _ in rnd() }
                        let ws = n + 3 // weight rows with a gap
                        let w = (0 ..< nq * ws).map { _ in abs(rnd()) / Float(n) }
                        for kvType in Self.kvTypes {
                            let headBytes = Int(qlm_kv_head_bytes(kvType, Int64(hd)))
                            var stored = [UInt8](repeating: 0, count: n * nKV * headBytes)
                            stored.withUnsafeMutableBytes { dst in
                                for i in 0 ..< n {
                                    qlm_kv_store_row(kvType, Array(rows[i * stride ..< (i + 1) * stride]), dst.baseAddress! + i * nKV * headBytes, Int64(nKV), Int64(hd))
                                }
                            }
                            let rb = Int64(nKV * headBytes)
                            var got = [Float](repeating: .nan, count: nq * ws), want = got
                            var out = (0 ..< nq * hd).map { Float($0 % 5) * 0.25 }, wantOut = out
                            stored.withUnsafeBytes { src in
                                let k = src.baseAddress! + headBytes // the second KV head of each row
                                got.withUnsafeMutableBufferPointer { g in
                                    qlm_attn_scores_heads(kvType, q, Int64(nq), k, rb, Int64(n), Int64(hd), 0.125, g.baseAddress!, Int64(ws))
                                }
                                out.withUnsafeMutableBufferPointer { o in
                                    qlm_attn_accum_heads(kvType, w, Int64(ws), Int64(nq), k, rb, Int64(n), Int64(hd), o.baseAddress!)
                                }
                                for h in 0 ..< nq {
                                    q.withUnsafeBufferPointer { qp in
                                        want.withUnsafeMutableBufferPointer { wp in
                                            qlm_attn_scores(kvType, qp.baseAddress! + h * hd, k, rb, Int64(n), Int64(hd), 0.125, wp.baseAddress! + h * ws)
                                        }
                                    }
                                    w.withUnsafeBufferPointer { wp in
                                        wantOut.withUnsafeMutableBufferPointer { o in
                                            qlm_attn_accum(kvType, wp.baseAddress! + h * ws, k, rb, Int64(n), Int64(hd), o.baseAddress! + h * hd)
                                        }
                                    }
                                }
                            }
                            for h in 0 ..< nq {
                                XCTAssertEqual(got[h * ws ..< h * ws + n].map(\.bitPattern), want[h * ws ..< h * ws + n].map(\.bitPattern),
                                               "path \(path) hd \(hd) n \(n) heads \(nq) kv \(kvType) head \(h) scores")
                            }
                            XCTAssertEqual(out.map(\.bitPattern), wantOut.map(\.bitPattern), "path \(path) hd \(hd) n \(n) heads \(nq) kv \(kvType) out")
                        }
                    }
                }
            }
        }
    }

    // MARK: AVX-512 kernels against the scalar path, run splitting, f32 order

    static let kvTypes: [Int32] = [QLM_KV_F32, QLM_KV_F16, QLM_KV_Q8_0]
    static let headDims = [8, 16, 24, 32, 64, 128, 144, 256]
    static let counts = [1, 3, 4, 5, 7, 8, 9, 12, 17, 100]

    /// n positions of nHead head vectors each, stored in kvType layout (rows of nHead heads;
    /// the kernels read head 1, so head vectors start off any alignment for q8_0), plus the
    /// exact float value of head 1 of every position.
    struct Rows {
        let bytes: [UInt8], decoded: [Float], rowBytes: Int, offset: Int
        init(_ kvType: Int32, n: Int, hd: Int, rng: inout SplitMix64) {
            let nHead = 3, headBytes = Int(qlm_kv_head_bytes(kvType, Int64(hd))), rowBytes = nHead * headBytes
            self.rowBytes = rowBytes; offset = headBytes
            var b = [UInt8](repeating: 0, count: n * rowBytes), d = [Float](repeating: 0, count: n * hd)
            b.withUnsafeMutableBytes { dst in
                for i in 0 ..< n {
                    qlm_kv_store_row(kvType, rng.normals(nHead * hd), dst.baseAddress! + i * rowBytes, Int64(nHead), Int64(hd))
                    d.withUnsafeMutableBufferPointer { qlm_kv_load_head(kvType, dst.baseAddress! + i * rowBytes + headBytes, Int64(hd), $0.baseAddress! + i * hd) }
                }
            }
            bytes = b; decoded = d
        }
        /// Scores of positions lo..<hi in one call.
        func scores(_ t: Int32, _ q: [Float], _ lo: Int, _ hi: Int, hd: Int, into s: inout [Float]) {
            bytes.withUnsafeBytes { src in
                s.withUnsafeMutableBufferPointer {
                    qlm_attn_scores(t, q, src.baseAddress! + lo * rowBytes + offset, Int64(rowBytes), Int64(hi - lo), Int64(hd), 0.125, $0.baseAddress! + lo)
                }
            }
        }
        /// out += weighted sum of positions lo..<hi in one call.
        func accum(_ t: Int32, _ w: [Float], _ lo: Int, _ hi: Int, hd: Int, into out: inout [Float]) {
            bytes.withUnsafeBytes { src in
                w.withUnsafeBufferPointer {
                    qlm_attn_accum(t, $0.baseAddress! + lo, src.baseAddress! + lo * rowBytes + offset, Int64(rowBytes), Int64(hi - lo), Int64(hd), &out)
                }
            }
        }
    }

    /// The SIMD kernels (AVX2 and AVX-512, one template for both widths) against the scalar
    /// path on the same stored rows. Both sum the same exactly decoded products in float, in
    /// different orders (SIMD lanes and a tree vs left to right) and with or without fused
    /// multiply-add, so each is within γ_m·Σ|terms| of the exact sum (γ_m ≈ m·2⁻²⁴ for m
    /// roundings in a term's path: hd + 3 for a score with q8_0's d and the scale, n + 2 for an
    /// output with q8_0's w·d); the tolerance is twice that bound.
    func testSIMDKernelsMatchScalarWithinRoundingBound() throws {
        let simd = supportedPaths.filter { $0 != pScalar }
        try XCTSkipIf(simd.isEmpty, "no SIMD path on this CPU")
        for p in simd { try simdMatchesScalar(p) }
    }

    func simdMatchesScalar(_ path: Int32) throws {
        var rng = SplitMix64(seed: 7)
        let u = 1.0 / Double(1 << 24)
        for t in Self.kvTypes {
            for hd in Self.headDims {
                for n in Self.counts {
                    let rows = Rows(t, n: n, hd: hd, rng: &rng)
                    let q = rng.normals(hd), w = (0 ..< n).map { _ in abs(rng.uniform()) }, out0 = rng.normals(hd)
                    var s = [[Float]](), o = [[Float]]()
                    for p in [pScalar, path] {
                        withPath(p) {
                            var sc = [Float](repeating: 0, count: n), out = out0
                            rows.scores(t, q, 0, n, hd: hd, into: &sc)
                            rows.accum(t, w, 0, n, hd: hd, into: &out)
                            s.append(sc); o.append(out)
                        }
                    }
                    for i in 0 ..< n {
                        var mag = 0.0
                        for j in 0 ..< hd { mag += abs(Double(q[j]) * Double(rows.decoded[i * hd + j])) }
                        let tol = 2 * Double(hd + 3) * u * mag * 0.125 + 1e-30
                        XCTAssertEqual(Double(s[1][i]), Double(s[0][i]), accuracy: tol, "path \(path) kv \(t) hd \(hd) n \(n) key \(i)")
                    }
                    for j in 0 ..< hd {
                        var mag = abs(Double(out0[j]))
                        for i in 0 ..< n { mag += abs(Double(w[i]) * Double(rows.decoded[i * hd + j])) }
                        let tol = 2 * Double(n + 2) * u * mag + 1e-30
                        XCTAssertEqual(Double(o[1][j]), Double(o[0][j]), accuracy: tol, "path \(path) kv \(t) hd \(hd) n \(n) out \(j)")
                    }
                }
            }
        }
    }

    /// A key's score and the accumulated output do not depend on how the positions are cut
    /// into runs (a ring cache presents up to two; the reference caches one per position):
    /// exact, for every KV type on every path, with cuts that hit the 8-, 4- and 1-key groups.
    func testRunSplittingIsExact() {
        var rng = SplitMix64(seed: 11)
        let n = 45
        let cuts: [[Int]] = [[n], [1, n - 1], [20, 25], [7, 7, 7, 24], [3, 9, 1, 16, 5, 11], Array(repeating: 1, count: n)]
        for p in supportedPaths {
            withPath(p) {
                for t in Self.kvTypes {
                    for hd in Self.headDims {
                        let rows = Rows(t, n: n, hd: hd, rng: &rng)
                        let q = rng.normals(hd), w = (0 ..< n).map { _ in abs(rng.uniform()) }, out0 = rng.normals(hd)
                        var refS = [Float](), refO = [Float]()
                        for cut in cuts {
                            XCTAssertEqual(cut.reduce(0, +), n)
                            var s = [Float](repeating: 0, count: n), out = out0, lo = 0
                            for m in cut {
                                rows.scores(t, q, lo, lo + m, hd: hd, into: &s)
                                rows.accum(t, w, lo, lo + m, hd: hd, into: &out)
                                lo += m
                            }
                            if refS.isEmpty { refS = s; refO = out; continue }
                            XCTAssertEqual(s.map(\.bitPattern), refS.map(\.bitPattern), "path \(p) kv \(t) hd \(hd) cut \(cut) scores")
                            XCTAssertEqual(out.map(\.bitPattern), refO.map(\.bitPattern), "path \(p) kv \(t) hd \(hd) cut \(cut) out")
                        }
                    }
                }
            }
        }
    }

    /// The SIMD f32 kernels' exact arithmetic, written out: an output element is one FMA chain
    /// over the positions in order starting from out[j]; a score is, per lane l of W (16 on
    /// AVX-512, 8 on AVX2), an FMA chain over the W-float chunks, then (AVX-512) lanes l and l+8
    /// added, then ((0+1)+(2+3)) + ((4+5)+(6+7)), times the scale (AVX-512 at head_dim 8:
    /// products, then lanes l and l+4, then (0+2)+(1+3)). Bit for bit, so the positions-outer
    /// accumulate and the 8-key scores give exactly what the previous kernels gave, and the
    /// AVX2 path is the same arithmetic at half the width.
    func testSIMDF32MatchesItsExactOrder() throws {
        let simd = supportedPaths.filter { $0 != pScalar }
        try XCTSkipIf(simd.isEmpty, "no SIMD path on this CPU")
        var rng = SplitMix64(seed: 5)
        for path in simd {
            let W = path == pAVX512 ? 16 : 8
            withPath(path) {
                for hd in Self.headDims where hd % W == 0 || (W == 16 && hd == 8) {
                    for n in Self.counts {
                        let rows = Rows(QLM_KV_F32, n: n, hd: hd, rng: &rng)
                        let q = rng.normals(hd), w = rng.normals(n), out0 = rng.normals(hd)
                        var s = [Float](repeating: 0, count: n), out = out0
                        rows.scores(QLM_KV_F32, q, 0, n, hd: hd, into: &s)
                        rows.accum(QLM_KV_F32, w, 0, n, hd: hd, into: &out)
                        var refO = out0
                        for i in 0 ..< n { for j in 0 ..< hd { refO[j].addProduct(w[i], rows.decoded[i * hd + j]) } }
                        XCTAssertEqual(out.map(\.bitPattern), refO.map(\.bitPattern), "path \(path) hd \(hd) n \(n) out")
                        for i in 0 ..< n {
                            let k = rows.decoded[i * hd ..< (i + 1) * hd].map { $0 }
                            let ref: Float
                            if hd < W {
                                let p = (0 ..< 8).map { q[$0] * k[$0] }
                                let f = (0 ..< 4).map { p[$0] + p[$0 + 4] }
                                ref = ((f[0] + f[2]) + (f[1] + f[3])) * 0.125
                            } else {
                                var lane = [Float](repeating: 0, count: W)
                                for c in stride(from: 0, to: hd, by: W) { for l in 0 ..< W { lane[l].addProduct(q[c + l], k[c + l]) } }
                                let f = W == 16 ? (0 ..< 8).map { lane[$0] + lane[$0 + 8] } : lane
                                ref = (((f[0] + f[1]) + (f[2] + f[3])) + ((f[4] + f[5]) + (f[6] + f[7]))) * 0.125
                            }
                            XCTAssertEqual(s[i].bitPattern, ref.bitPattern, "path \(path) hd \(hd) n \(n) key \(i): \(s[i]) vs \(ref)")
                        }
                    }
                }
            }
        }
    }
}
