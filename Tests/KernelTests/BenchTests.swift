import CKernels
import Foundation
import XCTest

/// Throughput numbers, printed only (never asserted). Skipped unless QLM_BENCH=1:
///   QLM_BENCH=1 swift test -c release --filter KernelTests.BenchTests
final class BenchTests: XCTestCase {
    func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

    /// Best time of `iters` calls.
    func best(_ iters: Int, _ body: (Int) -> Void) -> Double {
        var b = Double.infinity
        for i in 0..<iters { let t0 = now(); body(i); b = min(b, now() - t0) }
        return b
    }

    func testBench() throws {
        guard ProcessInfo.processInfo.environment["QLM_BENCH"] == "1" else { return }
        var rng = Rng(99)
        let pool = qlm_pool_create(2)!
        defer { qlm_pool_destroy(pool) }
        // matvec 4096 x 4096, several copies of the matrix so it streams from DRAM
        let rows = 4096, n = 4096
        let w = rng.floats(rows * n)
        let x = rng.floats(n)
        var y = [Float](repeating: 0, count: rows)
        for t in allTypes {
            let rs = qlm_row_size(t, Int64(n))
            let copies = 6
            var W = [UInt8](repeating: 0, count: rs * rows * copies)
            W.withUnsafeMutableBytes { wp in
                _ = qlm_quantize_rows(t, w, wp.baseAddress, Int64(rows), Int64(n), 2)
                for c in 1..<copies { memcpy(wp.baseAddress! + c * rs * rows, wp.baseAddress!, rs * rows) }
            }
            var act = [UInt8](repeating: 0, count: qlm_act_row_size(t, Int64(n)))
            for p in supportedPaths where p != pScalar {
                withPath(p) {
                    for threads in [1, 2] {
                        let dt = W.withUnsafeBytes { wp in
                            best(30) { i in
                                qlm_matvec(threads == 2 ? pool : nil, t, wp.baseAddress! + (i % copies) * rs * rows, Int64(rows), Int64(n), x, &y, &act)
                            }
                        }
                        print(String(format: "matvec %@ %@ %dT: %.3f ms %.2f GB/s", typeName(t), pathName(p), threads, dt * 1e3, Double(rs * rows) / dt / 1e9))
                    }
                }
            }
        }
        // matmul (prefill) T = 128
        for (mr, mn) in [(768, 768), (3072, 768)] {
            let T = 128
            let X = rng.floats(T * mn)
            var Y = [Float](repeating: 0, count: T * mr)
            for t in quantTypes {
                let W = (0..<mr).flatMap { _ in quantize(t, rng.floats(mn)) }
                var act = [UInt8](repeating: 0, count: T * qlm_act_row_size(t, Int64(mn)))
                for p in supportedPaths where p != pScalar {
                    withPath(p) {
                        for threads in [1, 2] {
                            let dt = best(8) { _ in
                                qlm_matmul(threads == 2 ? pool : nil, t, W, Int64(mr), Int64(mn), X, Int64(T), &Y, Int64(mr), &act)
                            }
                            print(String(format: "matmul %@ %dx%d T=%d %@ %dT: %.3f ms %.1f GFLOP/s", typeName(t), mr, mn, T, pathName(p), threads, dt * 1e3, 2.0 * Double(mr * mn * T) / dt / 1e9))
                        }
                    }
                }
            }
        }
        // pool overhead (empty jobs)
        let jobs = 100_000
        let t0 = now()
        for _ in 0..<jobs { qlm_pool_run(pool, { _, _, _ in }, nil) }
        print(String(format: "pool 2T: %.2f us/job (mean of %d)", (now() - t0) / Double(jobs) * 1e6, jobs))
        // crc32c
        let buf = [UInt8](repeating: 7, count: 64 << 20)
        let dc = best(5) { _ in _ = qlm_crc32c(0, buf, buf.count) }
        print(String(format: "crc32c: %.2f GB/s", Double(buf.count) / dc / 1e9))
        // converter quantization, 2 threads
        for t in allTypes {
            var dst = [UInt8](repeating: 0, count: qlm_row_size(t, Int64(n)) * rows)
            let dq = best(3) { _ in _ = qlm_quantize_rows(t, w, &dst, Int64(rows), Int64(n), 2) }
            print(String(format: "quantize_rows %@ 2T: %.0f MB/s of fp32", typeName(t), Double(rows * n * 4) / dq / 1e6))
        }
    }
}
