import CKernels
import CKernels.Testing
import Foundation
import XCTest
import TestSupport

// Type and path constants as the Int32 values the C API takes.
let tF32 = Int32(QLM_TYPE_F32.rawValue)
let tF16 = Int32(QLM_TYPE_F16.rawValue)
let tQ8_0 = Int32(QLM_TYPE_Q8_0.rawValue)
let tQ4_0 = Int32(QLM_TYPE_Q4_0.rawValue)
let tQ4_1 = Int32(QLM_TYPE_Q4_1.rawValue)
let tIQ4K16 = Int32(QLM_TYPE_IQ4_K16.rawValue)
let tIQ4K32 = Int32(QLM_TYPE_IQ4_K32.rawValue)
let tQ5_0 = Int32(QLM_TYPE_Q5_0.rawValue)
let tQ5_1 = Int32(QLM_TYPE_Q5_1.rawValue)
let tIQ4NL = Int32(QLM_TYPE_IQ4_NL.rawValue)
let tIQ4XS = Int32(QLM_TYPE_IQ4_XS.rawValue)
let tQ3K = Int32(QLM_TYPE_Q3_K.rawValue)
let tQ2K = Int32(QLM_TYPE_Q2_K.rawValue)
let ggml32Types: [Int32] = [tQ5_0, tQ5_1, tIQ4NL] // ggml's 32-weight blocks (type_q5.c, type_iq4_nl.c)
let ggmlSuperTypes: [Int32] = [tIQ4XS, tQ3K, tQ2K] // ggml's 256-weight super-blocks on q8a (qlm_sb32.h)
let allTypes: [Int32] = [tF32, tF16, tQ8_0, tQ4_0, tQ4_1, tIQ4K16, tIQ4K32] + ggml32Types + ggmlSuperTypes
let quantTypes: [Int32] = [tQ8_0, tQ4_0, tQ4_1, tIQ4K16, tIQ4K32] + ggml32Types + ggmlSuperTypes
let pScalar = Int32(QLM_PATH_SCALAR.rawValue)
let pAVX2 = Int32(QLM_PATH_AVX2.rawValue)
let pAVX512 = Int32(QLM_PATH_AVX512.rawValue)
/// Every path this CPU can run (scalar always).
let supportedPaths: [Int32] = [pScalar, pAVX2, pAVX512].filter { qlm_path_supported($0) != 0 }

func typeName(_ t: Int32) -> String { String(cString: qlm_traits(t)!.pointee.name) }
func pathName(_ p: Int32) -> String { String(cString: qlm_path_name(p)) }

/// Runs body with path p active, restoring the best path afterwards.
func withPath<T>(_ p: Int32, _ body: () throws -> T) rethrows -> T {
    qlm_set_path(p)
    defer { qlm_set_path(qlm_best_path()) }
    return try body()
}

func quantize(_ type: Int32, _ x: [Float]) -> [UInt8] {
    var out = [UInt8](repeating: 0xAA, count: qlm_row_size(type, Int64(x.count)))
    let rc = x.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBytes { qlm_quantize_row(type, xp.baseAddress, $0.baseAddress, Int64(x.count)) }
    }
    XCTAssertEqual(rc, 0)
    return out
}

func dequantize(_ type: Int32, _ q: [UInt8], _ n: Int) -> [Float] {
    var y = [Float](repeating: .nan, count: n)
    q.withUnsafeBytes { qp in y.withUnsafeMutableBufferPointer { qlm_dequantize_row(type, qp.baseAddress, $0.baseAddress, Int64(n)) } }
    return y
}

func prepareAct(_ type: Int32, _ x: [Float]) -> [UInt8] {
    var a = [UInt8](repeating: 0xAA, count: qlm_act_row_size(type, Int64(x.count)))
    x.withUnsafeBufferPointer { xp in a.withUnsafeMutableBytes { qlm_prepare_act(type, xp.baseAddress, $0.baseAddress, Int64(x.count)) } }
    return a
}

/// The float values an activation row stands for (q8a blocks decoded, or the floats themselves).
func decodeAct(_ type: Int32, _ a: [UInt8], _ n: Int) -> [Float] {
    if qlm_traits(type)!.pointee.act_type == QLM_ACT_F32 {
        return a.withUnsafeBytes { Array($0.bindMemory(to: Float.self).prefix(n)) }
    }
    return a.withUnsafeBytes { p in
        (0..<n).map { i in
            let base = (i / 32) * 40
            let d = p.load(fromByteOffset: base, as: Float.self)
            let q = Int8(bitPattern: p[base + 8 + i % 32])
            return d * Float(q)
        }
    }
}

func vecDot(_ type: Int32, _ n: Int, _ w: [UInt8], _ a: [UInt8], rowOffset: Int = 0) -> Float {
    w.withUnsafeBytes { wp in a.withUnsafeBytes { ap in qlm_vec_dot(type, Int64(n), wp.baseAddress! + rowOffset, ap.baseAddress) } }
}

/// Double-precision dot of the decoded weights and decoded activation, plus sum |terms|
/// (the scale that float-reassociation error is bounded by).
func refDot(_ w: [Float], _ a: [Float]) -> (Double, Double) {
    var s = 0.0, m = 0.0
    for i in 0..<w.count { let t = Double(w[i]) * Double(a[i]); s += t; m += abs(t) }
    return (s, m)
}
