import CKernels
import XCTest

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
}
