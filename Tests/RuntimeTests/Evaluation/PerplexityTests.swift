import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

final class PerplexityTests: XCTestCase {
    func tinyStories() throws -> String {
        try String(contentsOf: SharedData.path("data/tinystories/tinystories_valid_first1000.txt"), encoding: .utf8)
    }

    /// Documents protocol on the real model: agrees with the float64 numpy reference within 0.05%.
    func testStoriesDocumentsPerplexityMatchesNumpy() throws {
        let text = try SharedData.path("data/tinystories/tinystories_valid_first1000.txt")
        let ref = try Fixtures.json(Fixtures.python("llama_ref.py", [
            "ppl-docs", "--model", try SharedData.path("models/stories260K/stories260K.bin").path,
            "--tokenizer", try SharedData.path("models/stories260K/tok512.bin").path,
            "--text", text.path, "--max-docs", "200", "--ctx", "512"]))
        let lm = try Fixtures.load(Fixtures.stories(.f32), maxBatch: 128)
        let r = try Perplexity.evaluate([lm], names: ["f32"], text: tinyStories(),
                                        proto: .documents(separator: "<|endoftext|>", maxDocs: 200, ctx: 512))
        XCTAssertEqual(r.tokensScored, ref["tokens_scored"] as? Int)
        XCTAssertEqual(r.documents, 200)
        let refPPL = ref["ppl"] as! Double
        XCTAssertEqual(r.models[0].perplexity, refPPL, accuracy: refPPL * 0.0005)
    }

    /// Stride protocol on the synthetic GPT-2: first 4,096 tokens of wiki.test.raw, within 0.05%.
    func testGPT2StridePerplexityMatchesNumpy() throws {
        let wiki = try String(contentsOf: SharedData.path("data/wikitext-2-raw/wiki.test.raw"), encoding: .utf8)
        let lm = try Fixtures.load(Fixtures.gpt2(.f32), maxBatch: 64)
        let ids = Array(lm.tokenizer.encode(wiki).prefix(4096))
        XCTAssertEqual(ids.count, 4096)
        let idsFile = Fixtures.tempRoot.appendingPathComponent("wiki4096.u32")
        try Data(ids.flatMap { withUnsafeBytes(of: UInt32($0).littleEndian, Array.init) }).write(to: idsFile)
        let ctx = Fixtures.gpt2Dims.ctx, stride = ctx / 2
        let ref = try Fixtures.json(Fixtures.python("gpt2_ref.py", [
            "ppl-stride", "--ckpt", try Fixtures.gpt2Checkpoint().path, "--ids-file", idsFile.path,
            "--ctx", "\(ctx)", "--stride", "\(stride)"]))
        let r = try Perplexity.evaluate([lm], names: ["f32"], text: wiki, proto: .stride(ctx: ctx, stride: stride, maxTokens: 4096))
        XCTAssertEqual(r.tokensScored, ref["tokens_scored"] as? Int)
        let refPPL = ref["ppl"] as! Double
        XCTAssertEqual(r.models[0].perplexity, refPPL, accuracy: refPPL * 0.0005)
    }

    func testComparisonAgainstItselfIsExact() throws {
        let a = try Fixtures.load(Fixtures.stories(.q8_0)), b = try Fixtures.load(Fixtures.stories(.q8_0))
        let r = try Perplexity.evaluate([a, b], names: ["a", "b"], text: tinyStories(),
                                        proto: .documents(separator: "<|endoftext|>", maxDocs: 5, ctx: 256))
        XCTAssertEqual(r.models[1].perplexity, r.models[0].perplexity)
        XCTAssertEqual(r.models[1].klMean!, 0, accuracy: 1e-6)
        XCTAssertEqual(r.models[1].top1Agreement, 100)
    }

    func testQuantizedComparisonReportsSensibleNumbers() throws {
        let f32 = try Fixtures.load(Fixtures.stories(.f32)), q4 = try Fixtures.load(Fixtures.stories(.q4_0))
        let r = try Perplexity.evaluate([f32, q4], names: ["f32", "q4_0"], text: tinyStories(),
                                        proto: .documents(separator: "<|endoftext|>", maxDocs: 20, ctx: 512))
        let m = r.models[1]
        XCTAssertGreaterThan(m.perplexity, r.models[0].perplexity, "4-bit should cost some perplexity on this model")
        XCTAssertGreaterThan(m.klMean!, 0)
        XCTAssertGreaterThanOrEqual(m.klP99!, m.klMean!)
        XCTAssertLessThan(m.top1Agreement!, 100)
        XCTAssertGreaterThan(m.top1Agreement!, 50)
        XCTAssertEqual(m.bitsPerWeight, 4.7, accuracy: 0.1) // 4.5 per block, plus padded 172-rows and f32 norms
        XCTAssertLessThan(m.fileBytes, r.models[0].fileBytes / 5)
    }

    func testZstdChangesNoNumber() throws {
        let raw = try Fixtures.load(Fixtures.stories(.q4_0)), z = try Fixtures.load(Fixtures.stories(.q4_0, zstd: 3))
        let r = try Perplexity.evaluate([raw, z], names: ["raw", "zstd"], text: tinyStories(),
                                        proto: .documents(separator: "<|endoftext|>", maxDocs: 10, ctx: 512))
        XCTAssertEqual(r.models[0].perplexity, r.models[1].perplexity)
        XCTAssertEqual(r.models[1].klMean!, 0, accuracy: 0)
    }

    func testBadInputsAreClearErrors() throws {
        let lm = try Fixtures.load(Fixtures.stories(.q8_0))
        let gpt2 = try Fixtures.load(Fixtures.gpt2(.q8_0))
        func message(_ text: String, _ p: PerplexityProtocol, model: LoadedModel? = nil) -> String {
            do {
                _ = try Perplexity.evaluate([model ?? lm], names: ["m"], text: text, proto: p)
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertTrue(message("", .stride(ctx: 64, stride: 32)).contains("empty"))
        // One GPT-2 token (the Llama tokenizer always adds BOS, so any text has two).
        XCTAssertTrue(message("a", .stride(ctx: 64, stride: 32), model: gpt2).contains("at least 2"))
        XCTAssertTrue(message("Once upon a time there was a dog.", .documents(separator: "<|sep|>", maxDocs: nil, ctx: 64)).contains("never occurs"))
        XCTAssertTrue(message("Once upon a time there was a dog.", .stride(ctx: 4096, stride: 32)).contains("exceeds the model's context"))
        XCTAssertTrue(message("Once upon a time there was a dog.", .stride(ctx: 64, stride: 0)).contains("--stride"))
        XCTAssertTrue(message("Once upon a time there was a dog.", .stride(ctx: 64, stride: 65)).contains("--stride"))
        for m in [message("", .stride(ctx: 64, stride: 32)), message("x y", .documents(separator: "<|sep|>", maxDocs: nil, ctx: 64))] {
            XCTAssertFalse(m.contains("\n"), "errors are one line: \(m)")
        }
    }

    func testStrideWindowsScoreEveryTokenOnce() throws {
        // With stride < ctx every position 1..N-1 is scored exactly once.
        let lm = try Fixtures.load(Fixtures.stories(.q8_0))
        let text = try String(tinyStories().prefix(4000))
        let n = lm.tokenizer.encode(text).count
        for (ctx, stride) in [(64, 32), (100, 7), (512, 512), (64, 64)] {
            let r = try Perplexity.evaluate([lm], names: ["m"], text: text, proto: .stride(ctx: ctx, stride: stride))
            // stride == ctx: the first token of each later window has no context inside it (HF's label shift).
            let windows = stride == ctx ? (n + ctx - 1) / ctx : 1
            XCTAssertEqual(r.tokensScored, n - windows, "ctx \(ctx) stride \(stride)")
        }
    }
}

/// `run bench`'s accounting (not its timings): the KV bytes attention reads per decoded token.
final class BenchAccountingTests: XCTestCase {
    /// stories260K (5 layers, 4 KV heads of 8 → 32-float rows): a dense query at position p reads
    /// p + 1 keys and values per layer; banded:3 with 1 sink reads min(p + 1, 1 + 3) of them.
    func testKVBytesPerDecodedToken() throws {
        let url = try Fixtures.stories(.q8_0)
        let lm = try Fixtures.load(url)
        let hp = lm.model.shape
        let row = lm.model.cache.rowBytes
        XCTAssertEqual(row, hp.kvDim * 4, "f32 rows")
        let prompt = 5, gen = 7
        for (attention, sinks, visible) in [("dense", 0, { (p: Int) in p + 1 }), ("banded:3", 1, { (p: Int) in min(p + 1, 1 + 3) })] {
            let r = try Bench.model(path: url.path, threads: 1, promptTokens: prompt, genTokens: gen, reps: 1, probeBytes: 1 << 20,
                                    attention: AttentionConfig(attention: attention, sinks: sinks, kvType: .f32))
            let want = (prompt ..< prompt + gen).map { visible($0) * 2 * row * hp.nLayer }.reduce(0, +)
            XCTAssertEqual(r.kvBytesPerToken, Double(want) / Double(gen), attention)
            XCTAssertEqual(r.bandwidthRatioWithKV / r.bandwidthRatio, (Double(r.weightBytesPerToken) + r.kvBytesPerToken) / Double(r.weightBytesPerToken),
                           accuracy: 1e-9, attention)
            // The per-token breakdown partitions the decode time (one rep: the very same interval).
            let b = r.decodeBreakdown
            XCTAssertGreaterThan(b.products, 0, attention)
            XCTAssertGreaterThan(b.attention, 0, attention)
            XCTAssertGreaterThanOrEqual(b.other, 0, attention)
            XCTAssertEqual(b.products + b.attention + b.other, 1000 / r.decodeTokensPerSecond.median, accuracy: 1e-6 * 1000 / r.decodeTokensPerSecond.median)
        }
        // Several reps: the ratio is the median of each rep's decode GB/s over the probe reads
        // around that rep (interleaved with the reps), not a ratio of two separate medians.
        let r = try Bench.model(path: url.path, threads: 1, promptTokens: prompt, genTokens: gen, reps: 3, probeBytes: 1 << 20,
                                attention: AttentionConfig(kvType: .f32))
        XCTAssertEqual(r.decodeTokensPerSecondPerRep.count, 3)
        XCTAssertEqual(r.probeGBPerSecondAroundRep.count, 3)
        XCTAssertTrue(r.probeGBPerSecondAroundRep.allSatisfy { $0 > 0 && $0.isFinite })
        XCTAssertEqual(r.decodeTokensPerSecond.median, r.decodeTokensPerSecondPerRep.sorted()[1])
        let perRep = (0 ..< 3).map { Double(r.weightBytesPerToken) * r.decodeTokensPerSecondPerRep[$0] / 1e9 / r.probeGBPerSecondAroundRep[$0] }
        XCTAssertEqual(r.bandwidthRatio, perRep.sorted()[1], accuracy: 1e-12)
    }
}
