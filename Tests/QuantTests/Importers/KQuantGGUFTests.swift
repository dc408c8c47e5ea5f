import CKernels
import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

extension GGUFBuilder {
    /// A small llama GGUF whose matrices are ggml super-block types (Q4_K, Q5_K, Q6_K, Q3_K, Q2_K,
    /// IQ4_XS; Q8_0 embedding, F32 norms): 1 layer, d 256, ffn 512, 2 heads / 1 kv head, vocab 8.
    static func kquantLlama(seed: UInt64 = 2) -> GGUFBuilder {
        var g = GGUFBuilder.tinyLlama(seed: seed)
        var rng = SplitMix64(seed: seed)
        g.kvs[3].1 = .u32(256) // llama.embedding_length
        g.kvs[4].1 = .u32(512) // llama.feed_forward_length
        g.tensors = []
        func t(_ name: String, _ ne: [Int], _ type: Int32) {
            g.tensors.append((name, ne, type, randomBlocks(type, elements: ne.reduce(1, *), rng: &rng)))
        }
        t("token_embd.weight", [256, 8], 8)          // q8_0
        t("blk.0.attn_norm.weight", [256], 0)
        t("blk.0.attn_q.weight", [256, 256], 12)     // q4_k
        t("blk.0.attn_k.weight", [256, 128], 11)     // q3_k
        t("blk.0.attn_v.weight", [256, 128], 14)     // q6_k
        t("blk.0.attn_output.weight", [256, 256], 13) // q5_k
        t("blk.0.ffn_norm.weight", [256], 0)
        t("blk.0.ffn_gate.weight", [256, 512], 23)   // iq4_xs
        t("blk.0.ffn_down.weight", [512, 256], 10)   // q2_k
        t("blk.0.ffn_up.weight", [256, 512], 12)
        t("output_norm.weight", [256], 0)
        return g
    }
}

final class KQuantGGUFTests: XCTestCase {
    func tokenizerPayload(_ dir: URL) throws -> TokenizerPayload {
        let tok = dir.appendingPathComponent("tok.bin")
        try Data(llama2cTokenizer(["<unk>", "<s>", "</s>", "a", "b", "c", "d", "e"])).write(to: tok)
        return TokenizerPayload(kind: "llama2c", blob: try readBytes(tok), bos: 1, eos: 2, sourceFiles: [tok])
    }

    /// --type keep copies Q4_K / Q5_K / Q6_K blocks unchanged (with and without zstd): every
    /// tensor keeps its type, nothing is converted, and each tensor's bytes are the GGUF's.
    func testKeepPassesKBlocksThrough() throws {
        let dir = try makeTempDir(self, "kqkeep")
        var g = GGUFBuilder.kquantLlama()
        let u = dir.appendingPathComponent("k.gguf")
        try Data(g.build()).write(to: u)
        let ck = try Checkpoint.open(u)
        let payload = try tokenizerPayload(dir)
        for zstd in [nil, 3] as [Int?] {
            let out = dir.appendingPathComponent("keep\(zstd ?? 0).qlm")
            var opts = ConvertOptions(policy: .keep(), zstdLevel: zstd)
            opts.zstdMinBytes = 64
            let s = try Converter.convert(ck, tokenizer: payload, options: opts, to: out)
            XCTAssertEqual(s.convertedTensors, [:])
            XCTAssertEqual(s.passthroughTensors.count, ck.tensors.count)
            let f = try QLMFile(out)
            var types: [QuantType: Int] = [:]
            for t in ck.tensors {
                let info = try f.info(t.name)
                types[info.type, default: 0] += 1
                let d = try f.load(t.name)
                try f.verify(info)
                XCTAssertEqual(withExtendedLifetime(d) { plainRowBytes(d.bytes, info) }, [UInt8](t.bytes), "\(t.name) bytes changed")
            }
            // the q8_0, q4_k, q5_k, q6_k, q3_k and iq4_xs matrices in their 8-row layouts (QuantPolicy.keepRegrouped), the same bytes regrouped
            XCTAssertEqual(types, [.q8_0x8: 1, .f32: 3, .q4_kx8: 2, .q5_kx8: 1, .q6_kx8: 1, .q3_kx8: 1, .iq4_xsx8: 1, .q2_k: 1])
        }
    }

    /// --type q4_k on rows that are not whole 256-weight blocks (stories-shaped: 64 and 172):
    /// those matrices take the type's row fallback and are listed; an override that names a K
    /// type for such a tensor is refused with one line naming the tensor and the rule.
    func testRowsNotWholeBlocksFallBackOrAreRefused() throws {
        let dir = try makeTempDir(self, "kqfb")
        let bin = dir.appendingPathComponent("m.bin")
        try writeLlama2c(bin, layers: 1)
        let tok = try Stories.tokenizer()
        let ck = try Checkpoint.open(bin, tokenizer: tok)
        let payload = try Stories.payload(tok)
        for type in [QuantType.q4_k, .q5_k, .q6_k] {
            let out = dir.appendingPathComponent("\(type.name).qlm")
            let s = try Converter.convert(ck, tokenizer: payload, options: ConvertOptions(policy: QuantPolicy(defaultType: type), threads: 2), to: out)
            let matrices = ck.tensors.filter { $0.shape.count >= 2 }.map(\.name)
            XCTAssertEqual(Set(s.rowFallbackTensors.keys), Set(matrices))
            XCTAssertEqual(s.rowFallbackTensors[matrices[0]], "\(type.name)->\(type.rowFallback.name)")
            let f = try QLMFile(out)
            for m in matrices { XCTAssertEqual(try f.info(m).type, type.rowFallback, m) }
        }
        XCTAssertEqual(QuantType.q6_k.rowFallback, .q8_0)
        let e = assertQuantError(["layers.0.attention.wq.weight", "q4_k", "multiple of 256", "64"]) {
            _ = try Converter.convert(ck, tokenizer: payload, options: ConvertOptions(policy: QuantPolicy(defaultType: .q8_0, overrides: [("*.wq.weight", .q4_k)]), threads: 2),
                                      to: dir.appendingPathComponent("x.qlm"))
        }
        XCTAssertNotNil(e)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x.qlm").path))
    }

    /// The GGUF fuzzer's mutations on the K-quant file: every case throws a one-line QuantError
    /// naming the file, or opens; an opened checkpoint dequantizes every tensor (QuantLM's row of
    /// each passed-through type gives the ggml dequantizer's floats bit for bit, for all six
    /// super-block types) and converts with --type keep (blocks passed through, fp16 fields
    /// checked) into a file that loads.
    func testFuzzKQuantFile() throws {
        let dir = try makeTempDir(self, "kqfuzz")
        var g = GGUFBuilder.kquantLlama(seed: 5)
        let (base, fields, infoStart, dataStart) = g.buildForFuzzing()
        let u = dir.appendingPathComponent("m.gguf"), out = dir.appendingPathComponent("m.qlm")
        let payload = try tokenizerPayload(dir)
        var rng = SplitMix64(seed: 0x4B46)
        let lies: [UInt64] = [0, 1, 2, 12, 13, 14, 15, 16, 255, 256, 257, 1 << 31, 1 << 40, UInt64(base.count), UInt64.max]
        var opened = 0, converted = 0
        var kept = Set<QuantType>() // types whose blocks passed through and decoded the same
        for it in 0 ..< 300 {
            var b = base
            switch it % 4 {
            case 0: b = Array(b.prefix(Int.random(in: 0 ..< b.count, using: &rng)))
            case 1: for _ in 0 ..< Int.random(in: 1 ... 4, using: &rng) { b[Int.random(in: infoStart ..< dataStart, using: &rng)] ^= UInt8.random(in: 1 ... 255, using: &rng) }
            case 2: for _ in 0 ..< 8 { b[Int.random(in: dataStart ..< b.count, using: &rng)] = UInt8.random(in: 0 ... 255, using: &rng) } // block bytes (fp16 fields too)
            default:
                let (o, w, _) = fields.randomElement(using: &rng)!
                let v = lies.randomElement(using: &rng)!
                withUnsafeBytes(of: v.littleEndian) { for i in 0 ..< w { b[o + i] = $0[i] } }
            }
            try Data(b).write(to: u)
            do {
                let ck = try Checkpoint.open(u)
                opened += 1
                for t in ck.tensors {
                    var y = [Float](repeating: 0, count: t.elementCount)
                    t.readFloats(into: &y)
                    // --type keep's pass-through: QuantLM's own row of the native type reads the
                    // very (mutated) bytes to the floats the ggml dequantizer gave.
                    if let q = assertPassthroughDecodesSame(t, y, "iteration \(it)") { kept.insert(q) }
                }
                _ = try Converter.convert(ck, tokenizer: payload, options: ConvertOptions(policy: .keep(), threads: 1), to: out)
                let f = try QLMFile(out)
                for t in f.tensors { try f.verify(t) }
                converted += 1
            } catch let e as QuantError {
                XCTAssertFalse(e.message.contains("\n"), "one-line errors")
                XCTAssertTrue(e.file == u.path || e.file.hasPrefix(u.path + ":") || e.file == out.path, "iteration \(it): names the file: \(e)")
            } catch {
                XCTFail("iteration \(it): non-QuantError \(error)")
            }
        }
        print("fuzz k-quant gguf: 300 mutations, \(opened) opened, \(converted) converted with --type keep")
        XCTAssertGreaterThan(converted, 20)
        // (a lying type field can add others, e.g. q4_0)
        XCTAssertTrue(kept.isSuperset(of: [.q8_0, .q4_k, .q5_k, .q6_k, .q3_k, .iq4_xs, .q2_k]), "types passed through and decoded the same: \(kept)")
    }
}
