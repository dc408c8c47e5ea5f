import CKernels
import CKernels.Testing
import XCTest
import TestSupport

/// q4_0x8 / q8_0x8 / q5_0x8 / iq4_nlx8 / q4_kx8 / q6_kx8 / q5_kx8 / iq4_xsx8 / q3_kx8: q4_0 / q8_0 / q5_0 / iq4_nl / q4_k / q6_k / q5_k / iq4_xs / q3_k rows stored in 8-row groups. The layout is a permutation of
/// the plain bytes, and every product (matvec and matmul, every path, with and without the pool)
/// must equal the scalar dot of the same plain row bit for bit: the 8-row kernels do the scalar's
/// float steps in the scalar's order (exact integer block sums, then s += (d_w * d_a) * isum, no FMA;
/// q4_kx8 / q6_kx8 / q5_kx8: the K-quant scheme of ksuper.h, lane r = row r of each 32-weight group's lanes).
final class RowGroupTests: XCTestCase {
    let tQ4X8 = Int32(QLM_TYPE_Q4_0X8.rawValue)
    let tQ8X8 = Int32(QLM_TYPE_Q8_0X8.rawValue)
    let tQ5X8 = Int32(QLM_TYPE_Q5_0X8.rawValue)
    let tQ51X8 = Int32(QLM_TYPE_Q5_1X8.rawValue)
    let tIQ4NLX8 = Int32(QLM_TYPE_IQ4_NLX8.rawValue)
    let tQ4KX8 = Int32(QLM_TYPE_Q4_KX8.rawValue)
    let tQ6KX8 = Int32(QLM_TYPE_Q6_KX8.rawValue)
    let tQ5KX8 = Int32(QLM_TYPE_Q5_KX8.rawValue)
    let tQ3KX8 = Int32(QLM_TYPE_Q3_KX8.rawValue)
    let tIQ4XSX8 = Int32(QLM_TYPE_IQ4_XSX8.rawValue)
    /// (grouped type, its plain type)
    var pairs: [(Int32, Int32)] { [(tQ4X8, tQ4_0), (tQ8X8, tQ8_0), (tQ5X8, tQ5_0), (tQ51X8, tQ5_1), (tIQ4NLX8, tIQ4NL), (tQ4KX8, tQ4K), (tQ6KX8, tQ6K), (tQ5KX8, tQ5K), (tIQ4XSX8, tIQ4XS), (tQ3KX8, tQ3K)] }
    /// The row lengths a test runs a pair at: `ns` for the 32-weight types; whole 256-weight
    /// super-blocks (and 172, one padded super-block, as the C rows allow) for the super-block types.
    func lengths(_ tG: Int32, _ ns: [Int]) -> [Int] {
        qlm_traits(tG)!.pointee.block_size == 256 ? [172, 256, 768, 1536] : ns
    }

    func rows(_ type: Int32, _ x: [Float], rows: Int, n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0xAA, count: rows * qlm_row_size(type, Int64(n)))
        let bad = x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBytes { qlm_quantize_rows(type, xp.baseAddress, $0.baseAddress, Int64(rows), Int64(n), 2) }
        }
        XCTAssertEqual(bad, -1)
        return out
    }

    func weights(rows: Int, n: Int, rng: inout SplitMix64) -> [Float] {
        (0..<rows).flatMap { r in rng.normals(n, scale: r % 5 == 0 ? 0.02 : 1) }
    }

    func testTraits() {
        for (g, plain, name) in [(tQ4X8, tQ4_0, "q4_0x8"), (tQ8X8, tQ8_0, "q8_0x8"), (tQ5X8, tQ5_0, "q5_0x8"), (tQ51X8, tQ5_1, "q5_1x8"),
                                 (tIQ4NLX8, tIQ4NL, "iq4_nlx8"), (tQ4KX8, tQ4K, "q4_kx8"), (tQ6KX8, tQ6K, "q6_kx8"), (tQ5KX8, tQ5K, "q5_kx8"),
                                 (tIQ4XSX8, tIQ4XS, "iq4_xsx8"), (tQ3KX8, tQ3K, "q3_kx8")] {
            let t = qlm_traits(g)!.pointee
            XCTAssertEqual(String(cString: t.name), name)
            XCTAssertEqual(t.row_group, 8)
            XCTAssertEqual(qlm_traits(plain)!.pointee.row_group, 1)
            for n in [32, 100, 768] { XCTAssertEqual(qlm_row_size(g, Int64(n)), qlm_row_size(plain, Int64(n))) }
        }
        XCTAssertEqual(MemoryLayout<qlm_block_q4_0x8>.size, 144)
        XCTAssertEqual(MemoryLayout<qlm_block_q8_0x8>.size, 272)
        XCTAssertEqual(MemoryLayout<qlm_block_q5_0x8>.size, 176)
        XCTAssertEqual(MemoryLayout<qlm_block_q5_1x8>.size, 192)
        XCTAssertEqual(MemoryLayout<qlm_block_iq4_nlx8>.size, 144)
        XCTAssertEqual(MemoryLayout<qlm_block_q3_kx8>.size, 880)
        XCTAssertEqual(MemoryLayout<qlm_block_iq4_xsx8>.size, 1088)
    }

    /// Packing permutes bytes inside whole groups only; unpack inverts it; get_row reads any row
    /// exactly as the plain type's dequantizer reads the plain row.
    func testLayoutIsAPermutationOfPlainRows() {
        var rng = SplitMix64(seed: 81)
        for (tG, tP) in pairs {
            for n in lengths(tG, [32, 64, 172, 768]) {
                for nrows in [1, 7, 8, 13, 16, 37] {
                    let x = weights(rows: nrows, n: n, rng: &rng)
                    let plain = rows(tP, x, rows: nrows, n: n)
                    let packed = rows(tG, x, rows: nrows, n: n)
                    let rs = qlm_row_size(tP, Int64(n)), grouped = nrows / 8 * 8 * rs
                    XCTAssertEqual(packed.count, plain.count)
                    if tG != tQ5X8 && tG != tQ51X8 {
                        XCTAssertEqual(packed.sorted(), plain.sorted(), "a permutation, n=\(n) rows=\(nrows)")
                    } else { // q5_0x8 / q5_1x8 regroup the fifth bits: a permutation of bits, not of bytes
                        let ones = { (b: [UInt8]) in b.reduce(0) { $0 + $1.nonzeroBitCount } }
                        XCTAssertEqual(ones(packed), ones(plain), "a permutation of bits, n=\(n) rows=\(nrows)")
                    }
                    XCTAssertEqual(Array(packed[grouped...]), Array(plain[grouped...]), "rows past the last group stay plain")
                    if grouped > 0 { XCTAssertNotEqual(Array(packed[..<grouped]), Array(plain[..<grouped]), "whole groups are interleaved") }
                    var unpacked = packed
                    XCTAssertEqual(unpacked.withUnsafeMutableBytes { qlm_unpack_rows(tG, $0.baseAddress, Int64(nrows), Int64(n)) }, 0)
                    XCTAssertEqual(unpacked, plain, "unpack inverts pack, n=\(n) rows=\(nrows)")
                    var repacked = plain
                    XCTAssertEqual(repacked.withUnsafeMutableBytes { qlm_pack_rows(tG, $0.baseAddress, Int64(nrows), Int64(n)) }, 0)
                    XCTAssertEqual(repacked, packed)
                    for r in 0..<nrows {
                        var got = [Float](repeating: .nan, count: n)
                        packed.withUnsafeBytes { p in got.withUnsafeMutableBufferPointer {
                            qlm_get_row(tG, p.baseAddress, Int64(nrows), Int64(n), Int64(r), $0.baseAddress)
                        } }
                        let want = dequantize(tP, Array(plain[(r * rs)..<((r + 1) * rs)]), n)
                        XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(typeName(tG)) row \(r), n=\(n) rows=\(nrows)")
                    }
                }
            }
        }
    }

    /// q4_kx8 / q6_kx8 / q5_kx8 put byte i of row r's super-block b where docs/format.md says: offset at(r, i)
    /// of group block b (8 rows, 2 super-blocks each, then a row past the group, which stays plain).
    func testKGroupBytesAsDocumented() {
        var rng = SplitMix64(seed: 86)
        let n = 512, nrows = 9
        let chunk = { (r: Int, j: Int) in 32 * (j / 4) + 4 * r + j % 4 }
        let q4: (Int, Int) -> Int = { r, i in i < 4 ? 16 * (i / 2) + 2 * r + i % 2 : i < 16 ? 32 + 8 * (i - 4) + r : 128 + chunk(r, i - 16) }
        let q6: (Int, Int) -> Int = { r, i in
            i < 128 ? chunk(r, i) : i < 192 ? 1024 + chunk(r, i - 128) : i < 208 ? 1536 + 8 * (i - 192) + r : 1664 + 2 * r + (i - 208)
        }
        let q5: (Int, Int) -> Int = { r, i in i < 16 ? q4(r, i) : i < 48 ? 128 + chunk(r, i - 16) : 384 + chunk(r, i - 48) }
        for (tG, tP, bb, at) in [(tQ4KX8, tQ4K, 144, q4), (tQ6KX8, tQ6K, 210, q6), (tQ5KX8, tQ5K, 176, q5)] {
            let x = weights(rows: nrows, n: n, rng: &rng)
            let plain = rows(tP, x, rows: nrows, n: n), packed = rows(tG, x, rows: nrows, n: n)
            let rs = qlm_row_size(tP, Int64(n))
            XCTAssertEqual(rs, 2 * bb)
            var bad = 0
            for r in 0..<8 { for b in 0..<2 { for i in 0..<bb where packed[b * 8 * bb + at(r, i)] != plain[r * rs + b * bb + i] { bad += 1 } } }
            XCTAssertEqual(bad, 0, typeName(tG))
            XCTAssertEqual(Array(packed[(8 * rs)...]), Array(plain[(8 * rs)...]), typeName(tG))
        }
    }

    /// The q8i activation: q8a's scale and codes, with -zp * sum(codes) as an exact integer (zp: the
    /// zero point its kernels take off, q4_0x8 8, q5_0x8 16, iq4_nlx8 128 for its codebook + 128).
    func testActivationCarriesExactCorrection() {
        var rng = SplitMix64(seed: 82)
        for n in [32, 100, 768] {
            let x = rng.normals(n, scale: 4)
            for p in supportedPaths { for (tG, zp) in [(tQ4X8, Int32(8)), (tQ5X8, 16), (tIQ4NLX8, 128), (tIQ4XSX8, 128)] {
                let a = withPath(p) { prepareAct(tG, x) }
                let ref = withPath(pScalar) { prepareAct(tQ4_0, x) }
                a.withUnsafeBytes { ap in ref.withUnsafeBytes { rp in
                    for b in 0..<((n + 31) / 32) {
                        let o = b * 40
                        XCTAssertEqual(ap.load(fromByteOffset: o, as: UInt32.self), rp.load(fromByteOffset: o, as: UInt32.self), "same scale")
                        XCTAssertEqual(Array(ap[(o + 8)..<(o + 40)]), Array(rp[(o + 8)..<(o + 40)]), "same codes")
                        let sum = (0..<32).reduce(Int32(0)) { $0 + Int32(Int8(bitPattern: rp[o + 8 + $1])) }
                        XCTAssertEqual(ap.load(fromByteOffset: o + 4, as: Int32.self), -zp * sum, "\(typeName(tG)) \(pathName(p)) n=\(n) block \(b)")
                    }
                } }
            } }
        }
    }

    /// q3_kx8's activation: q8a's scale and codes, its s replaced by two exact int16, -4 times the
    /// sums of codes 0..15 and 16..31 (the unsigned codes' zero point per 16-weight group).
    func testQ3KX8ActivationCarriesHalfSums() {
        var rng = SplitMix64(seed: 86)
        for n in [32, 100, 768] {
            var x = rng.normals(n, scale: 4)
            if n == 32 { x = (0..<n).map { Float($0 < 16 ? 1 : -1) } } // every code +-127: the int16 extremes
            for p in supportedPaths {
                let a = withPath(p) { prepareAct(tQ3KX8, x) }
                let ref = withPath(pScalar) { prepareAct(tQ3K, x) }
                a.withUnsafeBytes { ap in ref.withUnsafeBytes { rp in
                    for b in 0..<((n + 31) / 32) {
                        let o = b * 40
                        XCTAssertEqual(ap.load(fromByteOffset: o, as: UInt32.self), rp.load(fromByteOffset: o, as: UInt32.self), "same scale")
                        XCTAssertEqual(Array(ap[(o + 8)..<(o + 40)]), Array(rp[(o + 8)..<(o + 40)]), "same codes")
                        let half = { (h: Int) in (0..<16).reduce(Int32(0)) { $0 + Int32(Int8(bitPattern: rp[o + 8 + 16 * h + $1])) } }
                        XCTAssertEqual(Int32(ap.load(fromByteOffset: o + 4, as: Int16.self)), -4 * half(0), "\(pathName(p)) n=\(n) block \(b)")
                        XCTAssertEqual(Int32(ap.load(fromByteOffset: o + 6, as: Int16.self)), -4 * half(1), "\(pathName(p)) n=\(n) block \(b)")
                    }
                } }
            }
        }
    }

    /// matvec (T = 1) and matmul (T > 1, token groups of 4 plus leftovers) on every path, with and
    /// without the pool, against the scalar dot of each plain row: equal bit for bit.
    func testProductsEqualScalarPlainDotBitForBit() {
        var rng = SplitMix64(seed: 83)
        let pool = qlm_pool_create(2)!
        defer { qlm_pool_destroy(pool) }
        for (tG, tP) in pairs {
            for n in lengths(tG, [32, 64, 172, 768, 1000, 4096]) {
                for nrows in [8, 13, 64, 77, 513] {
                    if n == 4096 && nrows == 513 { continue }
                    var x = weights(rows: nrows, n: n, rng: &rng)
                    if nrows == 13 { // extreme codes: q4 codes 0 and 15 (q8: +-127, iq4_nl: -127 and 113) against activations of +-127
                        x = (0..<(nrows * n)).map { Float($0 % 3 == 0 ? -1 : ($0 % 7 == 0 ? 0.99 : 1)) }
                    }
                    let plain = rows(tP, x, rows: nrows, n: n)
                    let packed = rows(tG, x, rows: nrows, n: n)
                    let rs = qlm_row_size(tP, Int64(n))
                    for T in [1, 2, 3, 5, 9] {
                        let X = (0..<T).flatMap { t in t == 1 && nrows == 13 ? (0..<n).map { Float($0 % 2 == 0 ? -1 : 1) } : rng.normals(n, scale: 3) }
                        // reference: scalar path, plain rows, the plain type's activations
                        let ref: [Float] = withPath(pScalar) {
                            (0..<T).flatMap { t in
                                let act = prepareAct(tP, Array(X[(t * n)..<((t + 1) * n)]))
                                return (0..<nrows).map { vecDot(tP, n, plain, act, rowOffset: $0 * rs) }
                            }
                        }
                        for p in supportedPaths {
                            for usePool in [false, true] {
                                var y = [Float](repeating: .nan, count: T * nrows)
                                var act = [UInt8](repeating: 0, count: T * qlm_act_row_size(tG, Int64(n)))
                                withPath(p) {
                                    packed.withUnsafeBytes { wp in X.withUnsafeBufferPointer { xp in
                                        y.withUnsafeMutableBufferPointer { yp in act.withUnsafeMutableBytes { ap in
                                            if T == 1 {
                                                qlm_matvec(usePool ? pool : nil, tG, wp.baseAddress, Int64(nrows), Int64(n), xp.baseAddress, yp.baseAddress, ap.baseAddress)
                                            } else {
                                                qlm_matmul(usePool ? pool : nil, tG, wp.baseAddress, Int64(nrows), Int64(n), xp.baseAddress, Int64(T),
                                                           yp.baseAddress, Int64(nrows), ap.baseAddress)
                                            }
                                        } }
                                    } }
                                }
                                XCTAssertEqual(y.map(\.bitPattern), ref.map(\.bitPattern),
                                               "\(typeName(tG)) \(pathName(p)) pool=\(usePool) n=\(n) rows=\(nrows) T=\(T)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// GPTQ for q4_0x8 (q8_0x8) is GPTQ for q4_0 (q8_0), then packed: the same codes and scales.
    func testGPTQIsPlainGPTQPacked() {
        var rng = SplitMix64(seed: 85)
        let rows = 19, n = 64
        let w = weights(rows: rows, n: n, rng: &rng)
        var h = [Double](repeating: 0, count: n * n)
        let x = rng.normals(200 * n)
        h.withUnsafeMutableBufferPointer { qlm_accum_xtx($0.baseAddress, x, 200, Int64(n)) }
        func gptq(_ t: Int32) -> [UInt8] {
            var wm = w
            var out = [UInt8](repeating: 0xAA, count: rows * qlm_row_size(t, Int64(n)))
            let rc = wm.withUnsafeMutableBufferPointer { wp in out.withUnsafeMutableBytes {
                qlm_gptq_quantize(t, wp.baseAddress, Int64(rows), Int64(n), h, 0.01, $0.baseAddress, 2)
            } }
            XCTAssertEqual(rc, 0, typeName(t))
            return out
        }
        for (tG, tP) in pairs where qlm_traits(tP)!.pointee.gptq_row != nil { // q5_0 has no GPTQ
            var plain = gptq(tP)
            XCTAssertEqual(plain.withUnsafeMutableBytes { qlm_pack_rows(tG, $0.baseAddress, Int64(rows), Int64(n)) }, 0)
            XCTAssertEqual(gptq(tG), plain, typeName(tG))
        }
    }

    /// A grouped row on its own is a plain row: quantize_row / dequantize_row / vec_dot agree.
    func testLoneRowIsPlain() {
        var rng = SplitMix64(seed: 84)
        for (tG, tP) in pairs {
            let n = qlm_traits(tG)!.pointee.block_size == 256 ? 512 : 172
            let x = rng.normals(n)
            XCTAssertEqual(quantize(tG, x), quantize(tP, x))
            let q = quantize(tP, x)
            XCTAssertEqual(dequantize(tG, q, n).map(\.bitPattern), dequantize(tP, q, n).map(\.bitPattern))
            let a = rng.normals(n)
            let want = withPath(pScalar) { vecDot(tP, n, q, prepareAct(tP, a)) }
            for p in supportedPaths {
                XCTAssertEqual(withPath(p) { vecDot(tG, n, q, prepareAct(tG, a)) }.bitPattern, want.bitPattern, "\(typeName(tG)) \(pathName(p))")
            }
        }
    }
}
