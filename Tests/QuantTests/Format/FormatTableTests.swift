import CKernels
import Foundation
import Quant
import XCTest

final class FormatTableTests: XCTestCase {
    /// Test 1: every type's block facts, bits per weight and the padded row size for n = 172.
    func testTypeTable() {
        // (type, block size, block bytes, bits/weight, rowSize(172))
        // 172 = 5 * 32 + 12, so block formats need 6 blocks (the last one zero-padded).
        let expected: [(QuantType, Int, Int, Double, Int)] = [
            (.q8_0, 32, 34, 8.5, 6 * 34),
            (.q4_0, 32, 18, 4.5, 6 * 18),
            (.q4_1, 32, 20, 5.0, 6 * 20),
            (.f16, 1, 2, 16, 172 * 2),
            (.f32, 1, 4, 32, 172 * 4),
            // super-block types: "block" = a full 256-weight super-block; rows follow the
            // 16-weight-chunk rule (172 -> 11 chunks: 1 + 6 + 88 bytes)
            (.iq4_k16, 256, 137, 4.28125, 95),
            (.iq4_k32, 256, 137, 4.28125, 95),
            // q4_0 bytes per row, stored in 8-row groups (rowGroup 8)
            (.q4_0x8, 32, 18, 4.5, 6 * 18),
            (.q8_0x8, 32, 34, 8.5, 6 * 34),
            (.q5_0x8, 32, 22, 5.5, 6 * 22),
            (.q5_1x8, 32, 24, 6.0, 6 * 24),
            (.iq4_nlx8, 32, 18, 4.5, 6 * 18),
            // ggml's K-quants: rows must be whole 256-weight blocks (172 is refused, see below;
            // the C rows pad a last block, 1 here)
            (.q4_k, 256, 144, 4.5, 144),
            (.q5_k, 256, 176, 5.5, 176),
            (.q6_k, 256, 210, 6.5625, 210),
            // their rows in 8-row groups (rowGroup 8), the same bytes per row
            (.q4_kx8, 256, 144, 4.5, 144),
            (.q6_kx8, 256, 210, 6.5625, 210),
            (.q5_kx8, 256, 176, 5.5, 176),
            // ggml's 32-weight blocks
            (.q5_0, 32, 22, 5.5, 6 * 22),
            (.q5_1, 32, 24, 6.0, 6 * 24),
            (.iq4_nl, 32, 18, 4.5, 6 * 18),
            // ggml's super-blocks: rows are whole 256-weight blocks (172 -> 1)
            (.iq4_xs, 256, 136, 4.25, 136),
            (.q3_k, 256, 110, 3.4375, 110),
            (.q2_k, 256, 84, 2.625, 84),
            // q3_k bytes per row, stored in 8-row groups
            (.q3_kx8, 256, 110, 3.4375, 110),
            (.iq4_xsx8, 256, 136, 4.25, 136),
        ]
        XCTAssertEqual(Set(QuantType.weightTypes), Set(expected.map(\.0)))
        for (t, bs, bb, bpw, row) in expected {
            XCTAssertEqual(t.blockSize, bs, "\(t) block size")
            XCTAssertEqual(t.blockBytes, bb, "\(t) block bytes")
            XCTAssertEqual(t.bitsPerWeight, bpw, "\(t) bits/weight") // exact: bb*8/bs is a short binary fraction
            XCTAssertEqual(t.rowSize(172), row, "\(t) rowSize(172)")
            if t.wholeBlocks {
                XCTAssertFalse(t.allows(rowLength: 172), "\(t)")
                XCTAssertTrue(t.allows(rowLength: 1536), "\(t)")
                XCTAssertEqual(t.rowSize(1536), 6 * bb, "\(t) rowSize(1536)")
            } else if t == .iq4_k16 || t == .iq4_k32 {
                XCTAssertEqual(t.rowSize(32), 1 + 1 + 16, "\(t) rowSize(32)")
                XCTAssertEqual(t.rowSize(33), 1 + 2 + 24, "\(t) rowSize(33)")
            } else {
                XCTAssertEqual(t.rowSize(32), t.isQuantized ? bb : 32 * bb, "\(t) rowSize(32)")
                XCTAssertEqual(t.rowSize(33), t.isQuantized ? (33 + bs - 1) / bs * bb : 33 * bb, "\(t) rowSize(33)")
            }
            XCTAssertEqual(QuantType(name: t.name), t)
        }
        // Values are stored in files: they must never change.
        XCTAssertEqual(QuantType.allCases.map(\.rawValue), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 31])
        XCTAssertEqual(QuantType.allCases.filter { $0.rowGroup != 1 }, [.q4_0x8, .q8_0x8, .q5_0x8, .q5_1x8, .iq4_nlx8, .q4_kx8, .q6_kx8, .q5_kx8, .iq4_xsx8, .q3_kx8])
        XCTAssertEqual(QuantType.q4_0x8.rowGroup, 8)
        // Each grouped type holds one plain type's rows (same row bytes), and is that type's layout.
        XCTAssertEqual(QuantType.allCases.filter { $0.rowGroup != 1 }.map(\.plainType), [.q4_0, .q8_0, .q5_0, .q5_1, .iq4_nl, .q4_k, .q6_k, .q5_k, .iq4_xs, .q3_k])
        for g in QuantType.allCases where g.rowGroup != 1 {
            XCTAssertEqual(g.plainType.rowGroup, 1, "\(g)")
            XCTAssertEqual(g.plainType.rowSize(172), g.rowSize(172), "\(g)")
            XCTAssertEqual(g.plainType.groupedLayout, g, "\(g)")
        }
        XCTAssertNil(QuantType.q2_k.groupedLayout)
        XCTAssertEqual(QuantType.q6_k.plainType, .q6_k)
        XCTAssertNil(QuantType.q2_k.groupedLayout)
        // --type keep regroups q4_0 / q5_0 / q5_1 / q8_0 / iq4_nl / q4_k / q6_k / q5_k / iq4_xs / q3_k matrices of a whole group or more, nothing else.
        XCTAssertEqual(QuantPolicy.keptLayout(.q5_0, rows: 8), .q5_0x8)
        XCTAssertEqual(QuantPolicy.keptLayout(.q5_0, rows: 7), .q5_0)
        XCTAssertEqual(QuantPolicy.keptLayout(.q4_0, rows: 64), .q4_0x8)
        XCTAssertEqual(QuantPolicy.keptLayout(.q8_0, rows: 9), .q8_0x8)
        XCTAssertEqual(QuantPolicy.keptLayout(.q5_1, rows: 64), .q5_1x8)
        XCTAssertEqual(QuantPolicy.keptLayout(.iq4_nl, rows: 64), .iq4_nlx8)
        XCTAssertEqual(QuantPolicy.keptLayout(.iq4_nl, rows: 7), .iq4_nl)
        XCTAssertEqual(QuantPolicy.keptLayout(.q3_k, rows: 576), .q3_kx8)
        XCTAssertEqual(QuantPolicy.keptLayout(.q3_k, rows: 7), .q3_k)
        XCTAssertEqual(QuantPolicy.keptLayout(.q2_k, rows: 64), .q2_k)
        XCTAssertEqual(QuantPolicy.keptLayout(.iq4_xs, rows: 64), .iq4_xsx8)
        XCTAssertEqual(QuantPolicy.keptLayout(.q4_1, rows: 64), .q4_1)
        XCTAssertEqual(QuantPolicy.keptLayout(.q6_k, rows: 64), .q6_kx8)
        XCTAssertEqual(QuantPolicy.keptLayout(.q4_k, rows: 576), .q4_kx8)
        XCTAssertEqual(QuantPolicy.keptLayout(.q4_k, rows: 7), .q4_k)
        XCTAssertEqual(QuantPolicy.keptLayout(.q5_k, rows: 64), .q5_kx8)
        XCTAssertEqual(QuantPolicy.keptLayout(.q5_k, rows: 7), .q5_k)
        XCTAssertEqual(QuantType.q8_0x8.rowGroup, 8)
        XCTAssertEqual(QuantType.u8.rowSize(172), 172)
        XCTAssertNil(QuantType(name: "q1_k"))
        XCTAssertEqual(QLMFormat.headerSize, 64)
        XCTAssertEqual(QLMFormat.recordSize, 128)
        XCTAssertEqual(QLMFormat.alignment, 64)
    }

    /// The worked examples of docs/format.md ("Worked example"): one q8_0 block and one
    /// q4_0 block, computed by the C kernels. The test prints them (hex) and pins the bytes.
    func testWorkedBlockExamples() {
        // x[j] = (j - 12) / 8 for j in 0..<32: -1.5 ... 2.375. absmax 2.375 (positive).
        let x = (0 ..< 32).map { Float($0 - 12) / 8 }
        let q8 = quantize(.q8_0, x, rows: 1, n: 32)
        let q4 = quantize(.q4_0, x, rows: 1, n: 32)
        let q41 = quantize(.q4_1, x, rows: 1, n: 32)
        func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined(separator: " ") }
        print("worked example input: x[j] = (j - 12) / 8")
        print("q8_0 block: \(hex(q8))")
        print("q4_0 block: \(hex(q4))")
        print("q4_1 block: \(hex(q41))")
        XCTAssertEqual(q8.count, 34)
        XCTAssertEqual(q4.count, 18)
        // q8_0: d = 2.375 / 127 = 0.018700787 -> fp16 0x24ca (1226 * 2^-16 = 0.018707275); q = round(x / d).
        XCTAssertEqual(hex(q8), "ca 24 b0 b6 bd c4 cb d1 d8 df e5 ec f3 f9 00 07 0d 14 1b 21 28 2f 35 3c 43 4a 50 57 5e 64 6b 72 78 7f")
        XCTAssertEqual(hex(q4), "c0 b4 6d 6d 5c 5c 5b 4b 4b 3a 3a 39 29 28 18 18 07 07")
        let d8 = Float(Float16(bitPattern: UInt16(q8[0]) | UInt16(q8[1]) << 8))
        XCTAssertEqual(q8[0], 0xca); XCTAssertEqual(q8[1], 0x24)
        XCTAssertEqual(d8, 0.018707275, accuracy: 1e-9)
        let codes8 = q8[2...].map { Int8(bitPattern: $0) }
        XCTAssertEqual(codes8.first, -80) // round(-1.5 / 0.018700787) = round(-80.21)
        XCTAssertEqual(codes8.last, 127)
        XCTAssertEqual(codes8[12], 0)
        // q4_0: max (signed, largest magnitude) = 2.375, d = -2.375 / 8 = -0.296875 (exact in fp16: 0xb4c0).
        XCTAssertEqual(q4[0], 0xc0); XCTAssertEqual(q4[1], 0xb4)
        // Element j is the low nibble of qs[j], element j+16 the high nibble. q = min(15, trunc(x/d + 8.5)).
        for j in 0 ..< 32 {
            let q = j < 16 ? Int(q4[2 + j] & 0xF) : Int(q4[2 + j - 16] >> 4)
            let expect = min(15, Int(x[j] / -0.296875 + 8.5))
            XCTAssertEqual(q, expect, "q4_0 element \(j)")
        }
    }
}
