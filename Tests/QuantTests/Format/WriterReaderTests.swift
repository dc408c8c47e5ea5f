import CKernels
import CZstd
import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// ModelMetadata has no public memberwise initializer; build it from the JSON keys that
/// docs/format.md lists (this also checks that decoding accepts exactly that document).
func testMetadata() -> ModelMetadata {
    let json = """
    {"format": "quantlm", "format_version": 1, "architecture": "llama",
     "hparams": {"n_layer": 1, "n_head": 2, "n_kv_head": 2, "d_model": 64, "d_ff": 172, "n_ctx": 32,
                 "vocab_size": 16, "norm_eps": 1e-5, "rope_theta": 10000, "tied_embeddings": true},
     "tokenizer": {"kind": "llama2c", "tensor": "tokenizer", "bos": 1, "eos": 2},
     "quantization": {"default_type": "q8_0", "overrides": []},
     "provenance": {"sources": [], "converter": "test", "created": "2024-01-01T00:00:00Z"}}
    """
    return try! ModelMetadata.decode(Data(json.utf8), file: "<test>")
}

/// Synthetic tensors of every type: (info with name/type/encoding/shape, raw bytes).
private func syntheticTensors(encoding: TensorEncoding, seed: UInt64) -> [(TensorInfo, [UInt8])] {
    var rng = SplitMix64(seed: seed)
    var list: [(TensorInfo, [UInt8])] = []
    // 172 is not a multiple of 32 (padded last block); 37 rows so chunking leaves a partial chunk.
    let shapes: [[Int]] = [[37, 172], [3, 5, 64], [200]]
    for t in QuantType.weightTypes {
        for (k, s) in shapes.enumerated() {
            let shape = t.wholeBlocks ? s.dropLast() + [256] : s // whole-block types: rows of 256
            let n = shape.last!, rows = shape.dropLast().reduce(1, *)
            let x = rng.floats(rows * n, scale: 3)
            // Row-grouped types in their group layout (as the converter writes them): plain rows
            // labelled q4_0x8 read as groups put code bytes in scale fields, which loading refuses.
            var q = quantize(t, x, rows: rows, n: n)
            if t.rowGroup > 1 { XCTAssertEqual(qlm_quantize_rows(t.rawValue, x, &q, Int64(rows), Int64(n), 1), -1) }
            list.append((TensorInfo(name: "\(t.name).t\(k)", type: t, encoding: encoding, shape: shape), q))
        }
    }
    let blob = (0 ..< 5000).map { _ in UInt8.random(in: 0 ... 40, using: &rng) }
    list.append((TensorInfo(name: "tokenizer", type: .u8, encoding: encoding, shape: [blob.count]), blob))
    return list
}

@discardableResult
private func writeFile(_ url: URL, _ tensors: [(TensorInfo, [UInt8])], chunkBytes: Int = ZstdChunks.defaultChunkBytes) throws -> Int {
    let w = try QLMWriter(url: url, metadata: testMetadata(), tensors: tensors.map(\.0))
    for (_, b) in tensors { try b.withUnsafeBytes { try w.writeNext($0, zstdLevel: 3, chunkBytes: chunkBytes) } }
    return try w.finish()
}

final class WriterReaderTests: XCTestCase {
    /// Test 2: raw round trip. Table and bytes equal; raw tensors are 64-aligned views into the map.
    func testRawRoundTrip() throws {
        let dir = try makeTempDir(self)
        let url = dir.appendingPathComponent("raw.qlm")
        let tensors = syntheticTensors(encoding: .raw, seed: 1)
        let len = try writeFile(url, tensors)
        let f = try QLMFile(url)
        XCTAssertEqual(f.map.count, len)
        XCTAssertEqual(f.metadata, testMetadata())
        XCTAssertEqual(f.tensors.count, tensors.count)
        let base = Int(bitPattern: f.map.bytes.baseAddress!)
        for (i, (info, bytes)) in tensors.enumerated() {
            let t = f.tensors[i]
            XCTAssertEqual(t.name, info.name); XCTAssertEqual(t.type, info.type)
            XCTAssertEqual(t.shape, info.shape); XCTAssertEqual(t.encoding, .raw)
            XCTAssertEqual(t.rawLength, bytes.count); XCTAssertEqual(t.storedLength, bytes.count)
            XCTAssertEqual(t.offset % 64, 0, "\(t.name) offset alignment")
            XCTAssertGreaterThanOrEqual(t.offset, f.dataOffset)
            XCTAssertEqual(t.checksum, bytes.withUnsafeBytes { qlm_crc32c(0, $0.baseAddress, $0.count) })
            let d = try f.load(t.name, verifyChecksum: true)
            XCTAssertFalse(d.isOwned, "raw tensor \(t.name) must be a view into the map")
            XCTAssertEqual(Int(bitPattern: d.bytes.baseAddress!) - base, t.offset)
            XCTAssertEqual(Int(bitPattern: d.bytes.baseAddress!) % 64, 0, "\(t.name) pointer alignment")
            withExtendedLifetime(d) { XCTAssertEqual([UInt8](d.bytes), bytes, "\(t.name) bytes") }
            try f.verify(t)
        }
        // The header, by hand (docs/format.md "Header").
        let raw = try readBytes(url)
        func u32(_ o: Int) -> UInt32 { raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) } }
        func u64(_ o: Int) -> UInt64 { raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt64.self) } }
        XCTAssertEqual(Array(raw[0 ..< 8]), Array("QUANTLM\0".utf8))
        XCTAssertEqual(u32(8), 1)
        XCTAssertEqual(Int(u32(12)), tensors.count)
        XCTAssertEqual(u64(16), 64)
        XCTAssertEqual(Int(u64(56)), raw.count)
        XCTAssertEqual(Int(u64(48)), f.dataOffset)
        XCTAssertEqual(Int(u32(40)), tensors.count * 128)
        XCTAssertEqual(u64(32) % 64, 0)
    }

    /// Test 2: zstd round trip at several chunk sizes (many chunks, partial last chunk);
    /// single-chunk decompression gives exactly that chunk's row range.
    func testZstdRoundTripAndSingleChunks() throws {
        let dir = try makeTempDir(self)
        let tensors = syntheticTensors(encoding: .zstd, seed: 2)
        for chunkBytes in [1, 200, 1000, 4096, 1 << 20] {
            let url = dir.appendingPathComponent("z\(chunkBytes).qlm")
            try writeFile(url, tensors, chunkBytes: chunkBytes)
            let f = try QLMFile(url)
            var sawManyChunks = false
            for (i, (info, bytes)) in tensors.enumerated() {
                let t = f.tensors[i]
                XCTAssertEqual(t.name, info.name); XCTAssertEqual(t.encoding, .zstd); XCTAssertEqual(t.rawLength, bytes.count)
                XCTAssertEqual(t.offset % 64, 0)
                try f.verify(t)
                let d = try f.load(t.name)
                XCTAssertTrue(d.isOwned)
                withExtendedLifetime(d) { XCTAssertEqual([UInt8](d.bytes), bytes, "\(t.name) at chunk size \(chunkBytes)") }
                // Chunk by chunk.
                let idx = try ZstdChunks.index(of: t, stored: f.stored(t), file: f.path)
                // whole rows that fit, rounded down to whole row groups (q4_0x8: 8), at least one group
                let g = t.type.rowGroup
                let expectRPC = max(g, chunkBytes / t.rowBytes / g * g)
                XCTAssertEqual(idx.rowsPerChunk, expectRPC, "\(t.name) rows per chunk")
                XCTAssertEqual(idx.chunks.count, (t.rows + expectRPC - 1) / expectRPC)
                if idx.chunks.count > 2, t.rows % expectRPC != 0 { sawManyChunks = true }
                let dctx = ZSTD_createDCtx()!
                defer { ZSTD_freeDCtx(dctx) }
                for c in 0 ..< idx.chunks.count {
                    let rows = idx.rowRange(ofChunk: c, rows: t.rows)
                    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: rows.count * t.rowBytes, alignment: 64)
                    defer { buf.deallocate() }
                    try ZstdChunks.decompress(chunk: c, of: t, index: idx, stored: f.stored(t), into: buf, dctx: dctx, file: f.path)
                    XCTAssertEqual([UInt8](buf), Array(bytes[rows.lowerBound * t.rowBytes ..< rows.upperBound * t.rowBytes]),
                                   "\(t.name) chunk \(c)")
                }
            }
            if chunkBytes == 1 { XCTAssertEqual(try ZstdChunks.index(of: f.tensors[0], stored: f.stored(f.tensors[0]), file: f.path).chunks.count, 37, "one row per chunk") }
            if chunkBytes == 1000 { XCTAssertTrue(sawManyChunks, "chunk size \(chunkBytes) should give many chunks with a partial last one") }
        }
    }

    /// writeNext(parts:) (the converter's row bands) writes the file writeNext(data) writes, byte
    /// for byte (offsets, CRC-32C continued over the parts), whatever the split, empty parts
    /// included; too many or too few bytes, or a zstd tensor, are refused with the tensor's name.
    func testPartsWriteTheSameFile() throws {
        let dir = try makeTempDir(self)
        let tensors = syntheticTensors(encoding: .raw, seed: 11)
        let whole = dir.appendingPathComponent("whole.qlm"), parts = dir.appendingPathComponent("parts.qlm")
        try writeFile(whole, tensors)
        let w = try QLMWriter(url: parts, metadata: testMetadata(), tensors: tensors.map(\.0))
        var rng = SplitMix64(seed: 12)
        for (_, b) in tensors {
            try b.withUnsafeBytes { raw in
                try w.writeNext { part in
                    var at = 0
                    while at < raw.count {
                        let n = min(raw.count - at, Int(rng.next() % 300))   // 0 ..< 300: empty parts too
                        try part(UnsafeRawBufferPointer(rebasing: raw[at ..< at + n]))
                        at += n
                    }
                }
            }
        }
        try w.finish()
        XCTAssertEqual(try readBytes(parts), try readBytes(whole))
        let f = try QLMFile(parts)
        for t in f.tensors { XCTAssertNoThrow(try f.verify(t), t.name) }

        let short = try QLMWriter(url: parts, metadata: testMetadata(), tensors: tensors.map(\.0))
        assertQuantError([tensors[0].0.name, "got 3 bytes"]) {
            try tensors[0].1.withUnsafeBytes { raw in try short.writeNext { try $0(UnsafeRawBufferPointer(rebasing: raw[0 ..< 3])) } }
        }
        let long = try QLMWriter(url: parts, metadata: testMetadata(), tensors: tensors.map(\.0))
        assertQuantError([tensors[0].0.name, "got more than"]) {
            try tensors[0].1.withUnsafeBytes { raw in try long.writeNext { try $0(raw); try $0(UnsafeRawBufferPointer(rebasing: raw[0 ..< 1])) } }
        }
        let zstd = syntheticTensors(encoding: .zstd, seed: 11)
        let z = try QLMWriter(url: parts, metadata: testMetadata(), tensors: zstd.map(\.0))
        assertQuantError([zstd[0].0.name, "zstd"]) { try zstd[0].1.withUnsafeBytes { raw in try z.writeNext { try $0(raw) } } }
    }

    /// Test 3: a writer dropped or aborted before finish leaves neither output nor temp file,
    /// and an existing file at the path is untouched.
    func testAbortedWriterLeavesNothing() throws {
        let dir = try makeTempDir(self)
        let tensors = syntheticTensors(encoding: .raw, seed: 3)
        let url = dir.appendingPathComponent("out.qlm")
        do { // dropped after writing some tensors
            let w = try QLMWriter(url: url, metadata: testMetadata(), tensors: tensors.map(\.0))
            try tensors[0].1.withUnsafeBytes { try w.writeNext($0) }
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).count, 1, "temp file exists while writing")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
        // explicit abort, with a previous file in place
        let previous: [UInt8] = Array("previous contents".utf8)
        try Data(previous).write(to: url)
        let w = try QLMWriter(url: url, metadata: testMetadata(), tensors: tensors.map(\.0))
        try tensors[0].1.withUnsafeBytes { try w.writeNext($0) }
        w.abort()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.qlm"])
        XCTAssertEqual(try readBytes(url), previous)
        // finish with a tensor missing throws and leaves things alone too
        let w2 = try QLMWriter(url: url, metadata: testMetadata(), tensors: tensors.map(\.0))
        try tensors[0].1.withUnsafeBytes { try w2.writeNext($0) }
        assertQuantError(["out.qlm", "only 1 of"]) { try w2.finish() }
        w2.abort()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.qlm"])
        XCTAssertEqual(try readBytes(url), previous)
        // wrong byte count for a tensor
        let w3 = try QLMWriter(url: url, metadata: testMetadata(), tensors: tensors.map(\.0))
        assertQuantError([tensors[0].0.name, "needs"]) { try [UInt8](repeating: 0, count: 3).withUnsafeBytes { try w3.writeNext($0) } }
    }

    /// Test 3: a conversion that fails midway (NaN in a later tensor) leaves no output and
    /// keeps the previous file; the error names the tensor and the row.
    func testFailedConversionIsAtomic() throws {
        let dir = try makeTempDir(self)
        let bin = dir.appendingPathComponent("nan.bin")
        try writeLlama2c(bin, layers: 2) { name, i in
            name == "layers.1.feed_forward.w2.weight" && i == 5 * 172 + 3 ? .nan : Float(i % 13) * 0.01
        }
        let tok = try Stories.tokenizer()
        let out = dir.appendingPathComponent("model.qlm")
        let opts = ConvertOptions(policy: QuantPolicy(defaultType: .q8_0), threads: 2)
        // 1: no file there before
        assertQuantError(["nan.bin", "layers.1.feed_forward.w2.weight", "row 5", "NaN"]) {
            _ = try Converter.convert(try Checkpoint.open(bin, tokenizer: tok), tokenizer: try Stories.payload(tok), options: opts, to: out)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["nan.bin"])
        // 2: a previous file stays byte for byte
        let previous = (0 ..< 1000).map { UInt8($0 % 251) }
        try Data(previous).write(to: out)
        assertQuantError(["layers.1.feed_forward.w2.weight", "row 5"]) {
            _ = try Converter.convert(try Checkpoint.open(bin, tokenizer: tok), tokenizer: try Stories.payload(tok), options: opts, to: out)
        }
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)), ["nan.bin", "model.qlm"])
        XCTAssertEqual(try readBytes(out), previous)
        // infinity is refused the same way (f32 output included: nothing is quantized there)
        let binInf = dir.appendingPathComponent("inf.bin")
        try writeLlama2c(binInf, layers: 2) { name, i in name == "norm.weight" && i == 7 ? -.infinity : 0.5 }
        assertQuantError(["inf.bin", "norm.weight", "row 0"]) {
            _ = try Converter.convert(try Checkpoint.open(binInf, tokenizer: tok), tokenizer: try Stories.payload(tok),
                                      options: ConvertOptions(policy: QuantPolicy(defaultType: .f32)), to: out)
        }
        XCTAssertEqual(try readBytes(out), previous)
    }
}
