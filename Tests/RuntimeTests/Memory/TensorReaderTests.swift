import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

/// The layer loader's O_DIRECT item reads (`TensorReader.readDirect`), whole and cut into pieces
/// read at once by helper threads (QUANTLM_STREAM_PIECES): the same bytes as the file in every
/// case, including a span whose last block runs past the file's end (read short, then buffered).
final class TensorReaderTests: XCTestCase {
    /// A temporary file of `count` random bytes (removed after the test).
    func randomFile(_ count: Int, seed: UInt64) throws -> (bytes: [UInt8], url: URL) {
        var rng = SplitMix64(seed: seed)
        let bytes = (0 ..< count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let url = TestFiles.tempRoot.appendingPathComponent("tensor-reader-\(UInt32.random(in: 0 ... .max)).bin")
        try Data(bytes).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return (bytes, url)
    }

    func testSplitDirectReadsMatchTheFile() throws {
        let a = MemoryPlan.directAlignment
        // 300 blocks and a 1,234-byte tail: the last block is partial.
        let (bytes, url) = try randomFile(300 * a + 1234, seed: 29)
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
        let (bytes, url) = try randomFile(2 * mib + a, seed: 30)
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

    /// The layer loader's pieces: `cut` tiles the span at block boundaries, and each piece read
    /// on its own (`readDirectPiece`, as the loader threads do) gives the file's bytes, the
    /// file's end inside the last piece's last block included.
    func testPiecesReadOneByOneMatchTheFile() throws {
        let a = MemoryPlan.directAlignment
        let (bytes, url) = try randomFile(90 * a + 777, seed: 31)
        let r = try TensorReader(path: url.path)
        r.openDirect(pieces: 1)
        guard r.direct else { throw XCTSkip("\(url.path): the file system refuses O_DIRECT here") }
        let dst = UnsafeMutableRawPointer.allocate(byteCount: 91 * a, alignment: a)
        defer { dst.deallocate() }
        for (start, count, need, pieces) in [(0, 91 * a, bytes.count, 3), (4 * a, 17 * a, 17 * a, 8), (2 * a, a, a, 4), (10 * a, 81 * a, 80 * a + 777, 2)] {
            let cuts = TensorReader.cut(count, pieces: pieces, minPieceBytes: a)
            XCTAssertEqual(cuts.count, min(pieces, count / a))
            XCTAssertEqual(cuts.first?.lowerBound, 0)
            XCTAssertEqual(cuts.last?.upperBound, count)
            for (x, y) in zip(cuts, cuts.dropFirst()) {
                XCTAssertEqual(x.upperBound, y.lowerBound)
                XCTAssertEqual(x.upperBound % a, 0)
            }
            memset(dst, 0x5A, 91 * a)
            for p in cuts.reversed() {   // any order: each piece is independent
                let want = max(0, min(p.count, need - p.lowerBound))
                XCTAssertTrue(try r.readDirectPiece(into: dst + p.lowerBound, range: start + p.lowerBound ..< start + p.upperBound, atLeast: want))
            }
            XCTAssertTrue([UInt8](UnsafeRawBufferPointer(start: dst, count: need)) == Array(bytes[start ..< start + need]), "\(start) + \(count) in \(pieces)")
        }
        // The default minimum: a 1.9 MiB span is one piece, 2 MiB two, 4 MiB at most the pieces asked for.
        XCTAssertEqual(TensorReader.cut(2 * (1 << 20) - 25 * a, pieces: 3).count, 1)
        XCTAssertEqual(TensorReader.cut(2 * (1 << 20), pieces: 3).count, 2)
        XCTAssertEqual(TensorReader.cut(4 * (1 << 20), pieces: 3).count, 3)
    }

    /// Layer buffers of whole huge pages where rounding up costs at most an eighth (SmolLM2
    /// Q4_0's 1.91 MiB and Q8_0's 3.59 MiB layers, Gemma 3's 3.81 MiB), the exact size otherwise;
    /// such a buffer starts on a huge page, and reads into it give the file's bytes.
    func testHugePageBuffers() throws {
        let mib = 1 << 20, h = MemoryPlan.hugePageBytes
        XCTAssertEqual(MemoryPlan.hugeRounded(1_998_848), 2 * mib)
        XCTAssertEqual(MemoryPlan.hugeRounded(3_768_320), 4 * mib)
        XCTAssertEqual(MemoryPlan.hugeRounded(3_997_696), 4 * mib)
        XCTAssertEqual(MemoryPlan.hugeRounded(4 * mib), 4 * mib)
        XCTAssertEqual(MemoryPlan.hugeRounded(mib), mib)                 // 2 MiB would double it
        XCTAssertEqual(MemoryPlan.hugeRounded(5 * mib / 2), 5 * mib / 2)  // 4 MiB would be 60% more
        XCTAssertEqual(MemoryPlan.hugeRounded(64 << 10), 64 << 10)
        let b = MemoryPlan.allocateReadBuffer(2 * h)
        defer { b.deallocate() }
        XCTAssertEqual(Int(bitPattern: b) % h, 0)
        let small = MemoryPlan.allocateReadBuffer(3 * 4096)
        defer { small.deallocate() }
        XCTAssertEqual(Int(bitPattern: small) % MemoryPlan.directAlignment, 0)
        let (bytes, url) = try randomFile(2 * h, seed: 32)
        let r = try TensorReader(path: url.path)
        r.openDirect(pieces: 1)
        guard r.direct else { throw XCTSkip("\(url.path): the file system refuses O_DIRECT here") }
        XCTAssertTrue(try r.readDirectPiece(into: b, range: 0 ..< 2 * h, atLeast: 2 * h))
        XCTAssertTrue([UInt8](UnsafeRawBufferPointer(start: b, count: 2 * h)) == bytes)
    }

    func testPieceSizeSetting() throws {
        XCTAssertEqual(try TensorReader.minPieceBytes([:]), TensorReader.defaultMinPieceBytes)
        XCTAssertEqual(try TensorReader.minPieceBytes(["QUANTLM_STREAM_PIECE_KIB": "512"]), 512 << 10)
        XCTAssertEqual(try TensorReader.minPieceBytes(["QUANTLM_STREAM_PIECE_KIB": "4"]), 4096)
        for bad in ["0", "6", "2", "65540", "big"] {
            XCTAssertThrowsError(try TensorReader.minPieceBytes(["QUANTLM_STREAM_PIECE_KIB": bad])) {
                XCTAssertTrue("\($0)".contains("QUANTLM_STREAM_PIECE_KIB='\(bad)'"), "\($0)")
            }
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
