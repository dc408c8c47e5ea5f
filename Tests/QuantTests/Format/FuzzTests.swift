import CKernels
import Foundation
import Quant
import TestSupport
import XCTest

/// Test 9: deterministic mutation fuzzing of the .qlm and safetensors readers. Every mutated
/// file must either open (and then verify/load without crashing) or throw a QuantError; a
/// crash kills the whole test process, so a failure here shows up as a crashed run.
final class FuzzTests: XCTestCase {
    private struct Layout {
        var metaLen = 0, tableOff = 0, tableLen = 0, dataOff = 0
        var tensors: [TensorInfo] = []
        var chunkIndexes: [(lo: Int, hi: Int)] = [] // byte ranges of zstd chunk indexes
    }

    private func layout(_ url: URL) throws -> Layout {
        let f = try QLMFile(url)
        var l = Layout()
        let b = try readBytes(url)
        func u32(_ o: Int) -> Int { Int(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) }) }
        func u64(_ o: Int) -> Int { Int(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt64.self) }) }
        l.metaLen = u32(24); l.tableOff = u64(32); l.tableLen = u32(40); l.dataOff = u64(48)
        l.tensors = f.tensors
        for t in f.tensors where t.encoding == .zstd {
            let n = u32(t.offset + 4)
            l.chunkIndexes.append((t.offset, t.offset + 24 + 16 * n))
        }
        return l
    }

    private static func put64(_ b: inout [UInt8], _ o: Int, _ v: UInt64) {
        withUnsafeBytes(of: v.littleEndian) { for i in 0 ..< 8 where o + i < b.count { b[o + i] = $0[i] } }
    }
    private static func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { for i in 0 ..< 4 where o + i < b.count { b[o + i] = $0[i] } }
    }
    private static func fixCRC(_ b: inout [UInt8], _ lo: Int, _ len: Int, at field: Int) {
        guard lo >= 0, len >= 0, lo + len <= b.count else { return }
        let crc = b.withUnsafeBytes { qlm_crc32c(0, $0.baseAddress! + lo, len) }
        put32(&b, field, crc)
    }

    /// Opens, verifies and loads; returns (opened, tensors failing verify).
    @discardableResult
    private func exercise(_ url: URL) -> (Bool, Set<String>) {
        guard let f = try? QLMFile(url) else { return (false, []) }
        var failed = Set<String>()
        for t in f.tensors {
            do { try f.verify(t) } catch { failed.insert(t.name) }
            if let d = try? f.load(t.name) {
                withExtendedLifetime(d) { _ = d.bytes.count }
            }
        }
        return (true, failed)
    }

    func testQLMReaderFuzz() throws {
        let dir = try makeTempDir(self, "fuzzqlm")
        let good = dir.appendingPathComponent("good.qlm")
        try Stories.convert(to: good, type: .q4_0, zstd: 3, chunkBytes: 4096)
        let base = try readBytes(good)
        let L = try layout(good)
        let mutated = dir.appendingPathComponent("m.qlm")
        var rng = SplitMix64(seed: 0x5EED)
        let start = Date()
        var stats = [String: (cases: Int, opened: Int)]()
        var dataFlips = 0
        let iterations = 1200
        for it in 0 ..< iterations {
            var b = base
            let kind = it % 9
            var label = ""
            var flippedTensor: String?
            let fixTable = Bool.random(using: &rng)
            switch kind {
            case 0:
                label = "truncate"
                b = Array(b.prefix(Int.random(in: 0 ..< b.count, using: &rng)))
            case 1:
                label = "header flip"
                for _ in 0 ..< Int.random(in: 1 ... 3, using: &rng) { b[Int.random(in: 0 ..< 64, using: &rng)] ^= UInt8.random(in: 1 ... 255, using: &rng) }
            case 2:
                label = "metadata flip"
                b[64 + Int.random(in: 0 ..< L.metaLen, using: &rng)] ^= UInt8.random(in: 1 ... 255, using: &rng)
                if fixTable { Self.fixCRC(&b, 64, L.metaLen, at: 28) }
            case 3:
                label = "table flip"
                for _ in 0 ..< Int.random(in: 1 ... 4, using: &rng) {
                    b[L.tableOff + Int.random(in: 0 ..< L.tableLen, using: &rng)] ^= UInt8.random(in: 1 ... 255, using: &rng)
                }
                if fixTable { Self.fixCRC(&b, L.tableOff, L.tableLen, at: 44) }
            case 4:
                label = "table absurd value"
                let ti = Int.random(in: 0 ..< L.tensors.count, using: &rng)
                let rec = L.tableOff + ti * 128
                let t = L.tensors[ti]
                let other = L.tensors[Int.random(in: 0 ..< L.tensors.count, using: &rng)]
                let absurd: [UInt64] = [0, 1, UInt64(b.count), UInt64(b.count + 64), UInt64(Int.max), UInt64.max, 1 << 31, 1 << 32, 1 << 40,
                                        UInt64(other.offset), UInt64(other.offset + 64), UInt64(t.offset + 1), UInt64(t.storedLength + 64)]
                let v = absurd.randomElement(using: &rng)!
                switch Int.random(in: 0 ..< 9, using: &rng) {
                case 0: Self.put64(&b, rec + 72 + 8 * Int.random(in: 0 ..< 4, using: &rng), v) // a shape dim
                case 1: Self.put64(&b, rec + 104, v) // offset
                case 2: Self.put64(&b, rec + 112, v) // stored length
                case 3: Self.put64(&b, rec + 120, v) // raw length
                case 4: b[rec + 64] = [5, 30, 32, 255].randomElement(using: &rng)! // type
                case 5: b[rec + 65] = [1, 2, 255].randomElement(using: &rng)! // encoding
                case 6: b[rec + 66] = [0, 5, 255].randomElement(using: &rng)! // ndim
                case 7: for i in 0 ..< 64 { b[rec + i] = 0x41 } // name without NUL
                default:
                    // A huge shape with a matching raw length: rows × rowBytes in the terabytes
                    // (the lengths that overflow-check and allocation must survive).
                    Self.put64(&b, rec + 72, 1 << 31)
                    b[rec + 66] = 2
                    Self.put64(&b, rec + 80, 1 << 9)
                    let rawLen = (1 << 31) * t.type.rowSize(1 << 9)
                    Self.put64(&b, rec + 120, UInt64(rawLen))
                    if t.encoding == .raw { Self.put64(&b, rec + 112, UInt64(rawLen)) }
                }
                label += fixTable ? " (crc fixed)" : ""
                if fixTable { Self.fixCRC(&b, L.tableOff, L.tableLen, at: 44) }
            case 5:
                label = "header absurd value"
                let fields = [(8, 4), (12, 4), (16, 8), (24, 4), (32, 8), (40, 4), (48, 8), (56, 8)]
                let (o, w) = fields.randomElement(using: &rng)!
                let v = [0, 1, 63, 64, UInt64(b.count), UInt64(b.count + 1), UInt64(UInt32.max), UInt64.max, UInt64(L.dataOff + 64)].randomElement(using: &rng)!
                if w == 4 { Self.put32(&b, o, UInt32(truncatingIfNeeded: v)) } else { Self.put64(&b, o, v) }
            case 6:
                label = "chunk index flip"
                let r = L.chunkIndexes.randomElement(using: &rng)!
                let o = Int.random(in: r.lo ..< r.hi, using: &rng)
                b[o] ^= UInt8.random(in: 1 ... 255, using: &rng)
                flippedTensor = L.tensors.first { $0.offset <= o && o < $0.offset + $0.storedLength }?.name
                if Bool.random(using: &rng) { // also an absurd chunk field value
                    let c = Int.random(in: r.lo ..< r.hi - 8, using: &rng)
                    Self.put64(&b, c, [0, UInt64.max, 1 << 40, UInt64(b.count)].randomElement(using: &rng)!)
                }
            default:
                label = "data flip"
                let t = L.tensors.randomElement(using: &rng)!
                let o = t.offset + Int.random(in: 0 ..< t.storedLength, using: &rng)
                b[o] ^= UInt8(1) << UInt8.random(in: 0 ..< 8, using: &rng)
                flippedTensor = t.name
                dataFlips += 1
            }
            try Data(b).write(to: mutated)
            let (opened, failed) = exercise(mutated)
            let key = String(label.prefix { $0 != "(" }).trimmingCharacters(in: .whitespaces)
            stats[key, default: (0, 0)].cases += 1
            if opened { stats[key, default: (0, 0)].opened += 1 }
            if let name = flippedTensor {
                // Header, metadata and table are untouched: the file must open, and verify must catch it.
                XCTAssertTrue(opened, "iteration \(it): \(label) in \(name) made the file unreadable")
                XCTAssertEqual(failed, [name], "iteration \(it): \(label) in \(name) not caught by verify exactly")
            }
            if kind == 0, b.count < base.count { XCTAssertFalse(opened, "iteration \(it): truncation to \(b.count) opened") }
        }
        let secs = Date().timeIntervalSince(start)
        for (k, v) in stats.sorted(by: { $0.key < $1.key }) { print("fuzz .qlm \(k): \(v.cases) cases, \(v.opened) opened") }
        print(String(format: "fuzz .qlm: %d mutations (%d data flips) in %.1f s", iterations, dataFlips, secs))
        // About 6 s on an idle 2-core machine; 47 s under ASan + UBSan (debug, load ~20): the
        // sanitized build gets 4x (TestSupport's Sanitized.seconds).
        XCTAssertLessThan(secs, Sanitized.seconds(30), "fuzzing should stay bounded (about 6 s on an idle 2-core machine)")
    }

    /// A regression case: a zstd tensor whose (checksummed) table claims terabytes of raw
    /// data must throw, not abort the process on allocation.
    func testHugeZstdTensorThrows() throws {
        let dir = try makeTempDir(self, "fuzzhuge")
        let good = dir.appendingPathComponent("good.qlm")
        try Stories.convert(to: good, type: .q4_0, zstd: 3, chunkBytes: 4096)
        let L = try layout(good)
        var b = try readBytes(good)
        let ti = L.tensors.firstIndex { $0.name == "tok_embeddings.weight" }!
        XCTAssertEqual(L.tensors[ti].encoding, .zstd)
        let rec = L.tableOff + ti * 128
        Self.put64(&b, rec + 72, 1 << 31)        // rows
        Self.put64(&b, rec + 80, 1 << 9)         // n
        Self.put64(&b, rec + 120, UInt64((1 << 31) * QuantType.q4_0.rowSize(1 << 9))) // 309 GB raw
        Self.fixCRC(&b, L.tableOff, L.tableLen, at: 44)
        let u = dir.appendingPathComponent("huge.qlm")
        try Data(b).write(to: u)
        let f = try QLMFile(u)  // structurally fine: the lengths fit the shape
        assertQuantError([u.path, "tok_embeddings.weight"]) { _ = try f.load("tok_embeddings.weight") }
    }

    func testSafetensorsReaderFuzz() throws {
        let dir = try makeTempDir(self, "fuzzst")
        var rng = SplitMix64(seed: 42)
        let tensors = [
            STTensor(name: "a", dtype: "F32", shape: [4, 8], data: bytesOf(rng.floats(32))),
            STTensor(name: "b", dtype: "F16", shape: [16], data: [UInt8](repeating: 0x3c, count: 32)),
            STTensor(name: "c", dtype: "BF16", shape: [2, 2, 2], data: [UInt8](repeating: 0x3f, count: 16)),
        ]
        let base = try safetensorsBytes(tensors)
        let headerLen = Int(base.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let u = dir.appendingPathComponent("m.safetensors")
        let absurd: [Any] = [-1, 1e30, -1e30, 1.5, 1 << 62, Int64.max, UInt64.max, "7", NSNull(), true, [1, 2], ["x": 1], 0, 1 << 33]
        var opened = 0
        let start = Date()
        let iterations = 1200
        for it in 0 ..< iterations {
            var b = base
            switch it % 4 {
            case 0: b = Array(b.prefix(Int.random(in: 0 ..< b.count, using: &rng)))
            case 1:
                for _ in 0 ..< Int.random(in: 1 ... 3, using: &rng) {
                    b[Int.random(in: 0 ..< 8 + headerLen, using: &rng)] ^= UInt8.random(in: 1 ... 255, using: &rng)
                }
            case 2:
                let name = ["a", "b", "c"].randomElement(using: &rng)!
                let v = absurd.randomElement(using: &rng)!
                let which = Int.random(in: 0 ..< 5, using: &rng)
                b = try safetensorsBytes(tensors) { h in
                    var e = h[name] as! [String: Any]
                    switch which {
                    case 0: e["shape"] = [v]
                    case 1: e["shape"] = [4, v]
                    case 2: e["data_offsets"] = [0, v]
                    case 3: e["data_offsets"] = [v, 16]
                    default: e["dtype"] = v
                    }
                    h[name] = e
                }
            default:
                // Overlaps and out-of-file ranges built from valid numbers.
                let lo = Int.random(in: 0 ... 100, using: &rng), len = [0, 16, 32, 64, 200].randomElement(using: &rng)!
                b = try safetensorsBytes(tensors) { h in
                    var e = h["c"] as! [String: Any]
                    e["data_offsets"] = [lo, lo + len]
                    e["shape"] = [len / 2]
                    h["c"] = e
                }
            }
            try Data(b).write(to: u)
            do {
                let f = try SafetensorsFile(u)
                opened += 1
                for (_, e) in f.entries { XCTAssertEqual(e.bytes.count, e.shape.reduce(1, *) * e.dtype.size) }
            } catch let e as QuantError {
                XCTAssertTrue(e.file == u.path, "error must name the file: \(e)")
            } catch {
                XCTFail("iteration \(it): non-QuantError \(error)")
            }
        }
        let secs = Date().timeIntervalSince(start)
        print(String(format: "fuzz safetensors: %d mutations, %d opened, %.1f s", iterations, opened, secs))
        XCTAssertLessThan(secs, 20, "about 2 s on an idle 2-core machine")
    }
}
