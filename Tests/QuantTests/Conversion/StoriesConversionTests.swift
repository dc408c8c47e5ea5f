import CKernels
import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// Test 4 and 8: the real stories260K checkpoint through the library converter.
final class StoriesConversionTests: XCTestCase {
    func testConvertEveryTypeWithAndWithoutZstd() throws {
        let dir = try makeTempDir(self)
        let oracle = Llama2cOracle(try readBytes(try Stories.model()))
        XCTAssertEqual(oracle.tensors.count, 47) // 1 + 5 layers × 9 + 1 (shared classifier)
        let tokBytes = try readBytes(try Stories.tokenizer())
        var sizes: [QuantType: Int] = [:]
        for type in QuantType.weightTypes {
            let rawURL = dir.appendingPathComponent("s-\(type.name).qlm")
            let zURL = dir.appendingPathComponent("s-\(type.name)-z.qlm")
            let s = try Stories.convert(to: rawURL, type: type)
            // 4096-byte chunks: the 512×64 embedding is 131 KB in f32, so many chunks.
            let sz = try Stories.convert(to: zURL, type: type, zstd: 3, chunkBytes: 4096)
            print(String(format: "stories260K %@: %d bytes, %.3f bits/weight in memory; zstd: %d bytes, %.3f bits/weight on disk (ratio %.3f)",
                         type.name, s.bytesOut, s.bitsPerWeight, sz.bytesOut, sz.storedBitsPerWeight, sz.compressionRatio))
            XCTAssertEqual(s.tensors, 48)
            XCTAssertEqual(s.parameters, oracle.tensors.reduce(0) { $0 + $1.floats.count })
            XCTAssertEqual(s.compressionRatio, 1.0)
            sizes[type] = s.bytesOut
            let raw = try QLMFile(rawURL), z = try QLMFile(zURL)
            for f in [raw, z] {
                XCTAssertEqual(f.tensors.map(\.name), oracle.tensors.map(\.name) + ["tokenizer"], "every tensor listed in canonical order")
                XCTAssertEqual(f.map.count, f === raw ? s.bytesOut : sz.bytesOut)
                for t in f.tensors { try f.verify(t) }
                let m = f.metadata
                XCTAssertEqual(m.architecture, "llama")
                XCTAssertEqual(m.hparams, HParams(nLayer: 5, nHead: 8, nKVHead: 4, dModel: 64, dFF: 172, nCtx: 512, vocabSize: 512,
                                                  normEps: 1e-5, ropeTheta: 10000, tiedEmbeddings: true))
                XCTAssertEqual(m.tokenizer.kind, "llama2c"); XCTAssertEqual(m.tokenizer.bos, 1); XCTAssertEqual(m.tokenizer.eos, 2)
                XCTAssertEqual(m.quantization.defaultType, type.name)
                XCTAssertEqual(m.provenance.sources.map(\.file), ["stories260K.bin", "tok512.bin"])
                XCTAssertEqual(m.provenance.sources[0].sha256, Stories.sha256)
                XCTAssertEqual(m.provenance.sources[0].bytes, 1_056_540)
                XCTAssertEqual(m.provenance.sources[1].bytes, 6227)
                XCTAssertEqual(try f.rawBytes("tokenizer"), tokBytes, "tokenizer.bin embedded verbatim")
                for (name, shape, _) in oracle.tensors {
                    let t = try f.info(name)
                    XCTAssertEqual(t.shape, shape)
                    XCTAssertEqual(t.type, shape.count == 1 ? .f32 : type.allows(rowLength: shape.last!) ? type : type.rowFallback,
                                   "\(name): norms stay f32, matrices get --type (or its row fallback)")
                }
            }
            XCTAssertEqual(z.metadata.quantization.zstdLevel, 3); XCTAssertEqual(z.metadata.quantization.zstdChunkBytes, 4096)
            XCTAssertNil(raw.metadata.quantization.zstdLevel)
            // zstd changes nothing: every tensor's raw bytes are identical.
            var multiChunk = 0
            for t in raw.tensors {
                let zt = try z.info(t.name)
                XCTAssertEqual(zt.rawLength, t.rawLength)
                XCTAssertEqual(zt.encoding, t.rawLength >= 4096 ? .zstd : .raw, "\(t.name): zstd only from 4096 bytes")
                if zt.encoding == .zstd, try ZstdChunks.index(of: zt, stored: z.stored(zt), file: z.path).chunks.count > 1 { multiChunk += 1 }
                XCTAssertEqual(try z.rawBytes(t.name), try raw.rawBytes(t.name), "\(type) \(t.name)")
            }
            XCTAssertGreaterThan(multiChunk, 10, "small chunks should split many tensors")
            XCTAssertLessThan(sz.storedTensorBytes, s.storedTensorBytes, "zstd should save something")
            if type == .f32 {
                // The f32 file holds the source floats bit for bit.
                for (name, _, floats) in oracle.tensors {
                    XCTAssertTrue(bitsEqual(try raw.load(name).floats(), floats), "\(name) differs from stories260K.bin")
                }
            }
            // bits per weight as reported: raw numeric bytes × 8 / parameters.
            let expectBPW = Double(raw.tensors.filter { $0.type != .u8 }.reduce(0) { $0 + $1.rawLength } * 8) / Double(s.parameters)
            XCTAssertEqual(s.bitsPerWeight, expectBPW, accuracy: 1e-12)
        }
        XCTAssertLessThan(sizes[.q4_0]!, sizes[.q8_0]!)
        XCTAssertLessThan(sizes[.q8_0]!, sizes[.f16]!)
        XCTAssertLessThan(sizes[.f16]!, sizes[.f32]!)
        XCTAssertLessThan(sizes[.q4_0]!, sizes[.q4_1]!)
    }

    // MARK: - Test 8: error bounds

    /// Per-block error bounds of q8_0, q4_0 and q4_1 against the source floats, on every
    /// stories260K matrix (the w2 matrices have n = 172: a padded last block).
    /// Tolerances: rounding to the nearest code gives d/2; the scale is stored as fp16,
    /// so codes (computed with the exact float d) are multiplied by a d' = fp16(d) that is off
    /// by |d' - d| ≤ max(d·2⁻¹¹, 2⁻²⁵) (half an ulp, or half the smallest subnormal), at most
    /// 127 (q8_0), 8 (q4_0) or 15 (q4_1) times; plus float rounding (≤ 1e-6 · absmax).
    func testQuantizationErrorBounds() throws {
        let dir = try makeTempDir(self)
        let oracle = Llama2cOracle(try readBytes(try Stories.model()))
        for type in [QuantType.q8_0, .q4_0, .q4_1] {
            let url = dir.appendingPathComponent("b-\(type.name).qlm")
            try Stories.convert(to: url, type: type)
            let f = try QLMFile(url)
            var worstRatio = 0.0
            for (name, shape, src) in oracle.tensors where shape.count == 2 {
                let td = try f.load(name)
                let y = td.floats()
                let n = shape[1], rows = shape[0]
                let rb = td.info.rowBytes
                for r in 0 ..< rows {
                    for b in 0 ..< (n + 31) / 32 {
                        let lo = b * 32, hi = min(n, lo + 32)
                        let x = Array(src[r * n + lo ..< r * n + hi]) + Array(repeating: 0, count: 32 - (hi - lo))
                        let blk = td.bytes.baseAddress! + r * rb + b * type.blockBytes
                        let dStored = Float(Float16(bitPattern: blk.loadUnaligned(as: UInt16.self)))
                        let amax = x.map(abs).max()!
                        func fp16err(_ v: Float) -> Float { max(abs(v) * 0x1p-11, 0x1p-25) }
                        var bound: [Float]
                        switch type {
                        case .q8_0:
                            let d = amax / 127
                            XCTAssertLessThanOrEqual(abs(dStored - d), fp16err(d))
                            bound = Array(repeating: d / 2 + 127 * fp16err(d) + 1e-6 * amax, count: 32)
                        case .q4_0:
                            let mx = x.first { abs($0) == amax }!
                            let d = mx / -8
                            XCTAssertLessThanOrEqual(abs(dStored - d), fp16err(d))
                            // x/d lies in [-8, 8]; codes clamp at 15, so x/d > 7.5 (the side opposite
                            // the max) may be off by up to |d|; everything else by |d|/2.
                            bound = x.map { v in (d != 0 && v / d > 7.5 ? abs(d) : abs(d) / 2) + 8 * fp16err(d) + 1e-6 * amax }
                        default:
                            let mn = x.min()!, mxv = x.max()!
                            let d = (mxv - mn) / 15
                            let mStored = Float(Float16(bitPattern: (blk + 2).loadUnaligned(as: UInt16.self)))
                            XCTAssertLessThanOrEqual(abs(dStored - d), fp16err(d))
                            XCTAssertLessThanOrEqual(abs(mStored - mn), fp16err(mn))
                            bound = Array(repeating: d / 2 + 15 * fp16err(d) + fp16err(mn) + 1e-6 * amax, count: 32)
                        }
                        for j in 0 ..< hi - lo {
                            let e = abs(y[r * n + lo + j] - x[j])
                            if e > bound[j] {
                                XCTFail("\(type) \(name) row \(r) element \(lo + j): |\(y[r * n + lo + j]) - \(x[j])| = \(e) > bound \(bound[j])")
                                return
                            }
                            if bound[j] > 0 { worstRatio = max(worstRatio, Double(e / bound[j])) }
                        }
                    }
                }
            }
            print(String(format: "%@: worst error / bound = %.3f", type.name, worstRatio))
        }
    }

    /// Adversarial rows through the converter: zeros stay exact zeros, one huge outlier,
    /// denormals; out-of-range values.
    func testAdversarialRows() throws {
        let dir = try makeTempDir(self)
        let tok = try Stories.tokenizer()
        let bin = dir.appendingPathComponent("adv.bin")
        let target = "layers.0.attention.wq.weight" // [64, 64]
        // row 0: all zeros; row 1: one 1e4 outlier among ±1e-3; row 2: denormals; row 3: mixed denormal / normal;
        // row 4: -0.0 everywhere; other rows: ordinary values.
        func value(_ i: Int) -> Float {
            let r = i / 64, c = i % 64
            switch r {
            case 0: return 0
            case 1: return c == 17 ? 1e4 : (c % 2 == 0 ? 1e-3 : -1e-3)
            case 2: return Float(bitPattern: UInt32(c * 1000 + 1)) * (c % 2 == 0 ? 1 : -1) // subnormals
            case 3: return c < 32 ? Float(bitPattern: UInt32(c + 1)) : Float(c) * 0.01
            case 4: return -0.0
            default: return Float((i * 7919) % 200 - 100) * 0.003
            }
        }
        try writeLlama2c(bin, layers: 1) { name, i in name == target ? value(i) : 0.25 }
        for type in QuantType.weightTypes {
            let out = dir.appendingPathComponent("adv-\(type.name).qlm")
            _ = try Converter.convert(try Checkpoint.open(bin, tokenizer: tok), tokenizer: try Stories.payload(tok),
                                      options: ConvertOptions(policy: QuantPolicy(defaultType: type), threads: 2), to: out)
            let y = try QLMFile(out).load(target).floats()
            let x = (0 ..< 64 * 64).map(value)
            XCTAssertTrue(y.allSatisfy(\.isFinite), "\(type): non-finite output")
            XCTAssertTrue(y[0 ..< 64].allSatisfy { $0 == 0 }, "\(type): zero row must dequantize to exact zeros")
            XCTAssertTrue(y[256 ..< 320].allSatisfy { $0 == 0 }, "\(type): -0 row must dequantize to zeros")
            // Outlier: reproduced within its block's bound; q8_0/q4_0 flush the ±1e-3 neighbours in its block to 0
            // (|x| < d/2); f16/f32 keep them.
            let o = y[64 + 17]
            switch type {
            case .f32, .f16: XCTAssertEqual(o, 1e4)
            case .q8_0: XCTAssertEqual(o, 1e4, accuracy: 1e4 / 254 + 127 * 1e4 / 127 * 0x1p-11)
            default: XCTAssertEqual(o, 1e4, accuracy: 1e4 / 8 / 2 + 1e4 * 0x1p-11 * 8)
            }
            if type.isQuantized {
                XCTAssertLessThanOrEqual(abs(y[64 + 3] - x[64 + 3]), 1e4 / 15 / 2 * 1.01, "\(type) outlier block neighbour")
                // The outlier's block does not spoil the other block of the row. (IQ4_K*: both
                // blocks share the row's super-scale (64 < 256), so the ±1e-3 block may flush to 0.)
                if type == .iq4_k16 || type == .iq4_k32 {
                    XCTAssertLessThanOrEqual(abs(y[64 + 40] - x[64 + 40]), 1e-3 * 1.01)
                } else {
                    // One code step of a ±1e-3 block at the type's code width (q8_0: 1e-3 / 127; the
                    // 5-bit and codebook types store the block's non-extreme values a step apart).
                    XCTAssertEqual(y[64 + 40], x[64 + 40], accuracy: 1e-3 / Float((1 << (type.codeBits - 1)) - 1) + 1e-6, "\(type)")
                }
            }
            // Subnormals: tiny errors (everything is below fp16's range: codes × 0 = 0 or exact for f32).
            // Blocks of subnormals (row 2, first half of row 3): the scale underflows fp16, so they
            // dequantize to (signed) zeros or, for f32, exactly; the error is below 2^-126.
            for i in 128 ..< 224 {
                XCTAssertLessThanOrEqual(abs(y[i] - x[i]), type == .f32 ? 0 : 0x1p-126, "\(type) element \(i)")
            }
            // The normal half of row 3 (0.32 ... 0.63) is unaffected by its subnormal neighbour block:
            // the loosest format, q4_0, is off by at most |d| = 0.63 / 8.
            for i in 224 ..< 256 {
                XCTAssertLessThanOrEqual(abs(y[i] - x[i]), 0.63 / 8 * 1.01, "\(type) element \(i)")
            }
            if type == .f32 { XCTAssertTrue(bitsEqual(y, x)) }
        }
    }

    /// NaN / inf in a source tensor: the error names the file, the tensor and the row, for every type.
    func testNonFiniteSourceIsRefused() throws {
        let dir = try makeTempDir(self)
        let tok = try Stories.tokenizer()
        for (k, bad) in [Float.nan, .infinity, -.infinity].enumerated() {
            let bin = dir.appendingPathComponent("bad\(k).bin")
            try writeLlama2c(bin, layers: 2) { name, i in name == "layers.1.attention.wk.weight" && i == 17 * 64 + 9 ? bad : 0.1 }
            for type in QuantType.weightTypes {
                assertQuantError(["bad\(k).bin", "layers.1.attention.wk.weight", "row 17", "NaN or infinity"]) {
                    _ = try Converter.convert(try Checkpoint.open(bin, tokenizer: tok), tokenizer: try Stories.payload(tok),
                                              options: ConvertOptions(policy: QuantPolicy(defaultType: type), threads: 2),
                                              to: dir.appendingPathComponent("x.qlm"))
                }
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x.qlm").path))
    }

    /// Finite values whose scale overflows fp16 (|x| > 65504·127 for q8_0, > 65504 for f16)
    /// cannot be stored; the converter must refuse them rather than write infinities.
    func testOutOfRangeValuesAreRefused() throws {
        let dir = try makeTempDir(self)
        let tok = try Stories.tokenizer()
        let cases: [(QuantType, Float)] = [(.f16, 1e5), (.q8_0, 1e7), (.q4_0, 1e6), (.q4_1, 1e6), (.q4_1, -1e5)]
        for (k, (type, big)) in cases.enumerated() {
            let bin = dir.appendingPathComponent("big\(k).bin")
            try writeLlama2c(bin, layers: 1) { name, i in name == "layers.0.attention.wo.weight" && i == 3 * 64 + 5 ? big : 0.1 }
            let out = dir.appendingPathComponent("big\(k).qlm")
            assertQuantError(["big\(k).bin", "layers.0.attention.wo.weight", "row 3"]) {
                _ = try Converter.convert(try Checkpoint.open(bin, tokenizer: tok), tokenizer: try Stories.payload(tok),
                                          options: ConvertOptions(policy: QuantPolicy(defaultType: type), threads: 2), to: out)
            }
            if let f = try? QLMFile(out) {
                XCTAssertTrue(try f.load("layers.0.attention.wo.weight").floats().allSatisfy(\.isFinite), "\(type) \(big) wrote infinities")
            }
            // f32 keeps such values exactly.
            _ = try Converter.convert(try Checkpoint.open(bin, tokenizer: tok), tokenizer: try Stories.payload(tok),
                                      options: ConvertOptions(policy: QuantPolicy(defaultType: .f32)), to: out)
            XCTAssertEqual(try QLMFile(out).load("layers.0.attention.wo.weight").floats()[3 * 64 + 5], big)
        }
    }
}
