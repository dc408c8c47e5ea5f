import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

/// The layer loader's O_DIRECT item reads (`TensorReader.readDirect`), whole and cut into pieces
/// read at once by helper threads (QUANTLM_STREAM_PIECES): the same bytes as the file in every
/// case, including a span whose last block runs past the file's end (read short, then buffered).
final class TensorReaderTests: XCTestCase {
    func testSplitDirectReadsMatchTheFile() throws {
        let a = MemoryPlan.directAlignment
        // 300 blocks and a 1,234-byte tail: the last block is partial.
        var rng = SplitMix64(seed: 29)
        let bytes = (0 ..< 300 * a + 1234).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let url = TestFiles.tempRoot.appendingPathComponent("tensor-reader-\(UInt32.random(in: 0 ... .max)).bin")
        try Data(bytes).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        // (aligned start, aligned length, bytes that must exist): whole blocks; one block (never
        // cut); three blocks cut eight ways (three pieces); the file's end inside the last block.
        let cases: [(Int, Int, Int)] = [(0, 64 * a, 64 * a), (7 * a, a, a), (10 * a, 3 * a, 3 * a),
                                        (200 * a, 101 * a, 100 * a + 1234), (0, 301 * a, bytes.count), (5 * a, 97 * a, 97 * a)]
        let dst = UnsafeMutableRawPointer.allocate(byteCount: 301 * a, alignment: a)
        defer { dst.deallocate() }
        for pieces in [1, 2, 3, 8] {
            let r = try TensorReader(path: url.path)
            r.openDirect(pieces: pieces, minPieceBytes: a)   // cut even one-block pieces (the default keeps >= 1 MiB)
            guard r.direct else {
                throw XCTSkip("\(url.path): the file system refuses O_DIRECT here; the split read cannot be checked")
            }
            XCTAssertEqual(r.directPieces, pieces)
            for (start, count, need) in cases {
                memset(dst, 0xA5, 301 * a)
                XCTAssertTrue(try r.readDirect(into: dst, range: start ..< start + count, atLeast: need))
                let got = [UInt8](UnsafeRawBufferPointer(start: dst, count: need))
                XCTAssertTrue(got == Array(bytes[start ..< start + need]), "\(pieces) pieces, range \(start) + \(count)")
            }
        }
    }

    /// The default never cuts a piece below 1 MiB: a 1.9 MiB read is one piece, 2 MiB two.
    func testNoPieceBelowTheMinimum() throws {
        let a = MemoryPlan.directAlignment, mib = 1 << 20
        var rng = SplitMix64(seed: 30)
        let bytes = (0 ..< 2 * mib + a).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let url = TestFiles.tempRoot.appendingPathComponent("tensor-reader-\(UInt32.random(in: 0 ... .max)).bin")
        try Data(bytes).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let r = try TensorReader(path: url.path)
        r.openDirect(pieces: 2)
        guard r.direct else { throw XCTSkip("\(url.path): the file system refuses O_DIRECT here") }
        let dst = UnsafeMutableRawPointer.allocate(byteCount: 2 * mib + a, alignment: a)
        defer { dst.deallocate() }
        for (count, cut) in [(2 * mib - 25 * a, 1), (2 * mib, 2), (2 * mib + a, 2)] {
            XCTAssertEqual(r.piecesFor(count), cut, "\(count) bytes")
            XCTAssertTrue(try r.readDirect(into: dst, range: 0 ..< count, atLeast: count))
            XCTAssertTrue([UInt8](UnsafeRawBufferPointer(start: dst, count: count)) == Array(bytes[0 ..< count]))
        }
    }

    func testPiecesSetting() throws {
        XCTAssertEqual(try TensorReader.directPieces([:]), TensorReader.defaultDirectPieces)
        XCTAssertEqual(try TensorReader.directPieces(["QUANTLM_STREAM_PIECES": "1"]), 1)
        XCTAssertEqual(try TensorReader.directPieces(["QUANTLM_STREAM_PIECES": "4"]), 4)
        for bad in ["0", "9", "two", "-1"] {
            XCTAssertThrowsError(try TensorReader.directPieces(["QUANTLM_STREAM_PIECES": bad])) {
                XCTAssertTrue("\($0)".contains("QUANTLM_STREAM_PIECES='\(bad)'"), "\($0)")
            }
        }
    }
}
