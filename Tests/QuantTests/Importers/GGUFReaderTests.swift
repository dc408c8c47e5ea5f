import CKernels
import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

final class GGUFReaderTests: XCTestCase {
    func write(_ b: [UInt8], _ dir: URL, _ name: String = "m.gguf") throws -> URL {
        let u = dir.appendingPathComponent(name)
        try Data(b).write(to: u)
        return u
    }

    func testParsesTinyLlamaAndMapsNames() throws {
        let dir = try makeTempDir(self, "gguf")
        var g = GGUFBuilder.tinyLlama()
        let u = try write(g.build(), dir)
        let f = try GGUFFile(u)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.tensors.count, 11)
        XCTAssertEqual(f.tensors[0].shape, [8, 32]) // ggml ne [32, 8] reversed
        XCTAssertEqual(f.metadata["llama.rope.freq_base"], .f32(10000))
        let ck = try Checkpoint.open(u)
        XCTAssertEqual(ck.architecture, "llama")
        XCTAssertEqual(ck.hparams, HParams(nLayer: 1, nHead: 2, nKVHead: 1, dModel: 32, dFF: 64, nCtx: 64, vocabSize: 8,
                                           normEps: 1e-5, ropeTheta: 10000, tiedEmbeddings: true))
        XCTAssertEqual(ck.tensors.map(\.name), ["tok_embeddings.weight", "layers.0.attention_norm.weight", "layers.0.attention.wq.weight",
                                               "layers.0.attention.wk.weight", "layers.0.attention.wv.weight", "layers.0.attention.wo.weight",
                                               "layers.0.ffn_norm.weight", "layers.0.feed_forward.w1.weight", "layers.0.feed_forward.w2.weight",
                                               "layers.0.feed_forward.w3.weight", "norm.weight"])
        XCTAssertEqual(ck.tensors.first { $0.name == "layers.0.feed_forward.w2.weight" }!.shape, [32, 64])
        guard case .data(let td) = ck.tokenizer else { return XCTFail("expected TokenizerSource.data") }
        XCTAssertEqual(td.model, "llama")
        XCTAssertEqual(td.tokens.count, 8)
        XCTAssertEqual(td.scores?[3], -3)
        XCTAssertEqual(td.tokenTypes?[0], 2)
        XCTAssertEqual(td.bos, 1); XCTAssertEqual(td.eos, 2); XCTAssertEqual(td.addBos, true)
        XCTAssertEqual(td.chatTemplate, "{{ x }}")
        XCTAssertNil(td.merges)
        // readFloats dequantizes every row with ggml_blocks.c
        for t in ck.tensors {
            var y = [Float](repeating: .nan, count: t.elementCount)
            t.readFloats(into: &y)
            guard case .ggml(let gt) = t.payload else { return XCTFail() }
            var ref = [Float](repeating: 0, count: t.elementCount)
            XCTAssertEqual(qlm_ggml_dequantize_row(gt.rawValue, t.bytes.baseAddress!, &ref, Int64(t.elementCount)), 0)
            XCTAssertTrue(bitsEqual(y, ref), t.name)
        }
    }

    func testErrorsNameFileAndField() throws {
        let dir = try makeTempDir(self, "ggufbad")
        var g = GGUFBuilder.tinyLlama()
        let good = g.build()
        func check(_ b: [UInt8], _ needles: [String]) throws {
            let u = try write(b, dir, "bad.gguf")
            assertQuantError([u.path] + needles) { _ = try GGUFReader.read(u, tokenizer: nil, formats: Architectures.formats) }
        }
        var probe = GGUFBuilder.tinyLlama(); _ = probe.build()
        let firstName = probe.fields.first { $0.2 == "tensor name length" }!.0
        try check(Array(good.prefix(firstName + 12)), ["truncated", "name of tensor info 0"])
        var b = good; b[4] = 1
        try check(b, ["unsupported GGUF version 1"])
        b = good; b[0] = 0x47; b[1] = 0
        try check(b, ["bad magic"])
        try check(Array(good.prefix(40)), ["metadata_kv_count 18 is absurd"])
        try check(Array(good.prefix(good.count - 1)), ["past the end"])
        var arch = GGUFBuilder.tinyLlama(); arch.kvs[0].1 = .str("mamba")
        try check(arch.build(), ["general.architecture 'mamba'"])
        var miss = GGUFBuilder.tinyLlama(); miss.tensors.remove(at: 3)
        try check(miss.build(), ["blk.0.attn_k.weight"])
        var ty = GGUFBuilder.tinyLlama(); ty.tensors[2].2 = 16 // iq2_xxs
        try check(ty.build(), ["blk.0.attn_q.weight", "iq2_xxs"])
        var dims = GGUFBuilder.tinyLlama(); _ = dims.build()
        b = good
        let nd = dims.fields.first { $0.2 == "n_dims" }!.0
        b[nd] = 5
        try check(b, ["token_embd.weight", "n_dims 5"])
        var al = GGUFBuilder.tinyLlama(); al.kvs[1].1 = .u32(3)
        try check(al.build(), ["general.alignment"])
        b = good
        let off = dims.fields.filter { $0.2 == "tensor offset" }[2].0
        b[off] = 8
        try check(b, ["blk.0.attn_q.weight", "not aligned"])
        b = good
        let cnt = dims.fields.first { $0.2 == "array count" }!.0
        b[cnt + 6] = 0xFF
        try check(b, ["tokenizer.ggml.tokens", "longer than"])
        b = good
        let vt = dims.fields.filter { $0.2 == "value type" }[2].0
        b[vt] = 13
        try check(b, ["llama.block_count", "unknown value type 13"])
    }

    /// --type keep: q8_0 / q4_0 / q4_1 / q5_0 / q5_1 / iq4_nl / f16 / f32 tensors are the GGUF's
    /// bytes exactly (q4_0 / q5_0 / q5_1 / q8_0 matrices regrouped into their 8-row layouts: unpacked, the
    /// GGUF's bytes); the
    /// others (bf16 here) become q8_0 and are listed.
    func testKeepPassesBlocksThroughUnchanged() throws {
        let dir = try makeTempDir(self, "ggufkeep")
        var g = GGUFBuilder.tinyLlama()
        let u = try write(g.build(), dir)
        let ck = try Checkpoint.open(u)
        let tok = dir.appendingPathComponent("tok.bin")
        try Data(llama2cTokenizer(["<unk>", "<s>", "</s>", "a", "b", "c", "d", "e"])).write(to: tok)
        let payload = TokenizerPayload(kind: "llama2c", blob: try readBytes(tok), bos: 1, eos: 2, sourceFiles: [tok])
        for zstd in [nil, 3] as [Int?] {
            let out = dir.appendingPathComponent("keep\(zstd ?? 0).qlm")
            var opts = ConvertOptions(policy: .keep(), zstdLevel: zstd)
            opts.zstdMinBytes = 64
            let s = try Converter.convert(ck, tokenizer: payload, options: opts, to: out)
            XCTAssertEqual(s.convertedTensors, ["layers.0.feed_forward.w3.weight": "bf16->q8_0"])
            XCTAssertEqual(s.passthroughTensors.count, 10)
            let f = try QLMFile(out)
            for t in ck.tensors {
                let info = try f.info(t.name)
                let d = try f.load(t.name)
                try f.verify(info)
                if let same = t.passthrough(to: info.type.plainType) {
                    XCTAssertEqual(withExtendedLifetime(d) { plainRowBytes(d.bytes, info) }, [UInt8](same), "\(t.name) bytes changed")
                } else {
                    XCTAssertEqual(info.type, .q8_0, t.name)
                }
            }
            XCTAssertEqual(try f.info("tok_embeddings.weight").type, .q8_0x8) // QuantPolicy.keepRegrouped
            XCTAssertEqual(try f.info("layers.0.attention.wq.weight").type, .q4_0x8)
            XCTAssertEqual(try f.info("layers.0.attention.wk.weight").type, .q4_1)
            XCTAssertEqual(try f.info("layers.0.attention.wv.weight").type, .f16)
            XCTAssertEqual(try f.info("layers.0.attention.wo.weight").type, .q5_0x8) // QuantPolicy.keepRegrouped
            XCTAssertEqual(try f.info("layers.0.feed_forward.w1.weight").type, .q5_1x8)
            XCTAssertEqual(try f.info("layers.0.feed_forward.w2.weight").type, .iq4_nlx8)
        }
        // --type q4_0: only the q4_0 tensor passes through; others are requantized.
        let out = dir.appendingPathComponent("q4.qlm")
        let s = try Converter.convert(ck, tokenizer: payload, options: ConvertOptions(policy: QuantPolicy(defaultType: .q4_0)), to: out)
        XCTAssertEqual(Set(s.passthroughTensors), ["layers.0.attention.wq.weight", "layers.0.attention_norm.weight", "layers.0.ffn_norm.weight", "norm.weight"])
        // The CLI prints and lists what --type keep converted.
        let cli = try Executables.run("convert", [u.path, "--tokenizer", tok.path, "-o", dir.appendingPathComponent("cli.qlm").path, "--type", "keep", "--json"])
        XCTAssertEqual(cli.status, 0, cli.stderr)
        XCTAssertTrue(cli.stdout.contains("\"converted_tensors\""), cli.stdout)
        XCTAssertTrue(cli.stdout.contains("bf16->q8_0"), cli.stdout)
        let txt = try Executables.run("convert", [u.path, "--tokenizer", tok.path, "-o", dir.appendingPathComponent("cli2.qlm").path, "--type", "keep", "-q"])
        XCTAssertTrue(txt.stdout.contains("layers.0.feed_forward.w3.weight: bf16->q8_0"), txt.stdout)
        // inspect lists the kept mix (tensors per type, the tokenizer blob included)
        let ins = try Executables.run("convert", ["inspect", dir.appendingPathComponent("cli2.qlm").path])
        for kept in ["q5_0x8 x1", "q4_0x8 x1", "q8_0x8 x1", "q5_1x8 x1", "iq4_nlx8 x1", "q8_0 x1", "q5_0x8 = q5_0 rows in 8-row groups"] {
            XCTAssertTrue(ins.stdout.contains(kept), "\(kept): \(ins.stdout)")
        }
        XCTAssertTrue(ins.stdout.contains("layers.0.feed_forward.w2.weight   iq4_nlx8  raw"), ins.stdout) // the type column fits 8 letters
    }
}

/// A llama2.c tokenizer.bin for these tokens (scores 0).
func llama2cTokenizer(_ toks: [String]) -> [UInt8] {
    var b: [UInt8] = []
    func i32(_ v: Int32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
    i32(Int32(toks.map(\.utf8.count).max() ?? 1))
    for t in toks { i32(0); i32(Int32(t.utf8.count)); b += Array(t.utf8) }
    return b
}
