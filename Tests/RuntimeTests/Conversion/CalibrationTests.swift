import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// GPTQ calibration on the real stories260K model (docs/quantization.md).
final class CalibrationTests: XCTestCase {
    /// The default calibration documents never overlap the documents the quality table evaluates
    /// (TinyStories' first 200): stories 500..<1000 of the first 1000.
    func testDefaultCalibrationDocumentsAreDisjointFromEvaluation() {
        let cal = Calibration.defaultDocuments(total: 1000)
        XCTAssertEqual(cal, 500 ..< 1000)
        XCTAssertFalse(cal.overlaps(0 ..< 200))
    }

    /// A plain text (no separator lines) is one token stream cut into chunks of ctx, as many as
    /// --calibrate-tokens asks for, spread over the text; both statistics come from one pass and
    /// agree (importance = diag(H) / tokens); products over the same input share one H.
    func testChunksModeOverAPlainText() throws {
        let ckpt = try Checkpoint.open(Stories.model(), tokenizer: Stories.tokenizer())
        let payload = try TokenizerPayloads.make(ckpt.tokenizer!, vocabSize: ckpt.hparams.vocabSize)
        let full = try String(contentsOf: SharedData.path("data/tinystories/tinystories_valid_first1000.txt"), encoding: .utf8)
        let plain = full.split(separator: "\n").filter { $0 != "<|endoftext|>" }.prefix(300).joined(separator: "\n")
        var seen: [(Int, Int)] = []
        let r = try Calibration.collect(checkpoint: ckpt, tokenizer: payload, text: plain, separator: "<|endoftext|>",
                                        documents: 0 ..< 1, maxTokens: 600, ctx: 64, threads: 2,
                                        progress: { seen.append(($0, $1)) })
        XCTAssertEqual(r.mode, "chunks")
        XCTAssertEqual(r.documentsUsed, 10, "ceil(600 / 64) chunks")
        XCTAssertEqual(r.tokens, 640)
        XCTAssertGreaterThan(r.chunksAvailable, 10)
        XCTAssertEqual(seen.map(\.0), Array(1 ... 10))
        XCTAssertTrue(seen.allSatisfy { $0.1 == 10 })
        let matrices = ckpt.tensors.filter { $0.shape.count >= 2 }.map(\.name)
        XCTAssertEqual(Set(r.importance.keys), Set(matrices))
        XCTAssertEqual(Set(r.hessians.keys), Set(matrices))
        let q = "layers.1.attention.wq.weight", k = "layers.1.attention.wk.weight"
        XCTAssertEqual(r.hessians[q], r.hessians[k], "q and k read the same input")
        let h = try XCTUnwrap(r.hessians[q]), imp = try XCTUnwrap(r.importance[q])
        let n = imp.count
        XCTAssertEqual(h.count, n * n)
        for j in 0 ..< n {
            // H comes from an f32 product, the mean squares from double sums: 1e-4 relative
            XCTAssertEqual(Double(imp[j]), h[j * n + j] / 640, accuracy: 1e-4 * max(1e-6, h[j * n + j] / 640), "column \(j)")
        }
        // importance only: no H at all
        let r2 = try Calibration.collect(checkpoint: ckpt, tokenizer: payload, text: plain, separator: "<|endoftext|>",
                                         documents: 0 ..< 1, maxTokens: 64, ctx: 64, threads: 1, hessians: false)
        XCTAssertTrue(r2.hessians.isEmpty)
        XCTAssertEqual(Set(r2.importance.keys), Set(matrices))
    }

    /// Sequential GPTQ (each stage's statistics from the model whose earlier stages are already
    /// quantized) with 40 calibration stories (500..<540, ≤ 6,000 tokens) lowers the model's
    /// output error on 20 held-out stories (0..<20) versus plain iq4_k16 rounding: KL mean at
    /// most 0.8× (measured ≈ 0.6×), and perplexity closer to f32.
    func testSequentialGPTQLowersModelErrorOnStories() throws {
        let model = try SharedData.path("models/stories260K/stories260K.bin")
        let tok = try SharedData.path("models/stories260K/tok512.bin")
        let textURL = try SharedData.path("data/tinystories/tinystories_valid_first1000.txt")
        let text = try String(contentsOf: textURL, encoding: .utf8)
        let ckpt = try Checkpoint.open(model, tokenizer: tok)
        let payload = try TokenizerPayloads.make(ckpt.tokenizer!, vocabSize: ckpt.hparams.vocabSize)
        let policy = QuantPolicy(defaultType: .iq4_k16)
        var stages: [String] = []
        let r = try Calibration.collectSequential(checkpoint: ckpt, tokenizer: payload, text: text, separator: "<|endoftext|>",
                                                  documents: 500 ..< 540, maxTokens: 6000, ctx: 512, threads: 2,
                                                  policy: policy, damp: 0.01, log: { stages.append($0) })
        XCTAssertFalse(r.documents.overlaps(0 ..< 20))
        let matrices = ckpt.tensors.filter { $0.shape.count >= 2 }.map(\.name)
        XCTAssertEqual(Set(r.hessians.keys), Set(matrices), "every matrix gets statistics")
        // 5 layers × (q/k/v, wo, w1/w3, w2) + the tied classifier
        XCTAssertEqual(stages.count, 21, stages.joined(separator: "\n"))
        XCTAssertTrue(stages[0].hasSuffix("layers.0.attention.wq.weight layers.0.attention.wk.weight layers.0.attention.wv.weight"), stages[0])
        XCTAssertTrue(stages[20].hasSuffix("tok_embeddings.weight"), stages[20])

        let plainURL = Fixtures.tempRoot.appendingPathComponent("calib-plain.qlm")
        let seqURL = Fixtures.tempRoot.appendingPathComponent("calib-seq.qlm")
        let f32URL = Fixtures.tempRoot.appendingPathComponent("calib-f32.qlm")
        _ = try Converter.convert(ckpt, tokenizer: payload, options: ConvertOptions(policy: QuantPolicy(defaultType: .f32), threads: 2), to: f32URL)
        _ = try Converter.convert(ckpt, tokenizer: payload, options: ConvertOptions(policy: policy, threads: 2), to: plainURL)
        var opts = ConvertOptions(policy: policy, threads: 2)
        opts.hessians = r.hessians
        let s = try Converter.convert(ckpt, tokenizer: payload, options: opts, to: seqURL)
        XCTAssertEqual(Set(s.gptqTensors), Set(matrices))
        let e = try Perplexity.evaluate([Fixtures.load(f32URL), Fixtures.load(plainURL), Fixtures.load(seqURL)],
                                        names: ["f32", "plain", "seq"], text: text,
                                        proto: .documents(separator: "<|endoftext|>", maxDocs: 20, ctx: 512))
        let kPlain = e.models[1].klMean!, kSeq = e.models[2].klMean!
        XCTAssertLessThan(kSeq, 0.8 * kPlain, "KL: sequential GPTQ \(kSeq) vs plain \(kPlain)")
        XCTAssertLessThan(e.models[2].perplexity, e.models[1].perplexity)
        XCTAssertGreaterThan(e.models[2].perplexity, e.models[0].perplexity * 0.99)
    }

    /// q4_mix (iq4_k16, f16 norms, wk of layers 0-1 q8_0) stays within 4.5 bits/weight on
    /// stories260K counting every stored bit (measured 4.481).
    func testQ4MixFitsTheBitBudget() throws {
        let ckpt = try Checkpoint.open(SharedData.path("models/stories260K/stories260K.bin"),
                                       tokenizer: SharedData.path("models/stories260K/tok512.bin"))
        let payload = try TokenizerPayloads.make(ckpt.tokenizer!, vocabSize: ckpt.hparams.vocabSize)
        let p = try XCTUnwrap(QuantPreset(name: "q4_mix"))
        let policy = QuantPolicy(defaultType: p.defaultType, overrides: p.overrides)
        XCTAssertEqual(policy.type(for: "layers.0.attention_norm.weight", shape: [64]), .f16)
        XCTAssertEqual(policy.type(for: "layers.1.attention.wk.weight", shape: [32, 64]), .q8_0)
        XCTAssertEqual(policy.type(for: "layers.2.attention.wk.weight", shape: [32, 64]), .iq4_k16)
        let s = try Converter.convert(ckpt, tokenizer: payload, options: ConvertOptions(policy: policy, threads: 2),
                                      to: Fixtures.tempRoot.appendingPathComponent("q4mix.qlm"))
        XCTAssertLessThanOrEqual(s.bitsPerWeight, 4.5)
        XCTAssertGreaterThan(s.bitsPerWeight, 4.46)
    }
}
