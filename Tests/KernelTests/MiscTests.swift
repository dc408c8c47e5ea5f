import CKernels
import CKernels.Testing
import XCTest
import TestSupport

final class PoolTests: XCTestCase {
    final class Box { var slots = [Int](repeating: 0, count: 64); var total = 0 }

    /// Many jobs; each thread adds its index + 1 to its own slot; the sums are checked exactly.
    func testPoolStress() {
        for nt in [1, 2, 3] {
            let pool = qlm_pool_create(Int32(nt))!
            XCTAssertEqual(qlm_pool_size(pool), Int32(nt))
            let box = UnsafeMutablePointer<Int64>.allocate(capacity: 64 * 8)
            box.initialize(repeating: 0, count: 64 * 8)
            let jobs = nt <= 2 ? 50_000 : 300 // 3 threads on a 2-core machine is oversubscribed
            for _ in 0..<jobs {
                qlm_pool_run(pool, { ctx, ith, nth in
                    let p = ctx!.assumingMemoryBound(to: Int64.self)
                    p[Int(ith) * 8] += Int64(ith) + 1
                    p[Int(ith) * 8 + 1] = Int64(nth)
                }, box)
            }
            for i in 0..<nt {
                XCTAssertEqual(box[i * 8], Int64(jobs) * Int64(i + 1))
                XCTAssertEqual(box[i * 8 + 1], Int64(nt))
            }
            // a pause long enough for workers to fall asleep, then more jobs (wake-up path)
            for _ in 0..<20 {
                usleep(300)
                qlm_pool_run(pool, { ctx, ith, _ in
                    ctx!.assumingMemoryBound(to: Int64.self)[Int(ith) * 8 + 2] += 1
                }, box)
            }
            for i in 0..<nt { XCTAssertEqual(box[i * 8 + 2], 20) }
            qlm_pool_destroy(pool)
            box.deallocate()
        }
        // create/destroy churn (destroy joins its threads)
        for _ in 0..<50 { qlm_pool_destroy(qlm_pool_create(2)) }
    }

    /// Both range schedulers call fn on disjoint pieces that cover [0, total) exactly once, each
    /// piece at most `chunk` items when run in parallel, for any thread count, including when the
    /// first share's owner is slow (the others then take its chunks from the back).
    func testRangeSchedulersCoverEveryItemOnce() {
        struct Ctx { var counts: UnsafeMutablePointer<Int32>; var total: Int64; var maxPiece: Int64; var bad: Int32; var slowBelow: Int64 }
        let fn: qlm_range_fn = { raw, lo, hi in
            let c = raw!.assumingMemoryBound(to: Ctx.self)
            if lo < 0 || hi > c.pointee.total || lo >= hi { c.pointee.bad += 1; return }
            if lo < c.pointee.slowBelow { usleep(20) }
            for i in Int(lo) ..< Int(hi) { c.pointee.counts[i] += 1 }
            // pieces never overlap, so this max is only written by one thread at a time per piece;
            // a torn update could only make the check weaker, never fail it wrongly
            if hi - lo > c.pointee.maxPiece { c.pointee.maxPiece = hi - lo }
        }
        for nt in [1, 2, 3] {
            let pool = qlm_pool_create(Int32(nt))!
            defer { qlm_pool_destroy(pool) }
            for shares in [false, true] {
                for total: Int64 in [1, 2, 7, 100, 1001, 4096] {
                    for chunk: Int64 in [1, 3, 8, 64, 5000] {
                        for slow in [false, true] {
                            let counts = UnsafeMutablePointer<Int32>.allocate(capacity: Int(total))
                            counts.initialize(repeating: 0, count: Int(total))
                            defer { counts.deallocate() }
                            var ctx = Ctx(counts: counts, total: total, maxPiece: 0, bad: 0, slowBelow: slow ? total / 2 : 0)
                            if shares { qlm_pool_for_shares(pool, 1, total, chunk, fn, &ctx) }
                            else { qlm_pool_for(pool, 1, total, chunk, fn, &ctx) }
                            let label = "shares=\(shares) threads=\(nt) total=\(total) chunk=\(chunk) slow=\(slow)"
                            XCTAssertEqual(ctx.bad, 0, label)
                            XCTAssertTrue((0 ..< Int(total)).allSatisfy { counts[$0] == 1 }, label)
                            if nt == 1 || chunk >= total { // one call covers everything
                                XCTAssertEqual(ctx.maxPiece, total, label)
                            } else { // pieces of at most `chunk` (shares: also at most one share)
                                XCTAssertLessThanOrEqual(ctx.maxPiece, shares ? min(chunk, (total + Int64(nt) - 1) / Int64(nt)) : chunk, label)
                            }
                        }
                    }
                }
            }
        }
    }
}

final class CRCTests: XCTestCase {
    func testCRC32C() {
        let s = Array("123456789".utf8)
        XCTAssertEqual(qlm_crc32c(0, s, 9), 0xE306_9283)
        XCTAssertEqual(qlm_crc32c(0, nil, 0), 0)
        var rng = SplitMix64(seed: 20)
        let data = (0..<300_001).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let whole = qlm_crc32c(0, data, data.count)
        for p in supportedPaths { // scalar path uses the table implementation
            withPath(p) {
                XCTAssertEqual(qlm_crc32c(0, data, data.count), whole, pathName(p))
                for cut in [0, 1, 7, 8, 1000, 24_577, 100_003, 300_001] {
                    let a = qlm_crc32c(0, data, cut)
                    let b = data.withUnsafeBufferPointer { qlm_crc32c(a, $0.baseAddress! + cut, data.count - cut) }
                    XCTAssertEqual(b, whole, "cut \(cut)")
                }
            }
        }
        // 32 zero bytes: a published CRC-32C test vector (RFC 3720 B.4)
        XCTAssertEqual(qlm_crc32c(0, [UInt8](repeating: 0, count: 32), 32), 0x8A91_36AA)
        XCTAssertEqual(qlm_crc32c(0, [UInt8](repeating: 0xFF, count: 32), 32), 0x62A8_AB43)
    }
}

/// Ops against double-precision loops; relative tolerances a few float ulps times the op's
/// condition (sums over n: 1e-5 relative to sum of |terms|).
final class OpsTests: XCTestCase {
    /// Extremes: large |x| saturate without NaN; masked (-inf) softmax entries become exactly 0.
    func testOpsExtremes() {
        for p in supportedPaths {
            withPath(p) {
                var g: [Float] = [-100, -20, -5, 0, 5, 20, 100, 1e-30, -1e-30]
                qlm_gelu_tanh(&g, Int64(g.count))
                XCTAssertEqual(g[0], 0, accuracy: 1e-30); XCTAssertEqual(g[1], 0, accuracy: 1e-30)
                XCTAssertEqual(g[3], 0); XCTAssertEqual(g[5], 20); XCTAssertEqual(g[6], 100)
                XCTAssertEqual(g[4], 5, accuracy: 1e-5)
                XCTAssertEqual(g[7], 0.5e-30, accuracy: 1e-36)
                var s: [Float] = [-1000, -100, 0, 100, 1000]
                qlm_silu_mul(&s, [1, 1, 1, 1, 1], 5)
                XCTAssertEqual(s.map { $0.isNaN }, [false, false, false, false, false], pathName(p))
                XCTAssertEqual(s[0], 0, accuracy: 1e-30); XCTAssertEqual(s[2], 0); XCTAssertEqual(s[3], 100); XCTAssertEqual(s[4], 1000)
                var sm: [Float] = [1, -.infinity, 3, -.infinity, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -.infinity]
                qlm_softmax(&sm, Int64(sm.count))
                XCTAssertEqual(sm[1], 0); XCTAssertEqual(sm[3], 0); XCTAssertEqual(sm[17], 0)
                XCTAssertEqual(sm.reduce(0, +), 1, accuracy: 1e-6)
                XCTAssertGreaterThan(sm[2], sm[4])
            }
        }
    }

    /// argmax equals a scalar `>` scan exactly (first of ties, NaNs skipped, NaN at 0 -> 0,
    /// -0 and +0 equal, infinities) on every path, at lengths around the 16-lane blocks.
    func testArgmaxIsTheScalarScan() {
        func scan(_ x: [Float]) -> Int64 {
            var best = 0, bv = x[0]
            for i in 1 ..< x.count where x[i] > bv { bv = x[i]; best = i }
            return Int64(best)
        }
        var rng = SplitMix64(seed: 31)
        var cases: [[Float]] = [[.nan, 1, 2], [1, .nan, 3, .nan], [-0.0, 0.0, -0.0], [0.0, -0.0], [-.infinity, -.infinity],
                                [1, .infinity, .infinity], Array(repeating: 2, count: 40), [.nan]]
        for n in [1, 2, 15, 16, 17, 31, 33, 100, 50257] {
            var x = rng.normals(n).map { ($0 * 8).rounded() } // many ties
            cases.append(x)
            if n > 3 { x[n / 2] = .nan; x[n - 1] = .nan; cases.append(x) }
            var y = rng.normals(n)
            y[n - 1] = 100 // the max in the scalar tail
            cases.append(y)
        }
        for p in supportedPaths {
            withPath(p) {
                for x in cases { XCTAssertEqual(qlm_argmax_f32(x, Int64(x.count)), scan(x), "\(pathName(p)) n=\(x.count) \(x.prefix(6))") }
                XCTAssertEqual(qlm_argmax_f32([], 0), -1)
            }
        }
    }

    func testOps() {
        var rng = SplitMix64(seed: 30)
        for p in supportedPaths {
            withPath(p) {
                for n in [1, 7, 64, 172, 768, 1000] {
                    let a = rng.normals(n), b = rng.normals(n), w = rng.normals(n), bias = rng.normals(n)
                    // dot
                    var ref = 0.0, mag = 0.0
                    for i in 0..<n { ref += Double(a[i]) * Double(b[i]); mag += abs(Double(a[i]) * Double(b[i])) }
                    XCTAssertEqual(Double(qlm_dot_f32(a, b, Int64(n))), ref, accuracy: 2e-5 * mag + 1e-30)
                    // axpy / add
                    var y = b
                    qlm_axpy_f32(&y, 0.75, a, Int64(n))
                    for i in 0..<n { XCTAssertEqual(Double(y[i]), Double(b[i]) + 0.75 * Double(a[i]), accuracy: 1e-6 * (abs(Double(b[i])) + abs(Double(a[i])))) }
                    y = b
                    qlm_add_f32(&y, a, Int64(n))
                    for i in 0..<n { XCTAssertEqual(y[i], b[i] + a[i]) }
                    // rmsnorm
                    var out = [Float](repeating: 0, count: n)
                    qlm_rmsnorm(&out, a, w, Int64(n), 1e-5)
                    let ss = 1 / (a.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(n) + 1e-5).squareRoot()
                    for i in 0..<n { XCTAssertEqual(Double(out[i]), Double(a[i]) * ss * Double(w[i]), accuracy: 1e-5 * abs(Double(a[i]) * ss * Double(w[i])) + 1e-6) }
                    // layernorm (biased variance)
                    qlm_layernorm(&out, a, w, bias, Int64(n), 1e-5)
                    let mean = a.reduce(0.0) { $0 + Double($1) } / Double(n)
                    let v = a.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n)
                    for i in 0..<n {
                        let e = (Double(a[i]) - mean) / (v + 1e-5).squareRoot() * Double(w[i]) + Double(bias[i])
                        XCTAssertEqual(Double(out[i]), e, accuracy: 2e-5 * (abs(e) + 1))
                    }
                    // gelu tanh
                    var g = a.map { $0 * 3 }
                    qlm_gelu_tanh(&g, Int64(n))
                    for i in 0..<n {
                        let x = Double(a[i] * 3)
                        let e = 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
                        XCTAssertEqual(Double(g[i]), e, accuracy: 1e-5 * (abs(x) + 1))
                    }
                    // silu * b
                    var s = a.map { $0 * 4 }
                    qlm_silu_mul(&s, b, Int64(n))
                    for i in 0..<n {
                        let x = Double(a[i] * 4)
                        let e = x / (1 + exp(-x)) * Double(b[i])
                        XCTAssertEqual(Double(s[i]), e, accuracy: 1e-5 * (abs(e) + 1e-3))
                    }
                    // softmax, with a huge offset (stability)
                    var sm = a.map { $0 * 10 + 1000 }
                    qlm_softmax(&sm, Int64(n))
                    let mx = sm.isEmpty ? 0 : a.map { Double($0) * 10 }.max()!
                    let ex = a.map { exp(Double($0) * 10 - mx) }
                    let tot = ex.reduce(0, +)
                    for i in 0..<n {
                        XCTAssertTrue(sm[i].isFinite)
                        XCTAssertEqual(Double(sm[i]), ex[i] / tot, accuracy: 1e-4 * ex[i] / tot + 1e-7)
                    }
                }
            }
        }
    }
}
