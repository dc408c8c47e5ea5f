import CKernels
import CKernels.Testing
import Foundation
import Quant
import TestSupport
import XCTest

/// QuantLM's quantizers for the ggml block types against the `gguf` Python package's quantizers
/// (Tests/reference/gguf_oracle.py quant): the same bytes, so a row quantized by `convert --type
/// q5_0` is the block llama.cpp's reference quantizer writes.
final class GGUFQuantizeTests: XCTestCase {
    /// Tolerance: none (bytes compared). Both sides compute the codes from the float32 scale
    /// before its fp16 rounding, with the same float32 steps. Inputs have no all-zero block:
    /// there QuantLM stores d = +0 where the reference's max / -16 gives -0 (same numbers).
    func testQuantizersMatchGGUFPackage() throws {
        let dir = try makeTempDir(self, "ggufq")
        var rng = SplitMix64(seed: 0x51)
        let cases: [(String, QuantType)] = [("Q4_0", .q4_0), ("Q4_1", .q4_1), ("Q5_0", .q5_0), ("Q5_1", .q5_1), ("Q8_0", .q8_0)]
        let n = 32 * 96
        var x = rng.normals(n)
        for b in 0 ..< 8 { x[32 * b + 3] *= Float(1 << b) * 40 } // outliers of growing size
        for j in 32 * 10 ..< 32 * 11 { x[j] = Float(j % 7) * 0.25 - 0.5 } // many exact quarter steps
        for (name, _) in cases { try Data(x.withUnsafeBytes { Array($0) }).write(to: dir.appendingPathComponent("\(name).in.f32")) }
        let out = try referencePython("gguf_oracle.py", ["quant", dir.path])
        XCTAssertTrue(out.contains("Q5_1"), out)
        for (name, t) in cases {
            let ref = [UInt8](try Data(contentsOf: dir.appendingPathComponent("\(name).q")))
            var ours = [UInt8](repeating: 0, count: t.rowSize(n))
            XCTAssertEqual(qlm_quantize_row(t.rawValue, x, &ours, Int64(n)), 0)
            XCTAssertEqual(ref.count, ours.count, name)
            let bb = t.blockBytes
            let bad = (0 ..< n / 32).filter { ours[$0 * bb ..< ($0 + 1) * bb] != ref[$0 * bb ..< ($0 + 1) * bb] }
            XCTAssertEqual(bad, [], "\(name): blocks differing from the gguf package's")
        }
    }
}
