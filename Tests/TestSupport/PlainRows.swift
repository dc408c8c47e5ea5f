import CKernels
import Foundation
import Quant

/// A stored tensor's bytes in its plain row layout: a row-grouped tensor (q5_0x8, which
/// `--type keep` makes of a GGUF's q5_0) unpacked into its plain type's rows, others as stored.
/// Tests of `--type keep` compare these with the GGUF's bytes.
package func plainRowBytes(_ bytes: UnsafeRawBufferPointer, _ info: TensorInfo) -> [UInt8] {
    var b = [UInt8](bytes)
    let rc = b.withUnsafeMutableBytes { qlm_unpack_rows(info.type.rawValue, $0.baseAddress, Int64(info.rows), Int64(info.rowLength)) }
    precondition(rc == 0, "out of memory unpacking \(info.name)")
    return b
}
