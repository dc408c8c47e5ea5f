import CKernels
import XCTest
import TestSupport

/// The ggml block types (q5_0, q5_1, iq4_nl; iq4_xs, q3_k, q2_k): their AVX2 and AVX-512 kernels (dot,
/// few-token, prefill tile) have the same int32 lanes and the same float steps, so the two SIMD
/// paths agree bit for bit (ProductTests bounds them against scalar and each path against itself).
final class GGMLBlockKernelTests: XCTestCase {
    func testSIMDPathsBitIdentical() throws {
        guard qlm_path_supported(pAVX2) != 0, qlm_path_supported(pAVX512) != 0 else {
            throw XCTSkip("needs both AVX2 and AVX-512 (this CPU: \(supportedPaths.map(pathName)))")
        }
        var rng = SplitMix64(seed: 28)
        for t in ggml32Types + ggmlSuperTypes {
            for (rows, n) in [(5, 32), (4, 224), (9, 640), (6, 1000), (3, 1536)] { // 224: an odd block count (7)
                var w = [UInt8]()
                for r in 0..<rows { w += quantize(t, rng.normals(n, scale: r == 0 ? 0.01 : 1)) }
                for T in [1, 3, 4, 8, 13] {
                    let X = rng.normals(T * n, scale: 2)
                    func product(_ p: Int32) -> [Float] {
                        withPath(p) {
                            var Y = [Float](repeating: .nan, count: T * rows)
                            var scratch = [UInt8](repeating: 0, count: T * qlm_act_row_size(t, Int64(n)))
                            w.withUnsafeBytes { qlm_matmul(nil, t, $0.baseAddress, Int64(rows), Int64(n), X, Int64(T), &Y, Int64(rows), &scratch) }
                            return Y
                        }
                    }
                    XCTAssertEqual(product(pAVX2).map(\.bitPattern), product(pAVX512).map(\.bitPattern), "\(typeName(t)) \(rows)x\(n) T=\(T)")
                }
            }
        }
    }
}
