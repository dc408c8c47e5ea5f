import CKernels
import Foundation
import Quant
import TestSupport
import XCTest

/// `convert --format gguf` (GGUFExport): QuantLM's tensors as a GGUF that the official `gguf`
/// Python package reads back to the same numbers.
final class GGUFExportTests: XCTestCase {
    private func tinyModel(_ dir: URL) throws -> (Checkpoint, TokenizerPayload, URL) {
        var g = GGUFBuilder.tinyLlama()
        let u = dir.appendingPathComponent("m.gguf")
        try Data(g.build()).write(to: u)
        let tok = dir.appendingPathComponent("tok.bin")
        try Data(llama2cTokenizer(["<unk>", "<s>", "</s>", "a", "b", "c", "d", "e"])).write(to: tok)
        let payload = TokenizerPayload(kind: "llama2c", blob: try readBytes(tok), bos: 1, eos: 2, sourceFiles: [tok])
        return (try Checkpoint.open(u), payload, u)
    }

    /// Every tensor (q8_0 / q4_0 / q4_0x8 / iq4_nlx8 / q4_1 / f16 / f32) dequantizes in the gguf package to
    /// exactly QuantLM's floats, under its GGUF name, with ggml's dims; the source's metadata keys
    /// come along in order (general.file_type dropped, general.quantized_by added).
    func testExportReadsBackIdentically() throws {
        let dir = try makeTempDir(self, "ggufexport")
        let (ck, payload, src) = try tinyModel(dir)
        let qlm = dir.appendingPathComponent("m.qlm")
        let policy = QuantPolicy(defaultType: .q4_0, overrides: [("*.wv.weight", .f16), ("*.wk.weight", .q4_1),
                                                                 ("tok_embeddings.weight", .q8_0), ("*.w2.weight", .q4_0x8),
                                                                 ("*.w3.weight", .iq4_nlx8)])
        _ = try Converter.convert(ck, tokenizer: payload, options: ConvertOptions(policy: policy, threads: 1), to: qlm)
        let out = dir.appendingPathComponent("exported.gguf")
        let f = try QLMFile(qlm)
        let names = Dictionary(uniqueKeysWithValues: ck.tensors.map { ($0.name, $0.key.description) })
        try GGUFExport.write(f, like: try GGUFFile(src), ggufNames: names, to: out)

        let dump = dir.appendingPathComponent("dump")
        try FileManager.default.createDirectory(at: dump, withIntermediateDirectories: true)
        let json = try referencePython("gguf_oracle.py", ["read", out.path, dump.path])
        struct R: Decodable { struct T: Decodable { var type: String; var shape: [Int] }; var tensors: [String: T]; var keys: [String] }
        let r = try JSONDecoder().decode(R.self, from: Data(json.utf8))
        let srcKeys = try GGUFFile(src).keys.filter { $0 != "general.file_type" }
        XCTAssertEqual(r.keys, srcKeys + ["general.quantized_by"])
        XCTAssertEqual(r.tensors.count, ck.tensors.count)
        let expectType: [QuantType: String] = [.q8_0: "Q8_0", .q4_0: "Q4_0", .q4_0x8: "Q4_0", .iq4_nlx8: "IQ4_NL", .q4_1: "Q4_1", .f16: "F16", .f32: "F32"]
        for t in f.tensors where t.type != .u8 {
            let g = try XCTUnwrap(r.tensors[names[t.name]!], t.name)
            XCTAssertEqual(g.type, expectType[t.type], t.name)
            XCTAssertEqual(g.shape, t.shape.reversed(), t.name)
            let theirs = try readBytes(dump.appendingPathComponent(names[t.name]! + ".f32")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let d = try f.load(t.name)
            var ours = [Float](repeating: 0, count: t.rows * t.rowLength)
            withExtendedLifetime(d) {
                for row in 0 ..< t.rows {
                    ours.withUnsafeMutableBufferPointer {
                        qlm_get_row(t.type.rawValue, d.bytes.baseAddress, Int64(t.rows), Int64(t.rowLength), Int64(row), $0.baseAddress! + row * t.rowLength)
                    }
                }
            }
            XCTAssertEqual(theirs, ours, "\(t.name) (\(t.type))")
        }
        XCTAssertEqual(try GGUFFile(out).metadata["general.quantized_by"]?.string, "QuantLM")
    }

    /// A tensor in a type ggml lacks is an error naming the tensor and the type; nothing is written.
    func testNonGGMLTypeIsAnErrorNamingTheTensor() throws {
        let dir = try makeTempDir(self, "ggufexportbad")
        let (ck, payload, src) = try tinyModel(dir)
        let qlm = dir.appendingPathComponent("m.qlm")
        let policy = QuantPolicy(defaultType: .q8_0, overrides: [("layers.0.attention.wq.weight", .iq4_k16)])
        _ = try Converter.convert(ck, tokenizer: payload, options: ConvertOptions(policy: policy, threads: 1), to: qlm)
        let out = dir.appendingPathComponent("bad.gguf")
        let names = Dictionary(uniqueKeysWithValues: ck.tensors.map { ($0.name, $0.key.description) })
        XCTAssertThrowsError(try GGUFExport.write(QLMFile(qlm), like: GGUFFile(src), ggufNames: names, to: out)) { e in
            XCTAssertTrue("\(e)".contains("layers.0.attention.wq.weight is iq4_k16, which ggml lacks"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }
}
