import CKernels
import Foundation

/// SHA-256, for the provenance hashes in a file's metadata (C: SHA-NI where the CPU has it).
package struct SHA256 {
    private var ctx = qlm_sha256_ctx()

    package init(hardware: Bool = true) { qlm_sha256_init(&ctx, hardware ? 1 : 0) }

    package mutating func update(_ data: UnsafeRawBufferPointer) {
        guard let p = data.baseAddress else { return }
        qlm_sha256_update(&ctx, p, data.count)
    }

    package mutating func finalize() -> String {
        var out = [UInt8](repeating: 0, count: 32)
        qlm_sha256_final(&ctx, &out)
        return out.map { String(format: "%02x", $0) }.joined()
    }

    package static func hex(of data: UnsafeRawBufferPointer, hardware: Bool = true) -> String {
        var s = SHA256(hardware: hardware)
        s.update(data)
        return s.finalize()
    }

    package static func hex(ofFile url: URL) throws -> String {
        let m = try MappedFile(url)
        return hex(of: m.bytes)
    }
}
