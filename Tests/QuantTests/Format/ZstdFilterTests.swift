import CKernels
import CZstd
import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// zstd chunk filters (QZC2, docs/format.md): exact round trips for every filter, type and
/// chunking; single-chunk decode; QZC1 streams still read; header fuzzing throws.
final class ZstdFilterTests: XCTestCase {
    static let filters = ZstdFilter.allCases

    /// The C kernels alone: decode(encode(x)) == x for every filter and awkward geometries
    /// (odd code counts, head 0, head == record, one record, no records).
    func testKernelRoundTrip() {
        var rng = SplitMix64(seed: 7)
        let geometries: [(Int, Int)] = [(34, 2), (18, 2), (20, 4), (137, 9), (35, 3), (95, 7), (4, 0), (2, 0), (1, 0), (5, 2), (3, 3), (7, 0)]
        for (rec, head) in geometries {
            for records in [0, 1, 2, 3, 63, 64, 65, 130, 1001] {
                let n = rec * records
                let src = (0 ..< n).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
                for f in Self.filters {
                    var enc = [UInt8](repeating: 0, count: n), dec = [UInt8](repeating: 0xAA, count: n)
                    let rc1 = src.withUnsafeBufferPointer { s in enc.withUnsafeMutableBufferPointer { qlm_zf_encode(Int32(f.rawValue), s.baseAddress, $0.baseAddress, n, rec, head) } }
                    let rc2 = enc.withUnsafeBufferPointer { s in dec.withUnsafeMutableBufferPointer { qlm_zf_decode(Int32(f.rawValue), s.baseAddress, $0.baseAddress, n, rec, head) } }
                    XCTAssertEqual(rc1, 0); XCTAssertEqual(rc2, 0)
                    XCTAssertEqual(dec, src, "\(f) record \(rec) head \(head) records \(records)")
                    XCTAssertEqual(enc.sorted() == src.sorted() || f == .delta || f == .nibble, true, "\(f) is a permutation")
                }
            }
        }
        // Invalid parameters are refused, not obeyed.
        var b = [UInt8](repeating: 0, count: 64), o = b
        XCTAssertEqual(qlm_zf_encode(1, &b, &o, 64, 0, 0), -1)
        XCTAssertEqual(qlm_zf_encode(1, &b, &o, 64, 5, 0), -1)   // 64 % 5 != 0
        XCTAssertEqual(qlm_zf_decode(2, &b, &o, 64, 8, 9), -1)   // head > record
        XCTAssertEqual(qlm_zf_decode(99, &b, &o, 64, 8, 2), -1)
    }

    /// Every filter × every weight type × odd shapes × chunk sizes (1-row chunks, partial last
    /// chunk, one chunk): whole-tensor and chunk-by-chunk decode are bit-identical.
    func testChunkStreamRoundTrip() throws {
        var rng = SplitMix64(seed: 11)
        let shapes: [(rows: Int, n: Int)] = [(37, 172), (9, 256), (5, 768), (13, 64)]
        for type in QuantType.weightTypes {
            for (rows, n) in shapes where type.allows(rowLength: n) {
                let bytes = quantize(type, rng.floats(rows * n, scale: 2), rows: rows, n: n)
                let t0 = TensorInfo(name: "w", type: type, encoding: .zstd, shape: [rows, n])
                for f in Self.filters {
                    let spec = ZstdFilterSpec.make(f, type: type, rowLength: n)
                    guard f == .none || spec.isValid(rowBytes: t0.rowBytes) else { XCTFail("\(f) \(type) \(n)"); continue }
                    for chunkBytes in [1, t0.rowBytes * 3 + 1, 4096, 1 << 20] {
                        let blob = try bytes.withUnsafeBytes {
                            try ZstdChunks.compress($0, rows: rows, rowBytes: t0.rowBytes, level: 3, chunkBytes: chunkBytes, filter: spec)
                        }
                        XCTAssertEqual(Array(blob[0 ..< 4]), Array((f == .none ? "QZC1" : "QZC2").utf8))
                        var t = t0
                        t.storedLength = blob.count
                        try blob.withUnsafeBytes { stored in
                            let idx = try ZstdChunks.index(of: t, stored: stored, file: "<t>")
                            XCTAssertEqual(idx.filter, spec)
                            var out = [UInt8](repeating: 0, count: bytes.count)
                            try out.withUnsafeMutableBytes { try ZstdChunks.decompressAll(t, stored: stored, into: $0, file: "<t>") }
                            XCTAssertEqual(out, bytes, "\(type) \(f) rows \(rows) n \(n) chunk \(chunkBytes)")
                            let dctx = ZSTD_createDCtx()!
                            defer { ZSTD_freeDCtx(dctx) }
                            for c in 0 ..< idx.chunks.count {
                                let r = idx.rowRange(ofChunk: c, rows: rows)
                                var part = [UInt8](repeating: 0, count: r.count * t.rowBytes)
                                try part.withUnsafeMutableBytes {
                                    try ZstdChunks.decompress(chunk: c, of: t, index: idx, stored: stored, into: $0, dctx: dctx, file: "<t>")
                                }
                                XCTAssertEqual(part, Array(bytes[r.lowerBound * t.rowBytes ..< r.upperBound * t.rowBytes]), "\(type) \(f) chunk \(c)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// auto picks one of the type's candidates, and its stream round-trips.
    func testAutoChoosesACandidate() throws {
        var rng = SplitMix64(seed: 3)
        for type in QuantType.weightTypes + [.u8] {
            let rows = 40, n = type == .u8 ? 1000 : 256
            let bytes = type == .u8 ? (0 ..< rows * n).map { _ in UInt8.random(in: 0 ... 30, using: &rng) }
                                    : quantize(type, rng.floats(rows * n), rows: rows, n: n)
            let spec = try bytes.withUnsafeBytes {
                try ZstdFilterChoice.auto.resolve($0, type: type, rows: rows, rowLength: n, level: 3, chunkBytes: 4096)
            }
            XCTAssertTrue(ZstdFilterSpec.candidates(type: type).contains(spec.filter), "\(type): \(spec)")
            // A fixed filter the type cannot use falls back to none.
            let fb = try bytes.withUnsafeBytes { try ZstdFilterChoice.fixed(.nibble).resolve($0, type: type, rows: rows, rowLength: n, level: 3, chunkBytes: 4096) }
            if !ZstdFilterSpec.candidates(type: type).contains(.nibble) { XCTAssertEqual(fb, .none) }
        }
        XCTAssertEqual(ZstdFilterChoice(name: "auto"), .auto)
        XCTAssertEqual(ZstdFilterChoice(name: "Shuffle"), .fixed(.shuffle))
        XCTAssertNil(ZstdFilterChoice(name: "bogus"))
    }

    /// Mutating the QZC2 header's filter fields (and truncating the header) throws or decodes,
    /// never crashes; decoded output of an accepted mutation has the right size.
    func testHeaderFuzzThrows() throws {
        var rng = SplitMix64(seed: 5)
        let rows = 21, n = 64, type = QuantType.q4_1
        let bytes = quantize(type, rng.floats(rows * n), rows: rows, n: n)
        let spec = ZstdFilterSpec.make(.delta, type: type, rowLength: n)
        let good = try bytes.withUnsafeBytes { try ZstdChunks.compress($0, rows: rows, rowBytes: type.rowSize(n), level: 3, chunkBytes: 200, filter: spec) }
        let t0 = TensorInfo(name: "w", type: type, encoding: .zstd, shape: [rows, n], storedLength: good.count)
        func attempt(_ blob: [UInt8]) {
            var t = t0
            t.storedLength = blob.count
            blob.withUnsafeBytes { stored in
                guard let idx = try? ZstdChunks.index(of: t, stored: stored, file: "<f>") else { return }
                var out = [UInt8](repeating: 0, count: bytes.count)
                _ = try? out.withUnsafeMutableBytes { try ZstdChunks.decompressAll(t, stored: stored, into: $0, file: "<f>") }
                XCTAssertTrue(idx.filter.isValid(rowBytes: t.rowBytes) || idx.filter.filter == .none)
            }
        }
        var accepted = 0
        for pos in 4 ..< 32 {
            for v: UInt8 in [0, 1, 2, 3, 4, 5, 6, 7, 9, 20, 0x7f, 0x80, 0xff] {
                var b = good
                b[pos] = v
                attempt(b)
                var t = t0
                t.storedLength = b.count
                if (try? b.withUnsafeBytes { try ZstdChunks.index(of: t, stored: $0, file: "<f>") }) != nil { accepted += 1 }
            }
        }
        for len in 0 ..< 40 { attempt(Array(good.prefix(len))) }
        for _ in 0 ..< 300 {
            var b = good
            for _ in 0 ..< 3 { b[Int.random(in: 4 ..< 32, using: &rng)] = UInt8.random(in: 0 ... 255, using: &rng) }
            attempt(b)
        }
        // Specific refusals: unknown filter, filter 0 in a QZC2 stream, reserved byte, bad geometry.
        for (pos, v, why) in [(24, 9, "unknown zstd filter"), (24, 0, "unknown zstd filter"), (25, 1, "invalid zstd filter"),
                              (26, 21, "invalid zstd filter"), (28, 3, "invalid zstd filter"), (28, 0, "invalid zstd filter")] {
            var b = good
            b[pos] = UInt8(v)
            if pos == 28 { b[29] = 0; b[30] = 0; b[31] = 0 }
            XCTAssertThrowsError(try b.withUnsafeBytes { try ZstdChunks.index(of: t0, stored: $0, file: "<f>") }) { e in
                XCTAssertTrue("\(e)".contains(why), "\(pos)=\(v): \(e)")
            }
        }
        XCTAssertGreaterThan(accepted, 0)
    }

    /// An unfiltered stream is byte-for-byte the version-1 QZC1 layout, and a QZC1 stream
    /// written by hand (header, index, plain zstd frames) still decodes.
    func testQZC1StillReads() throws {
        var rng = SplitMix64(seed: 9)
        let rows = 10, n = 64, type = QuantType.q8_0, rowBytes = type.rowSize(n)
        let bytes = quantize(type, rng.floats(rows * n), rows: rows, n: n)
        // Hand-built QZC1: 2 chunks of 5 rows.
        var frames: [[UInt8]] = []
        for c in 0 ..< 2 {
            let src = Array(bytes[c * 5 * rowBytes ..< (c + 1) * 5 * rowBytes])
            var dst = [UInt8](repeating: 0, count: ZSTD_compressBound(src.count))
            let k = ZSTD_compress(&dst, dst.count, src, src.count, 1)
            frames.append(Array(dst[0 ..< k]))
        }
        var blob = Array("QZC1".utf8)
        func le(_ v: UInt64, _ k: Int) { for i in 0 ..< k { blob.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        le(2, 4); le(5, 8); le(UInt64(rowBytes), 8)
        var off = 24 + 2 * 16
        for f in frames { le(UInt64(off), 8); le(UInt64(f.count), 8); off += f.count }
        for f in frames { blob += f }
        let t = TensorInfo(name: "w", type: type, encoding: .zstd, shape: [rows, n], storedLength: blob.count)
        var out = [UInt8](repeating: 0, count: bytes.count)
        try blob.withUnsafeBytes { s in try out.withUnsafeMutableBytes { try ZstdChunks.decompressAll(t, stored: s, into: $0, file: "<f>") } }
        XCTAssertEqual(out, bytes)
        let mine = try bytes.withUnsafeBytes { try ZstdChunks.compress($0, rows: rows, rowBytes: rowBytes, level: 1, chunkBytes: 5 * rowBytes) }
        XCTAssertEqual(Array(mine[0 ..< 24]), Array(blob[0 ..< 24]), "filter none writes the QZC1 header")
    }

    /// The converter's default (planes) writes QZC2 matrices whose decoded bytes equal the
    /// unfiltered (--zstd-filter none, QZC1) conversion's, tensor for tensor.
    func testConverterDefaultFilterIsExact() throws {
        let dir = try makeTempDir(self)
        for type in [QuantType.q8_0, .q4_1, .iq4_k16] {
            let tok = try Stories.tokenizer()
            let ckpt = try Checkpoint.open(try Stories.model(), tokenizer: tok)
            var files: [QLMFile] = []
            for choice in [ZstdFilterChoice.fixed(.none), ConvertOptions(policy: QuantPolicy(defaultType: type)).zstdFilter, .auto] {
                var opts = ConvertOptions(policy: QuantPolicy(defaultType: type), zstdLevel: 3, chunkBytes: 4096, threads: 2)
                opts.zstdFilter = choice
                let out = dir.appendingPathComponent("\(type.name)-\(choice).qlm")
                let s = try Converter.convert(ckpt, tokenizer: try Stories.payload(tok), options: opts, to: out)
                if choice == .fixed(.none) { XCTAssertEqual(s.zstdFilters.keys.sorted(), ["none"]) }
                let f = try QLMFile(out)
                XCTAssertEqual(f.metadata.quantization.zstdFilter, choice.description)
                files.append(f)
            }
            XCTAssertEqual(ConvertOptions(policy: QuantPolicy(defaultType: type)).zstdFilter, .fixed(.planes))
            var filtered = 0
            for t in files[0].tensors where t.encoding == .zstd {
                let plain = try ZstdChunks.index(of: t, stored: files[0].stored(t), file: files[0].path)
                XCTAssertEqual(plain.filter, .none)
                let a = try files[0].load(t.name)
                for f in files.dropFirst() {
                    let u = try f.info(t.name)
                    if try ZstdChunks.index(of: u, stored: f.stored(u), file: f.path).filter != .none { filtered += 1 }
                    let b = try f.load(t.name)
                    withExtendedLifetime((a, b)) { XCTAssertTrue([UInt8](a.bytes) == [UInt8](b.bytes), "\(type) \(t.name)") }
                    try f.verify(u)
                }
            }
            XCTAssertGreaterThan(filtered, 0, "\(type): some matrices are filtered")
        }
    }
}
