import Foundation
import Quant
import Runtime
import XCTest

/// --memory-budget: parsing, the planner (which tensors stay resident, how many buffers, the
/// minimum-budget error) and bit-identical results with layers streamed from raw and zstd files.
final class MemoryBudgetTests: XCTestCase {
    // MARK: parsing

    func testBudgetParsing() throws {
        XCTAssertEqual(try MemoryBudget.parse("64M"), 64 << 20)
        XCTAssertEqual(try MemoryBudget.parse("128m"), 128 << 20)
        XCTAssertEqual(try MemoryBudget.parse("1G"), 1 << 30)
        XCTAssertEqual(try MemoryBudget.parse("512K"), 512 << 10)
        XCTAssertEqual(try MemoryBudget.parse("512k"), 512 << 10)
        XCTAssertEqual(try MemoryBudget.parse("1048576"), 1_048_576)
        XCTAssertEqual(try MemoryBudget.parse("64MiB"), 64 << 20)
        XCTAssertEqual(try MemoryBudget.parse("64MB"), 64 << 20)
        XCTAssertEqual(try MemoryBudget.parse(" 2g "), 2 << 30)
        for bad in ["", "M", "abc", "0", "0M", "-5M", "-1", "12X", "1.5G", "64 M", "1e6", "99999999999999999999", "1ib", "9000000000G"] {
            XCTAssertThrowsError(try MemoryBudget.parse(bad), "'\(bad)' should be refused") { e in
                XCTAssertTrue("\(e)".contains("--memory-budget"), "\(e)")
            }
        }
        XCTAssertThrowsError(try MemoryBudget.parse("-5M")) { XCTAssertTrue("\($0)".contains("negative"), "\($0)") }
        XCTAssertThrowsError(try MemoryBudget.parse("0")) { XCTAssertTrue("\($0)".contains("greater than 0"), "\($0)") }
        XCTAssertEqual(MemoryBudget.format(64 << 20), "64M")
        XCTAssertEqual(MemoryBudget.format(1 << 30), "1G")
        XCTAssertEqual(MemoryBudget.format(1000), "1000")
    }

    // MARK: planner

    /// The dense f32 cache's size (DenseKVCache.bytes) for `positions`.
    func kvBytes(_ hp: HParams, positions: Int) -> Int { 2 * hp.nLayer * positions * hp.kvDim * 4 }

    func plan(_ file: QLMFile, budget: Int?, positions: Int = 64, maxBatch: Int = 16) throws -> MemoryPlan {
        try MemoryPlan.make(model: file.url.lastPathComponent, tensors: file.tensors, metadata: file.metadata,
                            settings: MemorySettings(kvBytes: kvBytes(file.metadata.hparams, positions: positions), maxBatch: maxBatch),
                            budget: budget)
    }

    func testPlannerStories260K() throws {
        for zstd in [nil, 3] {
            let file = try QLMFile(Fixtures.stories(.q8_0, zstd: zstd))
            let hp = file.metadata.hparams
            XCTAssertEqual(hp.nLayer, 5)
            let layerNames = (0 ..< hp.nLayer).map { l in
                ["attention.wq", "attention.wk", "attention.wv", "attention.wo", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"]
                    .map { "layers.\(l).\($0).weight" }
            }
            let everything = file.tensors.map(\.name).filter { $0 != "tokenizer" }

            // No budget, or a budget that holds everything: nothing streams.
            for budget in [nil, 1 << 30] {
                let p = try plan(file, budget: budget)
                XCTAssertFalse(p.streams)
                XCTAssertEqual(p.bufferCount, 0)
                XCTAssertEqual(p.residentTensors, everything)
                XCTAssertEqual(p.residentLayers, Array(0 ..< 5))
                XCTAssertEqual(p.streamedTensors, [])
                XCTAssertLessThanOrEqual(p.totalBytes, budget ?? .max)
            }
            let all = try plan(file, budget: nil)
            let layerBytes = layerNames[0].reduce(0) { $0 + (try! file.info($1).rawLength + 63) / 64 * 64 }

            // Exactly the minimum: two layer buffers, every layer streams, only embeddings, norms
            // (and the classifier, tied here) stay resident.
            let minimal = try plan(file, budget: all.minimumBytes)
            XCTAssertTrue(minimal.streams)
            XCTAssertEqual(minimal.bufferCount, 2)
            XCTAssertEqual(minimal.bufferBytes, layerBytes)
            XCTAssertEqual(minimal.residentLayers, [])
            XCTAssertEqual(minimal.streamedLayers, Array(0 ..< 5))
            XCTAssertEqual(minimal.streamedTensors, layerNames.flatMap { $0 })
            XCTAssertEqual(Set(minimal.residentTensors), Set(everything).subtracting(layerNames.flatMap { $0 }))
            XCTAssertTrue(minimal.residentTensors.contains("tok_embeddings.weight"))
            XCTAssertTrue(minimal.residentTensors.contains("layers.3.ffn_norm.weight"))
            XCTAssertEqual(minimal.totalBytes, minimal.minimumBytes)
            XCTAssertEqual(minimal.stagingBytes > 0, zstd != nil)
            XCTAssertLessThan(minimal.totalBytes, all.totalBytes)

            // One more layer's worth: layer 0 becomes resident; two more: layers 0 and 1.
            for extra in 1 ... 2 {
                let p = try plan(file, budget: all.minimumBytes + extra * layerBytes)
                XCTAssertEqual(p.residentLayers, Array(0 ..< extra))
                XCTAssertEqual(p.streamedLayers, Array(extra ..< 5))
                XCTAssertEqual(p.bufferCount, 2)
                XCTAssertTrue(p.residentTensors.contains("layers.0.attention.wq.weight"))
                XCTAssertFalse(p.streamedTensors.contains("layers.0.attention.wq.weight"))
                XCTAssertLessThanOrEqual(p.totalBytes, all.minimumBytes + extra * layerBytes)
            }

            // One byte short: the error names the model, the minimum and its parts.
            XCTAssertThrowsError(try plan(file, budget: all.minimumBytes - 1)) { e in
                let m = "\(e)"
                XCTAssertTrue(m.hasPrefix("--memory-budget \(all.minimumBytes - 1) is below the minimum for \(file.url.lastPathComponent) with these settings: "), m)
                XCTAssertTrue(m.contains("MiB (resident "), m)
                XCTAssertTrue(m.contains(" + 2 layer buffers "), m)
                XCTAssertTrue(m.contains(" + KV "), m)
                XCTAssertTrue(m.contains(" + scratch "), m)
            }
            XCTAssertThrowsError(try plan(file, budget: 16 << 10)) { e in
                XCTAssertTrue("\(e)".hasPrefix("--memory-budget 16K is below the minimum for"), "\(e)")
            }
            // The KV cache is planned: more positions, higher minimum.
            XCTAssertGreaterThan(try plan(file, budget: nil, positions: 256).minimumBytes, all.minimumBytes)
        }
    }

    func testPlannerSyntheticGPT2() throws {
        // The 2-layer fixture: two layer buffers cost as much as both layers, so it never streams.
        let small = try QLMFile(Fixtures.gpt2(.q8_0))
        let all = try plan(small, budget: nil)
        XCTAssertEqual(all.minimumBytes, all.totalBytes)
        XCTAssertFalse(try plan(small, budget: all.totalBytes).streams)
        XCTAssertThrowsError(try plan(small, budget: all.totalBytes - 1)) { e in
            XCTAssertTrue("\(e)".contains("is below the minimum for gpt2-q8_0.qlm"), "\(e)")
        }
        // Six layers: wte, wpe, ln_f and every block's norms and biases stay resident; the
        // matrices c_attn, attn.c_proj, c_fc, mlp.c_proj stream.
        let file = try QLMFile(gpt2Layers(6, zstd: 3))
        let p0 = try plan(file, budget: nil)
        let p = try plan(file, budget: p0.minimumBytes)
        XCTAssertEqual(p.streamedLayers, Array(0 ..< 6))
        XCTAssertEqual(p.bufferCount, 2)
        XCTAssertEqual(p.streamedTensors.count, 24)
        XCTAssertTrue(p.streamedTensors.allSatisfy { $0.hasSuffix(".weight") && !$0.contains("ln_") })
        for name in ["wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias", "h.0.ln_1.weight", "h.5.attn.c_attn.bias", "h.2.mlp.c_proj.bias"] {
            XCTAssertTrue(p.residentTensors.contains(name), name)
        }
        XCTAssertFalse(p.residentTensors.contains("tokenizer"))
        XCTAssertGreaterThan(p.stagingBytes, 0)
        XCTAssertEqual(p.streamedStoredBytesPerPass, p.streamedTensors.reduce(0) { $0 + (try! file.info($1).storedLength) })
        let p3 = try plan(file, budget: p0.minimumBytes + 3 * p.bufferBytes)
        XCTAssertEqual(p3.residentLayers, [0, 1, 2])
        XCTAssertEqual(p3.streamedLayers, [3, 4, 5])
    }

    // MARK: streaming gives the same numbers

    static let lock = NSLock()
    static var made: [String: URL] = [:]

    /// A synthetic GPT-2 with `layers` blocks (d 64, vocab 50257), q8_0, optionally zstd.
    func gpt2Layers(_ layers: Int, zstd: Int?) throws -> URL {
        let key = "gpt2-\(layers)L-\(zstd ?? 0)"
        Self.lock.lock(); defer { Self.lock.unlock() }
        if let u = Self.made[key] { return u }
        let dir = Fixtures.tempRoot.appendingPathComponent("gpt2-\(layers)L-ckpt")
        if !FileManager.default.fileExists(atPath: dir.appendingPathComponent("config.json").path) {
            _ = try Fixtures.python("make_gpt2_checkpoint.py", ["--out", dir.path, "--n-layer", "\(layers)", "--n-embd", "64",
                                                                "--n-head", "4", "--n-ctx", "128", "--seed", "1"])
        }
        let ckpt = try Checkpoint.open(dir)
        let payload = try TokenizerPayloads.make(ckpt.tokenizer!, vocabSize: ckpt.hparams.vocabSize)
        let out = Fixtures.tempRoot.appendingPathComponent("\(key).qlm")
        // Small zstd chunks, so a matrix is several chunks.
        _ = try Converter.convert(ckpt, tokenizer: payload, options: ConvertOptions(policy: QuantPolicy(defaultType: .q8_0),
                                                                                    zstdLevel: zstd, chunkBytes: 4096), to: out)
        Self.made[key] = out
        return out
    }

    func load(_ url: URL, budget: Int?, maxBatch: Int = 64) throws -> LoadedModel {
        try LoadedModel(path: url.path, options: LoadOptions(threads: 2, maxBatch: maxBatch, memoryBudget: budget))
    }

    /// Unlimited vs a budget that streams every layer through two buffers vs one that keeps
    /// some layers resident: every logit bit-identical, in one batch and in several.
    func checkLogits(_ url: URL, ids: [Int32], file: StaticString = #filePath, line: UInt = #line) throws {
        for maxBatch in [64, 5] {
            let unlimited = try load(url, budget: nil, maxBatch: maxBatch)
            let want = try Fixtures.logits(unlimited, ids)
            let minimum = unlimited.plan.minimumBytes
            var budgets = [minimum, minimum + unlimited.plan.totalBytes / 8, 1 << 30]
            if maxBatch == 5 { budgets = [minimum] }
            for budget in budgets {
                let lm = try load(url, budget: budget, maxBatch: maxBatch)
                XCTAssertLessThanOrEqual(lm.plan.totalBytes, budget, file: file, line: line)
                if budget == minimum {
                    XCTAssertEqual(lm.plan.bufferCount, 2, file: file, line: line)
                    XCTAssertEqual(lm.plan.residentLayers, [], file: file, line: line)
                }
                let got = try Fixtures.logits(lm, ids)
                XCTAssertEqual(got.count, want.count, file: file, line: line)
                for (a, b) in zip(got, want) {
                    XCTAssertTrue(a.map(\.bitPattern) == b.map(\.bitPattern),
                                  "logits differ with budget \(budget), batch \(maxBatch)", file: file, line: line)
                }
                // Each batch streams every streamed layer once.
                let batches = (ids.count + maxBatch - 1) / maxBatch
                XCTAssertEqual(lm.weights.streamedStoredBytes, batches * lm.plan.streamedStoredBytesPerPass, file: file, line: line)
                // A second pass over the same model (the loader wraps around) gives the same again.
                let again = try Fixtures.logits(lm, ids)
                XCTAssertTrue(again.last!.map(\.bitPattern) == want.last!.map(\.bitPattern), file: file, line: line)
            }
        }
    }

    func testStreamedLogitsBitIdenticalStoriesRawAndZstd() throws {
        let ids: [Int32] = [1, 403, 407, 261, 378, 436, 271, 261, 445, 260, 340, 267, 402, 286, 384, 282]
        try checkLogits(Fixtures.stories(.q8_0), ids: ids)
        try checkLogits(Fixtures.stories(.q4_0, zstd: 3), ids: ids)
    }

    func testStreamedLogitsBitIdenticalGPT2RawAndZstd() throws {
        let ids: [Int32] = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13, 50256, 11, 290]
        try checkLogits(gpt2Layers(6, zstd: nil), ids: ids)
        try checkLogits(gpt2Layers(6, zstd: 3), ids: ids)
    }

    func testGenerationSameTokensUnderBudget() throws {
        for url in [try Fixtures.stories(.q8_0, zstd: 3), try gpt2Layers(6, zstd: 3)] {
            let opts = GenerationOptions(maxNewTokens: 40, sampling: SamplingConfig(temperature: 0), stopAtEndOfText: false)
            let prompt = "Once upon a time"
            func run(_ budget: Int?) throws -> (GenerationResult, LoadedModel) {
                let lm = try LoadedModel(path: url.path, options: LoadOptions(threads: 2, memoryBudget: budget,
                                                                              sizing: Generator.sizing(prompt: prompt, options: opts)))
                return (try Generator.generate(lm, prompt: prompt, options: opts) { _ in }, lm)
            }
            let (want, lm0) = try run(nil)
            // Generation sizes the KV cache to prompt + new tokens, and plans exactly that.
            XCTAssertEqual(lm0.model.cache.capacity, want.promptTokens.count + 40)
            XCTAssertEqual(want.memoryPlan.kvBytes, lm0.model.cache.bytes)
            XCTAssertEqual(want.memoryPlan.streamedBytesPerToken, 0)
            let (got, lm) = try run(lm0.plan.minimumBytes)
            XCTAssertEqual(got.tokens, want.tokens, url.lastPathComponent)
            XCTAssertEqual(got.text, want.text)
            XCTAssertEqual(got.memoryPlan.bufferCount, 2)
            XCTAssertEqual(got.memoryPlan.budgetBytes, lm0.plan.minimumBytes)
            XCTAssertEqual(got.memoryPlan.streamedBytesPerToken, Double(lm.plan.streamedStoredBytesPerPass))
            XCTAssertGreaterThan(got.memoryPlan.streamedRawBytesPerToken, 0)
            XCTAssertGreaterThan(got.memory.peakRSSAnon, 0)
            XCTAssertThrowsError(try run(lm0.plan.minimumBytes - 1)) { e in
                XCTAssertTrue("\(e)".contains("is below the minimum for \(url.lastPathComponent)"), "\(e)")
            }
        }
    }
}
