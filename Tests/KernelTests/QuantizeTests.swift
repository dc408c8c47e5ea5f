import CKernels
import CKernels.Testing
import XCTest
import TestSupport

final class QuantizeTests: XCTestCase {
    let shapes = [32, 64, 172, 768, 1000, 4096]

    func testTraitsAndRowSizes() {
        XCTAssertEqual(typeName(tQ8_0), "q8_0")
        XCTAssertEqual(qlm_row_size(tQ8_0, 64), 68)
        XCTAssertEqual(qlm_row_size(tQ4_0, 172), 6 * 18)
        XCTAssertEqual(qlm_row_size(tQ4_1, 33), 2 * 20)
        XCTAssertEqual(qlm_row_size(tF16, 172), 344)
        XCTAssertEqual(qlm_row_size(tF32, 172), 688)
        XCTAssertEqual(qlm_act_row_size(tQ4_0, 172), 256 + 2 * 256) // 6 q8a blocks (240 bytes, to 64), 2 quads
        XCTAssertEqual(qlm_act_row_size(tQ8_0, 172), 6 * 40)
        XCTAssertEqual(qlm_act_row_size(tF16, 172), 688)
        XCTAssertNotNil(qlm_traits(8)) // q8_0x8
        XCTAssertNil(qlm_traits(30))
        // IQ4_K*: 16-weight chunks in super-blocks of <= 256 (1 + ceil(c/2) + 8c bytes each)
        for t in [tIQ4K16, tIQ4K32] {
            XCTAssertEqual(qlm_row_size(t, 64), 1 + 2 + 32)
            XCTAssertEqual(qlm_row_size(t, 172), 1 + 6 + 88)   // 11 chunks (176 weights)
            XCTAssertEqual(qlm_row_size(t, 256), 137)
            XCTAssertEqual(qlm_row_size(t, 768), 3 * 137)
            XCTAssertEqual(qlm_row_size(t, 1600), 6 * 137 + 1 + 2 + 32)
            XCTAssertEqual(qlm_act_row_size(t, 172), 6 * 40)
        }
        XCTAssertEqual(qlm_e8_to_f32(0), 0)
        XCTAssertEqual(qlm_e8_to_f32(208), 1)
        XCTAssertEqual(qlm_e8_to_f32(216), 2)
        XCTAssertEqual(qlm_e8_to_f32(200), 0.5)
        XCTAssertEqual(String(cString: qlm_traits(31)!.pointee.name), "u8")
        XCTAssertTrue(supportedPaths.contains(qlm_get_path()))
        XCTAssertEqual(qlm_get_path(), qlm_best_path())
        print("paths supported:", supportedPaths.map(pathName), "best:", pathName(qlm_best_path()))
        // forcing a path works for supported ones and is ignored otherwise
        for p in supportedPaths { qlm_set_path(p); XCTAssertEqual(qlm_get_path(), p) }
        qlm_set_path(pScalar)
        qlm_set_path(99)
        XCTAssertEqual(qlm_get_path(), pScalar)
        qlm_set_path(qlm_best_path())
        XCTAssertEqual(pathName(pAVX512), "avx512")
        XCTAssertEqual(qlm_path_supported(pScalar), 1)
    }

    /// Vectorized quantizers use the same formulas and rounding as the scalar ones, so every
    /// byte must match (weights and q8a activations), for all shapes including partial blocks.
    func testQuantizeBitIdenticalAcrossPaths() {
        var rng = SplitMix64(seed: 1)
        for n in shapes {
            for scale: Float in [1e-3, 1, 300] {
                var x = rng.normals(n, scale: scale)
                x[n / 3] *= 9 // an outlier
                if n >= 64 { for j in 32..<64 { x[j] = 0 } } // an all-zero block
                for t in allTypes {
                    let ref = withPath(pScalar) { quantize(t, x) }
                    let aref = withPath(pScalar) { prepareAct(t, x) }
                    for p in supportedPaths where p != pScalar {
                        XCTAssertEqual(withPath(p) { quantize(t, x) }, ref, "\(typeName(t)) n=\(n) \(pathName(p))")
                        XCTAssertEqual(withPath(p) { prepareAct(t, x) }, aref, "act \(typeName(t)) n=\(n) \(pathName(p))")
                        XCTAssertEqual(withPath(p) { dequantize(t, ref, n) }.map(\.bitPattern),
                                       withPath(pScalar) { dequantize(t, ref, n) }.map(\.bitPattern))
                    }
                }
            }
        }
        // Exact ties of roundf (x*id = k + 0.5) and the q4 truncation edges.
        var x = [Float](repeating: 0, count: 64)
        for j in 0..<64 { x[j] = Float(j - 32) * 0.5 }
        x[0] = 127 // d = 1, so codes are round(j/2 - 16): many .5 ties (half away from zero)
        for t in quantTypes {
            let ref = withPath(pScalar) { quantize(t, x) }
            for p in supportedPaths { XCTAssertEqual(withPath(p) { quantize(t, x) }, ref) }
        }
        // Blocks whose scale is a float denormal or near it (1/d overflows): still defined,
        // identical on every path, codes in range.
        var rngd = SplitMix64(seed: 9)
        for mag: Float in [0x1p-146, 0x1p-136, 0x1p-128, 0x1p-125, 0x1p-123] {
            let tiny = (0..<96).map { _ in rngd.uniform() * mag }
            for t in quantTypes {
                let ref = withPath(pScalar) { quantize(t, tiny) }
                let aref = withPath(pScalar) { prepareAct(t, tiny) }
                for p in supportedPaths {
                    XCTAssertEqual(withPath(p) { quantize(t, tiny) }, ref, "\(typeName(t)) \(mag) \(pathName(p))")
                    XCTAssertEqual(withPath(p) { prepareAct(t, tiny) }, aref, "act \(mag) \(pathName(p))")
                }
                for b in 0..<3 { for j in 0..<32 { XCTAssertNotEqual(Int8(bitPattern: aref[b * 40 + 8 + j]), -128) } }
                // the activation scale d = amax/127 is itself denormal (coarse) or 0 here, so only
                // an absolute bound: ~127 * 2^-149 plus 2% of the block's magnitude
                let back = decodeAct(t, aref, 96)
                for i in 0..<96 { XCTAssertEqual(back[i], tiny[i], accuracy: mag * 0.02 + 0x1p-142) }
            }
        }
        let q = withPath(pScalar) { quantize(tQ8_0, x) }
        XCTAssertEqual(Int8(bitPattern: q[2 + 1]), -16) // x = -15.5 -> -16
        XCTAssertEqual(Int8(bitPattern: q[2 + 3]), -15) // x = -14.5 -> -15
    }

    /// Round-trip error bounds: q8_0 |err| <= d/2 (+ fp16 rounding of d times |q| <= 127),
    /// q4_0 <= d/2 (codes clamp at 15 cost at most d/2 too: max maps to -8 exactly),
    /// q4_1 <= d/2 (+ fp16 rounding of d and m). f16: relative 2^-11.
    func testRoundTripBounds() {
        var rng = SplitMix64(seed: 2)
        for p in supportedPaths {
            for n in shapes {
                let x = rng.normals(n, scale: 2)
                for t in allTypes {
                    let y = withPath(p) { dequantize(t, quantize(t, x), n) }
                    for b in stride(from: 0, to: n, by: 32) {
                        let blk = x[b..<min(n, b + 32)]
                        let amax = blk.map { abs($0) }.max()!
                        let mn = min(0, blk.min()!), mx = max(0, blk.max()!) // padding zeros count for q4_1
                        let bound: Float
                        switch t {
                        case tF32: bound = 0
                        case tF16: bound = amax * 0x1p-11
                        case tQ8_0: bound = amax / 127 / 2 * 1.001 + amax * 0x1p-11
                        case tQ4_0:
                            // d = max/-8: the max maps to code 0 exactly, but the far end is
                            // clamped at code 15 (= 7d), so elements beyond 7.5|d| opposite to
                            // max may be off by up to |d|; all others by d/2.
                            bound = amax / 8 * 1.001 + amax * 0x1p-10
                        case tQ5_0: bound = amax / 16 * 1.001 + amax * 0x1p-10 // as q4_0: d = max/-16, code 31 = 15d
                        case tQ5_1: bound = (mx - mn) / 31 / 2 * 1.001 + (abs(mn) + abs(mx)) * 0x1p-10
                        case tQ3K, tQ2K:
                            // 2-3 bit codes with 6 / 4-bit group scales under one fp16 super-scale:
                            // a sanity bound, 3/4 of the super-block's amax (the step alone is up to
                            // a third of a group's range)
                            let s0 = b / 256 * 256
                            bound = x[s0..<min(n, s0 + 256)].map { abs($0) }.max()! * 0.75
                        case tIQ4K16, tIQ4K32, tIQ4NL, tIQ4XS:
                            // non-uniform codebook: largest gap between levels is 24 units of the
                            // sub-scale (<= amax/100 by the search), clipped ends and the sub-scale
                            // rounding add a little: bound 16% of the block's amax (empirically ~6%)
                            bound = amax * 0.16
                        default: bound = (mx - mn) / 15 / 2 * 1.001 + (abs(mn) + abs(mx)) * 0x1p-10
                        }
                        for i in blk.indices {
                            var bi = bound
                            if t == tQ4_0 || t == tQ5_0 {
                                let k: Float = t == tQ4_0 ? 8 : 16
                                let mxv = blk.first { abs($0) == amax }!
                                let clamped = (x[i] > 0) != (mxv > 0) && abs(x[i]) > amax * (k - 0.5) / k
                                if !clamped { bi = amax / k / 2 * 1.001 + amax * 0x1p-10 }
                            }
                            XCTAssertLessThanOrEqual(abs(y[i] - x[i]), bi, "\(typeName(t)) \(pathName(p)) n=\(n) i=\(i)")
                        }
                    }
                }
            }
        }
    }

    func testAdversarialRows() {
        for p in supportedPaths {
            withPath(p) {
                // all zeros -> exact zeros, d = 0; q4_0 codes are 8
                let z = [Float](repeating: 0, count: 172)
                for t in allTypes {
                    let q = quantize(t, z)
                    XCTAssertEqual(dequantize(t, q, 172), z, "\(typeName(t)) \(pathName(p))")
                }
                let q40 = quantize(tQ4_0, z)
                XCTAssertEqual(q40[0], 0); XCTAssertEqual(q40[1], 0); XCTAssertEqual(q40[2], 0x88)
                // one huge outlier: it is reproduced to fp16 precision, the rest flush near 0
                var o = [Float](repeating: 0.001, count: 64)
                o[5] = 60000
                for t in quantTypes {
                    let y = dequantize(t, quantize(t, o), 64)
                    // IQ4_K*: the outlier's scale is a 1-byte log super-scale (2^(1/8) steps) times
                    // an integer sub-scale, so it is reproduced to a few percent only
                    // IQ4_NL: the codebook has no 0, so the 63 small weights sit at +-1 or -10 scale
                    // units and the least-squares scale trades some of the outlier for them
                    let tol: Float = (t == tIQ4K16 || t == tIQ4K32 || t == tIQ4NL || t == tIQ4XS) ? 60000 * 0.05 : 60000 * 0x1p-10
                    XCTAssertEqual(y[5], 60000, accuracy: tol, "\(typeName(t))")
                }
                // denormals quantize fine (d underflows to 0 in fp16 -> zeros)
                var den = [Float]()
                for k in 0..<40 {
                    let v = Float(bitPattern: UInt32(k * 977 + 1))
                    den.append(k % 2 == 0 ? v : -v)
                }
                for t in allTypes {
                    let y = dequantize(t, quantize(t, den), 40)
                    for v in y { XCTAssertTrue(v.isFinite && abs(v) <= 1e-37, "\(typeName(t)) \(v)") }
                }
                // non-finite -> -1, also through quantize_rows (first bad row)
                for bad: Float in [.nan, .infinity, -.infinity] {
                    for t in allTypes {
                        var x = [Float](repeating: 1, count: 100)
                        x[77] = bad
                        var dst = [UInt8](repeating: 0, count: qlm_row_size(t, 100))
                        XCTAssertEqual(qlm_quantize_row(t, x, &dst, 100), -1)
                        var m = [Float](repeating: 0.5, count: 100 * 1000)
                        m[100 * 700 + 3] = bad
                        m[100 * 901] = bad
                        var dm = [UInt8](repeating: 0, count: qlm_row_size(t, 100) * 1000)
                        XCTAssertEqual(qlm_quantize_rows(t, m, &dm, 1000, 100, 2), 700)
                        m[100 * 700 + 3] = 0; m[100 * 901] = 0
                        XCTAssertEqual(qlm_quantize_rows(t, m, &dm, 1000, 100, 2), -1)
                    }
                }
            }
        }
    }

    /// quantize_rows (threads) produces the same bytes as row-by-row quantize_row.
    func testQuantizeRowsMatchesRows() {
        var rng = SplitMix64(seed: 3)
        let rows = 300, n = 1000
        let x = rng.normals(rows * n)
        for t in allTypes {
            let rs = qlm_row_size(t, Int64(n))
            var dst = [UInt8](repeating: 0, count: rs * rows)
            XCTAssertEqual(qlm_quantize_rows(t, x, &dst, Int64(rows), Int64(n), 2), -1)
            for r in stride(from: 0, to: rows, by: 37) {
                XCTAssertEqual(Array(dst[r * rs..<(r + 1) * rs]), quantize(t, Array(x[r * n..<(r + 1) * n])))
            }
        }
    }

    /// All 65536 halves: software and F16C conversions agree bit for bit (NaNs included), and
    /// f16 -> f32 -> f16 is the identity for every non-NaN half. Random f32 bit patterns
    /// convert identically on both.
    func testF16Exhaustive() {
        let halves = (0..<65536).map { UInt16($0) }
        var soft = [Float](repeating: 0, count: 65536), back = [UInt16](repeating: 0, count: 65536)
        withPath(pScalar) {
            qlm_f16_to_f32(halves, &soft, 65536)
            qlm_f32_to_f16(soft, &back, 65536)
        }
        for h in 0..<65536 where !soft[h].isNaN { XCTAssertEqual(back[h], UInt16(h)) }
        XCTAssertEqual(soft[0x3C00], 1); XCTAssertEqual(soft[0x7BFF], 65504); XCTAssertEqual(soft[0x0001], 0x1p-24)
        XCTAssertEqual(soft[0x7C00], .infinity); XCTAssertEqual(soft[0xFC00], -.infinity)
        XCTAssertEqual(soft[0x8000].bitPattern, 0x8000_0000); XCTAssertTrue(soft[0x7E00].isNaN)
        XCTAssertEqual(soft[0x03FF], 0x3FFp-24)
        func h(_ f: Float) -> UInt16 { var o: UInt16 = 0; var x = f; qlm_f32_to_f16(&x, &o, 1); return o }
        withPath(pScalar) {
            XCTAssertEqual(h(65519), 0x7BFF); XCTAssertEqual(h(65520), 0x7C00)
            XCTAssertEqual(h(0x1p-25), 0); XCTAssertEqual(h(0x1.8p-25), 1); XCTAssertEqual(h(0x1.8p-24), 2) // ties to even
            XCTAssertEqual(h(1 + 0x1p-11), 0x3C00); XCTAssertEqual(h(1 + 0x3p-11), 0x3C02)
            XCTAssertEqual(h(-2), 0xC000); XCTAssertEqual(h(Float(bitPattern: 1)), 0)
        }
        for p in supportedPaths where p != pScalar {
            var fast = [Float](repeating: 0, count: 65536)
            withPath(p) { qlm_f16_to_f32(halves, &fast, 65536) }
            XCTAssertEqual(fast.map(\.bitPattern), soft.map(\.bitPattern), pathName(p))
            var rng = SplitMix64(seed: 4)
            var xs = (0..<200_000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
            xs += [0x1p-25, 0x1.8p-25, 65520, 65519.99, -0.0, .nan, .infinity, 0x1p-14, 0x1.ffcp-15]
            var a = [UInt16](repeating: 0, count: xs.count), b = a
            withPath(pScalar) { qlm_f32_to_f16(xs, &a, Int64(xs.count)) }
            withPath(p) { qlm_f32_to_f16(xs, &b, Int64(xs.count)) }
            XCTAssertEqual(a, b, pathName(p))
        }
    }

    func testBF16() {
        let x: [UInt16] = [0x3F80, 0xC000, 0x7F80, 0x0001]
        var y = [Float](repeating: 0, count: 4)
        qlm_bf16_to_f32(x, &y, 4)
        XCTAssertEqual(y[0], 1); XCTAssertEqual(y[1], -2); XCTAssertEqual(y[2], .infinity)
        XCTAssertEqual(y[3].bitPattern, 0x0001_0000)
    }
}
