import CKernels
import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// Mutation fuzzing of the GGUF parser and reader: truncations, bit flips in the header,
/// metadata and tensor infos, and lying counts / lengths / dims / types / offsets. Every case
/// must throw a QuantError naming the file or succeed (and then dequantize every tensor); a
/// crash kills the test process. Memory stays bounded: counts are checked against the bytes
/// left before anything is allocated (resident growth over all cases is asserted).
final class GGUFFuzzTests: XCTestCase {
    func testGGUFReaderFuzz() throws {
        let dir = try makeTempDir(self, "ggfuzz")
        var g = GGUFBuilder.tinyLlama(seed: 3)
        let (base, fields, infoStart, dataStart) = g.buildForFuzzing()
        let u = dir.appendingPathComponent("m.gguf")
        var rng = SplitMix64(seed: 0x6667)
        var rssBefore: Int64 = 0, rssAfter: Int64 = 0, fileRes: Int64 = 0
        _ = qlm_statm(&rssBefore, &fileRes)
        var opened = 0, parsed = 0, maxFloats = 0
        var kept = Set<QuantType>() // types whose blocks passed through and decoded the same
        let lies: [UInt64] = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 31, 255, 256, 1 << 16, 1 << 31, 1 << 32, 1 << 40, 1 << 48,
                              UInt64(base.count), UInt64(base.count - dataStart), UInt64(Int64.max), UInt64.max, UInt64.max - 7]
        let start = Date()
        let iterations = 1500
        for it in 0 ..< iterations {
            var b = base
            switch it % 5 {
            case 0: b = Array(b.prefix(Int.random(in: 0 ..< b.count, using: &rng)))
            case 1: for _ in 0 ..< Int.random(in: 1 ... 3, using: &rng) { b[Int.random(in: 0 ..< 24, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0 ..< 8, using: &rng) }
            case 2: for _ in 0 ..< Int.random(in: 1 ... 4, using: &rng) { b[Int.random(in: 24 ..< infoStart, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0 ..< 8, using: &rng) }
            case 3: for _ in 0 ..< Int.random(in: 1 ... 4, using: &rng) { b[Int.random(in: infoStart ..< dataStart, using: &rng)] ^= UInt8.random(in: 1 ... 255, using: &rng) }
            default:
                let (o, w, _) = fields.randomElement(using: &rng)!
                let v = lies.randomElement(using: &rng)!
                withUnsafeBytes(of: v.littleEndian) { for i in 0 ..< w { b[o + i] = $0[i] } }
            }
            try Data(b).write(to: u)
            do {
                let f = try GGUFFile(u)
                parsed += 1
                for t in f.tensors { XCTAssertLessThanOrEqual(f.dataOffset + t.offset + t.byteCount, b.count) }
                let ck = try GGUFReader.read(u, tokenizer: nil, formats: Architectures.formats)
                opened += 1
                for t in ck.tensors {
                    maxFloats = max(maxFloats, t.elementCount)
                    var y = [Float](repeating: 0, count: t.elementCount)
                    t.readFloats(into: &y)
                    // --type keep's pass-through: QuantLM's own row of the native type reads the
                    // very bytes to the same floats as the ggml dequantizer did.
                    if let q = assertPassthroughDecodesSame(t, y, "iteration \(it)") { kept.insert(q) }
                }
            } catch let e as QuantError {
                XCTAssertEqual(e.file, u.path, "iteration \(it): error must name the file: \(e)")
                XCTAssertFalse(e.message.contains("\n"), "one-line errors")
            } catch {
                XCTFail("iteration \(it): non-QuantError \(error)")
            }
        }
        _ = qlm_statm(&rssAfter, &fileRes)
        let secs = Date().timeIntervalSince(start)
        print(String(format: "fuzz gguf: %d mutations, %d parsed, %d opened as llama, largest tensor %d floats, RSS %+.1f MiB, %.1f s",
                     iterations, parsed, opened, maxFloats, Double(rssAfter - rssBefore) / 1048576, secs))
        XCTAssertGreaterThan(opened, 0)
        XCTAssertTrue(Set<QuantType>([.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .iq4_nl]).isSubset(of: kept), "kept: \(kept)")
        XCTAssertLessThan(maxFloats, 1 << 20, "a tensor that passed the checks is bounded by the file's bytes")
        // 64 MiB plain; under ASan freed blocks stay resident in its quarantine (126 MiB measured),
        // so the sanitized bound adds the quarantine's 256 MiB (Sanitized.residentGrowth).
        XCTAssertLessThan(rssAfter - rssBefore, Sanitized.residentGrowth(64 << 20), "resident memory must not grow by absurd allocations")
        XCTAssertLessThan(secs, Sanitized.seconds(60))
    }
}
