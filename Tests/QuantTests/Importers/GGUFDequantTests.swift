import CKernels
import Foundation
import Quant
import TestSupport
import XCTest

/// ggml_blocks.c against the official `gguf` Python package's dequantizers (Tests/reference/
/// gguf_oracle.py), on random block bytes with finite fp16 scales.
final class GGUFDequantTests: XCTestCase {
    static let types: [(String, Int32)] = [
        ("F32", 0), ("F16", 1), ("BF16", 30), ("Q4_0", 2), ("Q4_1", 3), ("Q5_0", 6), ("Q5_1", 7), ("Q8_0", 8),
        ("Q2_K", 10), ("Q3_K", 11), ("Q4_K", 12), ("Q5_K", 13), ("Q6_K", 14), ("IQ4_NL", 20), ("IQ4_XS", 23),
    ]

    /// Tolerance: none. Both sides compute each output as separately rounded float32 products
    /// and sums in the same order (scale = d * sub-scale, then scale * q, then - min), with exact
    /// fp16 -> f32 conversion, so the results must be the same floats (compared with ==, which
    /// also equates +0 and -0; bit patterns are compared too and are expected equal).
    func testEveryTypeMatchesGGUFPackage() throws {
        let dir = try makeTempDir(self, "ggufdeq")
        var rng = SplitMix64(seed: 0x66)
        var blocks: [String: [UInt8]] = [:]
        for (name, t) in Self.types {
            let g = try XCTUnwrap(GGMLType(rawValue: t), name)
            let elements = 64 * max(g.blockSize, 32) // 64 blocks (2048 scalars for F32/F16/BF16)
            let b = GGUFBuilder.randomBlocks(t, elements: elements, rng: &rng)
            XCTAssertEqual(b.count, elements / g.blockSize * g.blockBytes)
            blocks[name] = b
            try Data(b).write(to: dir.appendingPathComponent("\(name).bin"))
        }
        let out = try referencePython("gguf_oracle.py", ["dequant", dir.path])
        XCTAssertTrue(out.contains("IQ4_XS"), out)
        for (name, t) in Self.types {
            let g = GGMLType(rawValue: t)!
            let b = blocks[name]!
            let n = b.count / g.blockBytes * g.blockSize
            let ref = floatsOfData(try Data(contentsOf: dir.appendingPathComponent("\(name).f32")))
            XCTAssertEqual(ref.count, n, name)
            var ours = [Float](repeating: .nan, count: n)
            let rc = b.withUnsafeBytes { src in ours.withUnsafeMutableBufferPointer { qlm_ggml_dequantize_row(t, src.baseAddress!, $0.baseAddress!, Int64(n)) } }
            XCTAssertEqual(rc, 0, name)
            var mismatches = 0, bitDiffs = 0, first = ""
            for i in 0 ..< n {
                if ours[i] != ref[i] { mismatches += 1; if first.isEmpty { first = "element \(i): ours \(ours[i]) ref \(ref[i])" } }
                if ours[i].bitPattern != ref[i].bitPattern { bitDiffs += 1 }
            }
            XCTAssertEqual(mismatches, 0, "\(name): \(mismatches) of \(n) differ; first \(first)")
            XCTAssertEqual(bitDiffs, 0, "\(name): bit patterns differ (sign of zero?)")
        }
        // Not whole blocks / unknown type: refused, nothing written.
        var y = [Float](repeating: 0, count: 64)
        XCTAssertEqual(qlm_ggml_dequantize_row(12, [UInt8](repeating: 0, count: 144), &y, 32), -1)
        XCTAssertEqual(qlm_ggml_dequantize_row(16, [UInt8](repeating: 0, count: 144), &y, 256), -1)
    }

    /// ggml Q8_0 / Q4_0 / Q4_1 / Q4_K / Q5_K / Q6_K / Q5_0 / Q5_1 / IQ4_NL / IQ4_XS / Q3_K / Q2_K blocks are
    /// QuantLM's q8_0 / ... / q2_k bytes: QuantLM's own dequantizer reads them to the same floats as the ggml one.
    func testIdenticalLayoutsDequantizeTheSame() throws {
        var rng = SplitMix64(seed: 9)
        for (t, q) in [(Int32(8), QuantType.q8_0), (2, .q4_0), (3, .q4_1), (1, .f16), (0, .f32), (12, .q4_k), (13, .q5_k), (14, .q6_k),
                       (6, .q5_0), (7, .q5_1), (20, .iq4_nl), (23, .iq4_xs), (11, .q3_k), (10, .q2_k)] {
            let g = GGMLType(rawValue: t)!
            XCTAssertEqual(g.identicalQuantType, q)
            let n = 256
            let b = GGUFBuilder.randomBlocks(t, elements: n, rng: &rng)
            XCTAssertEqual(b.count, q.rowSize(n))
            var a = [Float](repeating: 0, count: n)
            _ = b.withUnsafeBytes { qlm_ggml_dequantize_row(t, $0.baseAddress!, &a, Int64(n)) }
            let c = b.withUnsafeBytes { dequantize(q, $0, n: n) }
            XCTAssertTrue(bitsEqual(a, c), "\(q)")
        }
    }
}

func floatsOfData(_ d: Data) -> [Float] { d.withUnsafeBytes { floatsOf($0) } }
