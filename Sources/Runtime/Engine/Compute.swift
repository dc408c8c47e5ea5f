import CKernels
import Foundation
import Quant

/// The compute context: the persistent thread pool and the activation scratch the fused
/// products need. Everything is allocated once; nothing here allocates per token.
package final class Compute {
    package let threads: Int
    let pool: OpaquePointer?
    private var act: UnsafeMutableRawPointer
    private let actBytes: Int
    /// Called by `linear` with the matrix, its input rows (T rows of `cols` floats) and T, before
    /// the product (calibration collects each matrix's input statistics this way); returning true
    /// skips the product (its output is left unwritten: calibration's all-position logits, whose
    /// input it needs but whose values it never reads). nil by default.
    package var observer: ((Matrix, UnsafePointer<Float>, Int) -> Bool)?
    /// Time accounting for `run bench`'s per-token breakdown: when on, `linear` (activation
    /// quantization, the pool dispatch and the product) and attention add their wall time here.
    /// Two clock reads per call; off by default.
    package var timing = false
    package var linearNanos: UInt64 = 0
    package var attentionNanos: UInt64 = 0
    @inline(__always) static func clock() -> UInt64 { BenchClock.nanoseconds() }

    /// - Parameters:
    ///   - maxCols: the widest input any product will see.
    ///   - maxBatch: the most rows (tokens) one product will see.
    package init(threads: Int, maxCols: Int, maxBatch: Int) {
        self.threads = max(1, threads)
        pool = self.threads > 1 ? qlm_pool_create(Int32(self.threads)) : nil
        actBytes = Compute.scratchBytes(maxCols: maxCols, maxBatch: maxBatch)
        act = .allocate(byteCount: actBytes, alignment: 64)
    }

    /// Bytes of activation scratch for inputs up to `maxCols` wide, `maxBatch` rows.
    package static func scratchBytes(maxCols: Int, maxBatch: Int) -> Int {
        QuantType.weightTypes.map { Int(qlm_act_row_size($0.rawValue, Int64(maxCols))) }.max()! * maxBatch
    }

    deinit {
        if let pool { qlm_pool_destroy(pool) }
        act.deallocate()
    }

    /// out[t, 0..<rows] = W · x[t] (+ bias) for t in 0..<T; x rows are W.cols apart, out rows `ldOut` apart.
    @inline(__always)
    package func linear(_ w: Matrix, _ x: UnsafePointer<Float>, T: Int, out: UnsafeMutablePointer<Float>,
                       ldOut: Int? = nil, bias: UnsafePointer<Float>? = nil) {
        let ld = ldOut ?? w.rows
        let t0 = timing ? Compute.clock() : 0
        defer { if timing { linearNanos &+= Compute.clock() &- t0 } }
        if let observer, observer(w, x, T) { return }
        if T == 1 {
            qlm_matvec(pool, w.type.rawValue, w.data, Int64(w.rows), Int64(w.cols), x, out, act)
        } else {
            qlm_matmul(pool, w.type.rawValue, w.data, Int64(w.rows), Int64(w.cols), x, Int64(T), out, Int64(ld), act)
        }
        if let bias {
            for t in 0 ..< T { qlm_add_f32(out + t * ld, bias, Int64(w.rows)) }
        }
    }

    /// Looks up one embedding row (any stored type) as floats.
    @inline(__always)
    package func embedding(_ m: Matrix, row: Int, into out: UnsafeMutablePointer<Float>) {
        qlm_get_row(m.type.rawValue, m.data, Int64(m.rows), Int64(m.cols), Int64(row), out)
    }
}
