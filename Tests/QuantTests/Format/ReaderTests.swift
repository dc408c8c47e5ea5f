import CKernels
import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

/// A tiny GPT-2 in the real Hugging Face layout (Conv1D weights stored [in, out]).
struct SyntheticGPT2 {
    static let d = 64, layers = 2, ctx = 32, vocab = 50257

    /// (HF key without prefix, HF stored shape, canonical name, transposed)
    static var layout: [(String, [Int], String, Bool)] {
        var l: [(String, [Int], String, Bool)] = [("wte.weight", [vocab, d], "wte.weight", false), ("wpe.weight", [ctx, d], "wpe.weight", false)]
        for i in 0 ..< layers {
            let p = "h.\(i)."
            l += [
                (p + "ln_1.weight", [d], p + "ln_1.weight", false), (p + "ln_1.bias", [d], p + "ln_1.bias", false),
                (p + "attn.c_attn.weight", [d, 3 * d], p + "attn.c_attn.weight", true), (p + "attn.c_attn.bias", [3 * d], p + "attn.c_attn.bias", false),
                (p + "attn.c_proj.weight", [d, d], p + "attn.c_proj.weight", true), (p + "attn.c_proj.bias", [d], p + "attn.c_proj.bias", false),
                (p + "ln_2.weight", [d], p + "ln_2.weight", false), (p + "ln_2.bias", [d], p + "ln_2.bias", false),
                (p + "mlp.c_fc.weight", [d, 4 * d], p + "mlp.c_fc.weight", true), (p + "mlp.c_fc.bias", [4 * d], p + "mlp.c_fc.bias", false),
                (p + "mlp.c_proj.weight", [4 * d, d], p + "mlp.c_proj.weight", true), (p + "mlp.c_proj.bias", [d], p + "mlp.c_proj.bias", false),
            ]
        }
        l += [("ln_f.weight", [d], "ln_f.weight", false), ("ln_f.bias", [d], "ln_f.bias", false)]
        return l
    }

    /// Random finite element bit patterns of `dtype`, and their exact float values.
    static func data(_ dtype: String, count: Int, rng: inout SplitMix64) -> ([UInt8], [Float]) {
        switch dtype {
        case "F32":
            let f = rng.floats(count, scale: 2)
            return (bytesOf(f), f)
        case "F16":
            var bits = [UInt16](repeating: 0, count: count)
            for i in 0 ..< count {
                var b: UInt16
                repeat { b = UInt16(truncatingIfNeeded: rng.next()) } while b & 0x7C00 == 0x7C00 // no inf/NaN
                bits[i] = b
            }
            return (bits.withUnsafeBytes { [UInt8]($0) }, bits.map { Float(Float16(bitPattern: $0)) })
        default: // BF16: the top half of an f32
            var bits = [UInt16](repeating: 0, count: count)
            for i in 0 ..< count {
                var b: UInt16
                repeat { b = UInt16(truncatingIfNeeded: rng.next()) } while b & 0x7F80 == 0x7F80
                bits[i] = b
            }
            return (bits.withUnsafeBytes { [UInt8]($0) }, bits.map { Float(bitPattern: UInt32($0) << 16) })
        }
    }

    /// Writes a checkpoint directory; returns canonical name → expected canonical floats.
    @discardableResult
    static func write(_ dir: URL, dtype: String = "F32", prefix: String = "", shards: Int = 1, lmHead: Bool = true,
                      seed: UInt64 = 7, edit: ((inout [STTensor]) -> Void)? = nil) throws -> [String: [Float]] {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var rng = SplitMix64(seed: seed)
        var tensors: [STTensor] = []
        var expected: [String: [Float]] = [:]
        for (key, shape, canon, transposed) in layout {
            let n = shape.reduce(1, *)
            let (bytes, vals) = data(dtype, count: n, rng: &rng)
            tensors.append(STTensor(name: prefix + key, dtype: dtype, shape: shape, data: bytes))
            if transposed { // stored [in, out] -> canonical [out, in]
                let (rin, cout) = (shape[0], shape[1])
                var t = [Float](repeating: 0, count: n)
                for i in 0 ..< rin { for o in 0 ..< cout { t[o * rin + i] = vals[i * cout + o] } }
                expected[canon] = t
            } else {
                expected[canon] = vals
            }
        }
        for i in 0 ..< layers { // the causal-mask buffer HF keeps in old checkpoints (ignored)
            tensors.append(STTensor(name: prefix + "h.\(i).attn.bias", dtype: dtype, shape: [1, 1, ctx, ctx],
                                    data: [UInt8](repeating: 0, count: ctx * ctx * (dtype == "F32" ? 4 : 2))))
        }
        if lmHead { tensors.append(STTensor(name: "lm_head.weight", dtype: tensors[0].dtype, shape: tensors[0].shape, data: tensors[0].data)) }
        edit?(&tensors)
        if shards == 1 {
            try Data(try safetensorsBytes(tensors)).write(to: dir.appendingPathComponent("model.safetensors"))
        } else {
            var weightMap: [String: String] = [:]
            let per = (tensors.count + shards - 1) / shards
            for s in 0 ..< shards {
                let part = Array(tensors[min(tensors.count, s * per) ..< min(tensors.count, (s + 1) * per)])
                let name = String(format: "model-%05d-of-%05d.safetensors", s + 1, shards)
                try Data(try safetensorsBytes(part)).write(to: dir.appendingPathComponent(name))
                for t in part { weightMap[t.name] = name }
            }
            let index: [String: Any] = ["metadata": ["total_size": 0], "weight_map": weightMap]
            try JSONSerialization.data(withJSONObject: index).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        }
        let config: [String: Any] = ["model_type": "gpt2", "n_embd": d, "n_layer": layers, "n_head": 4, "n_positions": ctx,
                                     "vocab_size": vocab, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"]
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
        let fm = FileManager.default
        for (src, dst) in [("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")] {
            let to = dir.appendingPathComponent(dst)
            if !fm.fileExists(atPath: to.path) {
                try fm.copyItem(at: try SharedData.path("models/gpt2-tokenizer/\(src)"), to: to)
            }
        }
        return expected
    }

    /// QuantTests does not link Runtime, so the GPT-2 tokenizer blob is a stand-in here
    /// (the converter stores the payload opaquely); CLITests convert with the real one.
    static func payload(_ dir: URL) -> TokenizerPayload {
        TokenizerPayload(kind: "gpt2-bpe", blob: Array("stand-in tokenizer blob".utf8), bos: nil, eos: 50256,
                         sourceFiles: [dir.appendingPathComponent("vocab.json"), dir.appendingPathComponent("merges.txt")])
    }

    static func convert(_ dir: URL, to out: URL, type: QuantType = .f32) throws -> ConvertSummary {
        try Converter.convert(try Checkpoint.open(dir), tokenizer: payload(dir),
                              options: ConvertOptions(policy: QuantPolicy(defaultType: type), threads: 2), to: out)
    }
}

final class HFGPT2ReaderTests: XCTestCase {
    /// Test 6: every variant converts to f32 and holds the source values bit for bit
    /// (Conv1D weights transposed to [out, in]; f16/bf16 upcast exactly).
    func testVariantsRoundTripBitForBit() throws {
        let root = try makeTempDir(self, "hfgpt2")
        let variants: [(String, String, Int, Bool)] = [
            ("F32", "", 1, true), ("F32", "transformer.", 1, false), ("F16", "", 1, true),
            ("BF16", "transformer.", 1, true), ("F32", "transformer.", 2, true), ("F16", "", 2, false),
        ]
        for (k, (dtype, prefix, shards, lmHead)) in variants.enumerated() {
            let dir = root.appendingPathComponent("v\(k)")
            let expected = try SyntheticGPT2.write(dir, dtype: dtype, prefix: prefix, shards: shards, lmHead: lmHead, seed: UInt64(k))
            let out = root.appendingPathComponent("v\(k).qlm")
            let label = "\(dtype) prefix '\(prefix)' shards \(shards) lm_head \(lmHead)"
            let s = try SyntheticGPT2.convert(dir, to: out)
            let f = try QLMFile(out)
            XCTAssertEqual(f.metadata.architecture, "gpt2")
            XCTAssertEqual(f.metadata.hparams.dModel, 64); XCTAssertEqual(f.metadata.hparams.nLayer, 2)
            XCTAssertTrue(f.metadata.hparams.tiedEmbeddings)
            XCTAssertEqual(f.tensors.count, SyntheticGPT2.layout.count + 1, label)
            XCTAssertEqual(s.parameters, expected.values.reduce(0) { $0 + $1.count })
            XCTAssertEqual(f.metadata.provenance.sources.count, 1 + shards + 2, "config, shards, vocab, merges")
            for (_, shape, canon, transposed) in SyntheticGPT2.layout {
                let t = try f.info(canon)
                XCTAssertEqual(t.shape, transposed ? [shape[1], shape[0]] : shape, "\(label) \(canon) shape")
                XCTAssertTrue(bitsEqual(try f.load(canon).floats(), expected[canon]!), "\(label) \(canon) values")
            }
        }
        // And one quantized conversion: matrices at q8_0, 1-D at f32.
        let q = root.appendingPathComponent("q.qlm")
        _ = try SyntheticGPT2.convert(root.appendingPathComponent("v0"), to: q, type: .q8_0)
        let fq = try QLMFile(q)
        XCTAssertEqual(try fq.info("h.1.mlp.c_fc.weight").type, .q8_0)
        XCTAssertEqual(try fq.info("h.1.mlp.c_fc.bias").type, .f32)
    }

    /// Test 6: malformed checkpoints throw QuantErrors naming the file and the tensor.
    func testMalformedCheckpoints() throws {
        let root = try makeTempDir(self, "hfbad")
        var k = 0
        func variant(_ edit: @escaping (inout [STTensor]) -> Void) throws -> URL {
            k += 1
            let dir = root.appendingPathComponent("b\(k)")
            try SyntheticGPT2.write(dir, edit: edit)
            return dir
        }
        let out = root.appendingPathComponent("never.qlm")
        func open(_ dir: URL) throws { _ = try SyntheticGPT2.convert(dir, to: out) }

        let missing = try variant { $0.removeAll { $0.name == "h.1.mlp.c_proj.bias" } }
        assertQuantError([missing.path, "missing tensor h.1.mlp.c_proj.bias"]) { try open(missing) }

        let unknown = try variant { $0.append(STTensor(name: "h.0.attn.rotary", dtype: "F32", shape: [2], data: [UInt8](repeating: 0, count: 8))) }
        assertQuantError(["model.safetensors", "unknown tensor h.0.attn.rotary"]) { try open(unknown) }

        let wrongShape = try variant { ts in
            let i = ts.firstIndex { $0.name == "h.0.attn.c_attn.weight" }!
            ts[i].shape = [192, 64] // already [out, in]: the real layout is [64, 192]
        }
        assertQuantError(["model.safetensors", "h.0.attn.c_attn.weight", "shape [192, 64], expected [64, 192]"]) { try open(wrongShape) }

        let i32 = try variant { ts in
            let i = ts.firstIndex { $0.name == "ln_f.bias" }!
            ts[i].dtype = "I32"
        }
        assertQuantError(["model.safetensors", "ln_f.bias", "unsupported dtype I32"]) { try open(i32) }

        let sizeMismatch = try variant { ts in
            let i = ts.firstIndex { $0.name == "h.0.ln_2.weight" }!
            ts[i].shape = [65]
        }
        assertQuantError(["model.safetensors", "h.0.ln_2.weight"]) { try open(sizeMismatch) }

        // Byte-level corruptions of a good file.
        let good = try variant { _ in }
        let st = good.appendingPathComponent("model.safetensors")
        let bytes = try readBytes(st)
        let headerLen = Int(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        func corrupt(_ name: String, _ b: [UInt8]) throws -> URL {
            let dir = root.appendingPathComponent(name)
            try FileManager.default.copyItem(at: good, to: dir)
            try Data(b).write(to: dir.appendingPathComponent("model.safetensors"))
            return dir
        }
        // Truncated in the data: the last tensor (by offset) no longer fits.
        let trunc = try corrupt("trunc", Array(bytes.prefix(bytes.count - 100)))
        let lastTensor = try lastByOffset(bytes, headerLen)
        assertQuantError([trunc.appendingPathComponent("model.safetensors").path, lastTensor, "outside the file"]) { try open(trunc) }
        // Header length past EOF.
        var past = bytes
        withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { for i in 0 ..< 8 { past[i] = $0[i] } }
        let pastDir = try corrupt("past", past)
        assertQuantError([pastDir.appendingPathComponent("model.safetensors").path, "header length"]) { try open(pastDir) }
        // Truncated inside the header; and shorter than 8 bytes.
        let inHeader = try corrupt("inheader", Array(bytes.prefix(8 + headerLen / 2)))
        assertQuantError(["inheader/model.safetensors", "header length"]) { try open(inHeader) }
        let tiny = try corrupt("tiny", [1, 2, 3])
        assertQuantError(["tiny/model.safetensors", "8-byte"]) { try open(tiny) }
        // Bad JSON.
        var badJSON = bytes
        badJSON[8] = UInt8(ascii: "[")
        badJSON[9] = UInt8(ascii: "}")
        let bj = try corrupt("badjson", badJSON)
        assertQuantError(["badjson/model.safetensors", "JSON"]) { try open(bj) }
        // Overlapping offsets: two tensors claim the same bytes.
        let overlapBytes = try safetensorsBytes([
            STTensor(name: "a", dtype: "F32", shape: [4], data: [UInt8](repeating: 0, count: 16)),
            STTensor(name: "b", dtype: "F32", shape: [4], data: [UInt8](repeating: 0, count: 16)),
        ]) { h in h["b"] = ["dtype": "F32", "shape": [4], "data_offsets": [8, 24]] }
        let ov = try corrupt("overlap", overlapBytes)
        assertQuantError(["overlap/model.safetensors", "tensors a and b overlap"]) { try open(ov) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))

        // Directory-level problems.
        let noModel = try corrupt("nomodel", [])
        try FileManager.default.removeItem(at: noModel.appendingPathComponent("model.safetensors"))
        assertQuantError(["nomodel", "no model.safetensors"]) { try open(noModel) }
        let badConfig = try corrupt("badconfig", bytes)
        try Data("{\"model_type\": \"gpt2\", \"n_embd\": 64, \"n_layer\": 2, \"n_head\": 5, \"n_positions\": 32, \"vocab_size\": 50257}".utf8)
            .write(to: badConfig.appendingPathComponent("config.json"))
        assertQuantError(["badconfig/config.json", "n_head 5"]) { try open(badConfig) }
    }

    private func lastByOffset(_ bytes: [UInt8], _ headerLen: Int) throws -> String {
        let h = try JSONSerialization.jsonObject(with: Data(bytes[8 ..< 8 + headerLen])) as! [String: Any]
        var best = ("", -1)
        for (k, v) in h where k != "__metadata__" {
            let end = ((v as! [String: Any])["data_offsets"] as! [NSNumber])[1].intValue
            if end > best.1 { best = (k, end) }
        }
        return best.0
    }
}

final class Llama2cReaderTests: XCTestCase {
    /// Test 7: truncated, trailing bytes, absurd headers → QuantError naming the file.
    func testMalformedLlama2c() throws {
        let dir = try makeTempDir(self, "l2c")
        let tok = try Stories.tokenizer()
        let good = dir.appendingPathComponent("good.bin")
        try writeLlama2c(good, layers: 2)
        XCTAssertNoThrow(try Checkpoint.open(good, tokenizer: tok))
        let bytes = try readBytes(good)
        func check(_ name: String, _ b: [UInt8], _ needles: [String]) throws {
            let u = dir.appendingPathComponent(name)
            try Data(b).write(to: u)
            assertQuantError([u.path] + needles) { _ = try Checkpoint.open(u, tokenizer: tok) }
        }
        try check("trunc.bin", Array(bytes.prefix(bytes.count - 4)), ["truncated"])
        try check("trunc-header.bin", Array(bytes.prefix(20)), ["28-byte header"])
        try check("empty.bin", [], ["28-byte header"])
        try check("trailing.bin", bytes + [0, 0, 0, 0], ["4 unexpected trailing bytes"])
        func header(_ values: [Int32]) -> [UInt8] {
            var b = bytes
            values.withUnsafeBytes { for i in 0 ..< 28 { b[i] = $0[i] } }
            return b
        }
        // dim, hidden, layers, heads, kv_heads, vocab, seq
        try check("negdim.bin", header([-64, 172, 2, 8, 4, 512, 32]), ["d_model -64"])
        try check("neglayers.bin", header([64, 172, -2, 8, 4, 512, 32]), ["n_layer -2"])
        try check("heads.bin", header([64, 172, 2, 7, 7, 512, 32]), ["not divisible by n_head 7"])
        try check("kvheads.bin", header([64, 172, 2, 8, 3, 512, 32]), ["n_kv_head 3"])
        try check("zeroseq.bin", header([64, 172, 2, 8, 4, 512, 0]), ["n_ctx 0"])
        try check("hugevocab.bin", header([64, 172, 2, 8, 4, Int32.max, 32]), ["vocab_size"])
        try check("minvocab.bin", header([64, 172, 2, 8, 4, Int32.min, 32]), ["vocab_size"])
        try check("hugedims.bin", header([65536, 262144, 1024, 1, 1, 4_000_000, 1 << 20]), ["truncated"])
        // A .safetensors path is refused with a pointer to the directory form.
        let st = dir.appendingPathComponent("model.safetensors")
        try Data([0]).write(to: st)
        assertQuantError([st.path, "directory"]) { _ = try Checkpoint.open(st) }
        assertQuantError([dir.appendingPathComponent("nope.bin").path, "no such file"]) {
            _ = try Checkpoint.open(dir.appendingPathComponent("nope.bin"))
        }
    }
}
