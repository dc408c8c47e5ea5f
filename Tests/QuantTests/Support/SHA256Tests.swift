import CKernels
import CKernels.Testing
import Foundation
import Quant
import XCTest

final class SHA256Tests: XCTestCase {
    func hex(_ s: String, hardware: Bool) -> String {
        Array(s.utf8).withUnsafeBytes { SHA256.hex(of: $0, hardware: hardware) }
    }

    /// FIPS 180-4 test vectors, on the portable path and (where the CPU has it) SHA-NI.
    func testKnownVectorsOnBothPaths() {
        let cases = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ]
        for hw in [false, true] {
            for (input, expected) in cases { XCTAssertEqual(hex(input, hardware: hw), expected, "hardware \(hw): '\(input)'") }
            XCTAssertEqual(hex(String(repeating: "a", count: 1_000_000), hardware: hw),
                           "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        }
    }

    /// Streaming in odd-sized pieces equals one-shot, and both paths agree on every length 0..300.
    func testStreamingAndPathsAgree() {
        var bytes = [UInt8](repeating: 0, count: 300)
        var s: UInt32 = 7
        for i in bytes.indices { s = s &* 1_664_525 &+ 1_013_904_223; bytes[i] = UInt8(s >> 24) }
        for n in 0 ... 300 {
            let whole = bytes[0 ..< n].withUnsafeBytes { SHA256.hex(of: $0, hardware: false) }
            XCTAssertEqual(bytes[0 ..< n].withUnsafeBytes { SHA256.hex(of: $0, hardware: true) }, whole, "length \(n)")
            var h = SHA256()
            var i = 0, step = 1
            while i < n {
                let j = min(n, i + step)
                bytes[i ..< j].withUnsafeBytes { h.update($0) }
                i = j
                step = step * 3 % 67 + 1
            }
            XCTAssertEqual(h.finalize(), whole, "streamed length \(n)")
        }
        print("SHA-NI available: \(qlm_sha256_hw() == 1)")
    }
}
