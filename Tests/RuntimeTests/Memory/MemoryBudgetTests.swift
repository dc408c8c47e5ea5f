import CKernels
import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

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

    /// Plans are pure: the baseline and the margin are inputs (0 here unless a test says otherwise).
    func plan(_ file: QLMFile, budget: Int?, positions: Int = 64, maxBatch: Int = 16, baseline: Int = 0, margin: Int = 0) throws -> MemoryPlan {
        try MemoryPlan.make(model: file.url.lastPathComponent, tensors: file.tensors, metadata: file.metadata,
                            settings: MemorySettings(kvBytes: kvBytes(file.metadata.hparams, positions: positions), maxBatch: maxBatch),
                            budget: budget, baseline: baseline, margin: margin)
    }

    func aligned(_ n: Int) -> Int { (n + 63) / 64 * 64 }

    /// The smallest budget in lo...hi whose plan satisfies `property` (monotone in the budget).
    func firstBudget(_ file: QLMFile, from lo: Int, to hi: Int, _ property: (MemoryPlan) -> Bool) throws -> Int {
        try firstBudget(from: lo, to: hi, plan: { try self.plan(file, budget: $0) }, property)
    }

    func firstBudget(from lo: Int, to hi: Int, plan: (Int) throws -> MemoryPlan, _ property: (MemoryPlan) -> Bool) throws -> Int {
        var lo = lo, hi = hi
        let top = try plan(hi)
        precondition(property(top))
        while lo < hi {
            let mid = (lo + hi) / 2
            if try property(plan(mid)) { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    func testPlannerStories260K() throws {
        for zstd in [nil, 3] {
            let file = try QLMFile(Fixtures.stories(.q8_0, zstd: zstd))
            let hp = file.metadata.hparams
            XCTAssertEqual(hp.nLayer, 5)
            XCTAssertTrue(hp.tiedEmbeddings)
            let layerNames = (0 ..< hp.nLayer).map { l in
                ["attention.wq", "attention.wk", "attention.wv", "attention.wo", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"]
                    .map { "layers.\(l).\($0).weight" }
            }
            let everything = file.tensors.map(\.name).filter { $0 != "tokenizer" }
            let norms = everything.filter { !layerNames.joined().contains($0) && $0 != "tok_embeddings.weight" }
            let emb = try file.info("tok_embeddings.weight")

            // No budget, or a budget that holds everything: nothing streams.
            for budget in [nil, 1 << 30] {
                let p = try plan(file, budget: budget)
                XCTAssertFalse(p.streams)
                XCTAssertFalse(p.outputStreams)
                XCTAssertFalse(p.embeddingStreams)
                XCTAssertEqual(p.bufferCount, 0)
                XCTAssertEqual(p.residentTensors, everything)
                XCTAssertEqual(p.residentLayers, Array(0 ..< 5))
                XCTAssertEqual(p.streamedTensors, [])
                XCTAssertLessThanOrEqual(p.totalBytes, budget ?? .max)
            }
            let all = try plan(file, budget: nil)
            XCTAssertEqual(try plan(file, budget: all.totalBytes).streams, false)
            let layerBytes = layerNames[0].reduce(0) { $0 + aligned(try! file.info($1).rawLength) }

            // Exactly the minimum: every layer and the (tied) classifier stream through two
            // layer buffers, embedding rows are read per token; only norms stay resident.
            let minimal = try plan(file, budget: all.minimumBytes)
            XCTAssertTrue(minimal.streams)
            XCTAssertEqual(minimal.bufferCount, 2)
            XCTAssertEqual(minimal.bufferBytes, layerBytes)
            XCTAssertEqual(minimal.residentLayers, [])
            XCTAssertEqual(minimal.streamedLayers, Array(0 ..< 5))
            XCTAssertEqual(minimal.streamedTensors, layerNames.flatMap { $0 })
            if zstd != nil {
                // One 1 MiB zstd chunk holds the whole table: a row lookup costs more memory than
                // the table, so the minimum keeps the classifier; the rest is as below.
                XCTAssertFalse(minimal.outputStreams)
                XCTAssertFalse(minimal.embeddingStreams)
                XCTAssertEqual(Set(minimal.residentTensors), Set(norms + ["tok_embeddings.weight"]))
                XCTAssertEqual(minimal.totalBytes, minimal.minimumBytes)
                continue
            }
            XCTAssertEqual(Set(minimal.residentTensors), Set(norms))
            XCTAssertTrue(minimal.outputStreams)
            XCTAssertEqual(minimal.outputTensor, "tok_embeddings.weight")
            XCTAssertEqual(minimal.outputChunks.first?.lowerBound, 0)
            XCTAssertEqual(minimal.outputChunks.last?.upperBound, hp.vocabSize)
            XCTAssertTrue(zip(minimal.outputChunks, minimal.outputChunks.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
            XCTAssertTrue(minimal.outputChunks.allSatisfy { $0.count * emb.rowBytes <= minimal.bufferBytes })
            XCTAssertTrue(minimal.embeddingStreams)
            XCTAssertGreaterThan(minimal.embeddingBufferBytes, 0)
            XCTAssertEqual(minimal.totalBytes, minimal.minimumBytes)
            XCTAssertLessThan(minimal.totalBytes, all.totalBytes)
            XCTAssertEqual(minimal.streamedStoredBytesPerPass,
                           layerNames.joined().reduce(emb.storedLength) { $0 + (try! file.info($1).storedLength) })

            // The classifier is smaller than a layer and every token reads it: it is the first
            // thing to become resident (it brings the embedding rows back with it), as soon as
            // it fits (at most its own size above the minimum).
            let withClassifier = try firstBudget(file, from: all.minimumBytes, to: all.totalBytes) { !$0.outputStreams }
            XCTAssertLessThanOrEqual(withClassifier, all.minimumBytes - minimal.embeddingBufferBytes + aligned(emb.rawLength))
            let pc = try plan(file, budget: withClassifier)
            XCTAssertFalse(pc.outputStreams)
            XCTAssertFalse(pc.embeddingStreams)
            XCTAssertEqual(pc.residentLayers, [])
            XCTAssertTrue(pc.residentTensors.contains("tok_embeddings.weight"))
            XCTAssertLessThan(pc.estimatedStoredBytesPerToken, minimal.estimatedStoredBytesPerToken)
            XCTAssertTrue(try plan(file, budget: withClassifier - 1).outputStreams)

            // Then layers, in order: one more layer's worth keeps layer 0, two more 0 and 1.
            for extra in 1 ... 2 {
                let p = try plan(file, budget: withClassifier + extra * layerBytes)
                XCTAssertFalse(p.outputStreams)
                XCTAssertEqual(p.residentLayers, Array(0 ..< extra))
                XCTAssertEqual(p.streamedLayers, Array(extra ..< 5))
                XCTAssertEqual(p.bufferCount, 2)
                XCTAssertTrue(p.residentTensors.contains("layers.0.attention.wq.weight"))
                XCTAssertFalse(p.streamedTensors.contains("layers.0.attention.wq.weight"))
                XCTAssertLessThanOrEqual(p.totalBytes, withClassifier + extra * layerBytes)
            }

            // One byte short: the error names the model, the minimum and its parts.
            XCTAssertThrowsError(try plan(file, budget: all.minimumBytes - 1)) { e in
                let m = "\(e)"
                XCTAssertTrue(m.hasPrefix("--memory-budget \(all.minimumBytes - 1) is below the minimum for \(file.url.lastPathComponent) with these settings: "), m)
                XCTAssertTrue(m.contains("MiB (baseline 0.0 MiB + margin 0.0 MiB + resident "), m)
                XCTAssertTrue(m.contains(" + 2 layer buffers "), m)
                XCTAssertTrue(m.contains(" + KV "), m)
                XCTAssertTrue(m.contains(" + scratch "), m)
                XCTAssertTrue(m.contains("; the classifier streams)"), m)
            }
            XCTAssertThrowsError(try plan(file, budget: 16 << 10)) { e in
                XCTAssertTrue("\(e)".hasPrefix("--memory-budget 16K is below the minimum for"), "\(e)")
            }
            // The KV cache is planned: more positions, higher minimum.
            XCTAssertGreaterThan(try plan(file, budget: nil, positions: 256).minimumBytes, all.minimumBytes)
        }
    }

    /// The budget is the process's: the baseline and the margin come off the top, and the
    /// minimum (and its error) includes them.
    func testPlannerSubtractsBaselineAndMargin() throws {
        let file = try QLMFile(gpt2Layers(6, zstd: 3))
        let baseline = 26 << 20, margin = 3 << 20
        let bare = try plan(file, budget: nil)
        XCTAssertEqual(try plan(file, budget: nil, baseline: baseline, margin: margin).minimumBytes, bare.minimumBytes + baseline + margin)
        for room in [bare.minimumBytes, bare.minimumBytes + 200_000, bare.totalBytes - 1, bare.totalBytes] {
            let p0 = try plan(file, budget: room)
            let p = try plan(file, budget: room + baseline + margin, baseline: baseline, margin: margin)
            XCTAssertEqual(p.baselineBytes, baseline)
            XCTAssertEqual(p.marginBytes, margin)
            XCTAssertEqual(p.residentLayers, p0.residentLayers)
            XCTAssertEqual(p.outputChunks, p0.outputChunks)
            XCTAssertEqual(p.embeddingStreams, p0.embeddingStreams)
            XCTAssertEqual(p.totalBytes, p0.totalBytes)
            XCTAssertLessThanOrEqual(p.baselineBytes + p.marginBytes + p.totalBytes, room + baseline + margin)
        }
        // The budget that held everything without a baseline streams once the baseline is counted.
        XCTAssertFalse(try plan(file, budget: bare.totalBytes).streams)
        XCTAssertTrue(try plan(file, budget: bare.totalBytes, baseline: 1 << 20, margin: 0).streams)
        XCTAssertThrowsError(try plan(file, budget: bare.minimumBytes + baseline + margin - 1, baseline: baseline, margin: margin)) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("is below the minimum for gpt2-6L-3.qlm with these settings: \(String(format: "%.1f", Double(bare.minimumBytes + baseline + margin) / 1048576)) MiB (baseline 26.0 MiB + margin 3.0 MiB + resident "), m)
        }
        // Loading: LoadOptions passes the baseline through; nil measures VmRSS (> 0 on Linux).
        var opts = LoadOptions(threads: 1, memoryBudget: 1 << 30, memoryBaseline: 12345)
        opts.memoryMargin = 678
        let lm = try LoadedModel(path: gpt2Layers(6, zstd: 3).path, options: opts)
        XCTAssertEqual(lm.plan.baselineBytes, 12345)
        XCTAssertEqual(lm.plan.marginBytes, 678)
        // The measured baseline is this process's VmRSS, so the budget is 1 GiB above it: a fixed
        // 1 GiB failed under ASan, whose shadow memory and quarantine put the test process at ~1 GiB.
        var rss: Int64 = 0, fileRes: Int64 = 0
        _ = qlm_statm(&rss, &fileRes)
        let measured = try LoadedModel(path: gpt2Layers(6, zstd: 3).path, options: LoadOptions(threads: 1, memoryBudget: Int(rss) + (1 << 30)))
        XCTAssertGreaterThan(measured.plan.baselineBytes, 1 << 20)
        // The margin also keeps room for the other models alive in this process (the ledger).
        XCTAssertEqual(measured.plan.marginBytes, MemoryPlan.defaultMarginBytes + AutoBudget.committed(excluding: ObjectIdentifier(measured)))
        let report = measured.memoryReport(tokens: 1)
        XCTAssertEqual(report.baselineBytes, measured.plan.baselineBytes)
        let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
        XCTAssertTrue(json.contains("\"baseline_bytes\":\(measured.plan.baselineBytes)"), json)
        XCTAssertTrue(json.contains("\"classifier_chunks\":0"), json)
    }

    func testPlannerSyntheticGPT2() throws {
        // The 2-layer fixture: the classifier (wte, 50257 rows) is most of it; it streams
        // before the two layers do, which stay resident.
        let small = try QLMFile(Fixtures.gpt2(.q8_0))
        let all = try plan(small, budget: nil)
        XCTAssertFalse(try plan(small, budget: all.totalBytes).streams)
        let tight = try plan(small, budget: all.totalBytes - 1)
        XCTAssertTrue(tight.outputStreams)
        XCTAssertTrue(tight.embeddingStreams)
        XCTAssertEqual(tight.residentLayers, [0, 1])
        XCTAssertEqual(tight.streamedLayers, [])
        XCTAssertLessThan(all.minimumBytes, all.totalBytes)
        XCTAssertThrowsError(try plan(small, budget: all.minimumBytes - 1)) { e in
            XCTAssertTrue("\(e)".contains("is below the minimum for gpt2-q8_0.qlm"), "\(e)")
        }
        // Six layers: wpe, ln_f and every block's norms and biases stay resident; at the minimum
        // the matrices c_attn, attn.c_proj, c_fc, mlp.c_proj and the tied wte stream.
        let file = try QLMFile(gpt2Layers(6, zstd: 3))
        let wte = try file.info("wte.weight")
        let p0 = try plan(file, budget: nil)
        let p = try plan(file, budget: p0.minimumBytes)
        XCTAssertEqual(p.streamedLayers, Array(0 ..< 6))
        XCTAssertEqual(p.bufferCount, 2)
        XCTAssertEqual(p.streamedTensors.count, 24)
        XCTAssertTrue(p.streamedTensors.allSatisfy { $0.hasSuffix(".weight") && !$0.contains("ln_") })
        for name in ["wpe.weight", "ln_f.weight", "ln_f.bias", "h.0.ln_1.weight", "h.5.attn.c_attn.bias", "h.2.mlp.c_proj.bias"] {
            XCTAssertTrue(p.residentTensors.contains(name), name)
        }
        XCTAssertFalse(p.residentTensors.contains("tokenizer"))
        XCTAssertFalse(p.residentTensors.contains("wte.weight"))
        XCTAssertTrue(p.outputStreams)
        XCTAssertEqual(p.outputTensor, "wte.weight")
        XCTAssertEqual(p.embeddingTensor, "wte.weight")
        // zstd: classifier chunks are whole zstd chunks (4096-byte chunks in this fixture).
        let rpc = 4096 / wte.rowBytes
        XCTAssertTrue(p.outputChunks.allSatisfy { $0.lowerBound % rpc == 0 })
        XCTAssertGreaterThan(p.outputChunks.count, 1)
        XCTAssertGreaterThan(p.stagingBytes, 0)
        XCTAssertEqual(p.streamedStoredBytesPerPass,
                       p.streamedTensors.reduce(wte.storedLength) { $0 + (try! file.info($1).storedLength) })
        // wte is 3.3 MiB, a layer 50 KiB: one byte short of everything, streaming the last
        // layers costs far fewer bytes per token than streaming wte, so wte stays.
        let p1 = try plan(file, budget: p0.totalBytes - 1)
        XCTAssertFalse(p1.outputStreams)
        XCTAssertFalse(p1.streamedLayers.isEmpty)
        XCTAssertLessThan(p1.streamedStoredBytesPerPass, wte.storedLength)
        // Without room for wte, every layer that fits stays resident and the classifier streams.
        let p2 = try plan(file, budget: p.totalBytes + 6 * p.bufferBytes)
        XCTAssertEqual(p2.residentLayers, Array(0 ..< 6))
        XCTAssertTrue(p2.outputStreams)
        XCTAssertEqual(p2.streamedTensors, [])
        XCTAssertEqual(p2.streamedStoredBytesPerPass, wte.storedLength)
        // With wte's room, it is resident and layers stream instead.
        let layerBytes = p.bufferBytes
        let pw = try plan(file, budget: p.totalBytes - p.embeddingBufferBytes + aligned(wte.rawLength) + 3 * layerBytes)
        XCTAssertFalse(pw.outputStreams)
        XCTAssertEqual(pw.residentLayers, [0, 1, 2])
        XCTAssertEqual(pw.streamedLayers, [3, 4, 5])
    }

    // MARK: a row range of a product is the same bits as those rows of the whole product

    func testRowRangeProductsMatchWholeProduct() throws {
        let rows = 301, cols = 256
        var g = SystemRandomNumberGenerator()
        let w = (0 ..< rows * cols).map { _ in Float.random(in: -1 ... 1, using: &g) }
        for T in [1, 3, 16] {
            let x = (0 ..< T * cols).map { _ in Float.random(in: -1 ... 1, using: &g) }
            for type in QuantType.weightTypes {
                let rowBytes = type.rowSize(cols)
                let q = UnsafeMutableRawPointer.allocate(byteCount: rows * rowBytes, alignment: 64)
                defer { q.deallocate() }
                w.withUnsafeBufferPointer { _ = qlm_quantize_rows(type.rawValue, $0.baseAddress!, q, Int64(rows), Int64(cols), 1) }
                for threads in [1, 2] {
                    let c = Compute(threads: threads, maxCols: cols, maxBatch: 16)
                    var whole = [Float](repeating: 0, count: T * rows), parts = whole
                    x.withUnsafeBufferPointer { xp in
                        whole.withUnsafeMutableBufferPointer {
                            c.linear(Matrix(name: "w", type: type, rows: rows, cols: cols, data: q), xp.baseAddress!, T: T, out: $0.baseAddress!)
                        }
                        // Uneven chunks, not multiples of the kernels' 4-row groups; for a row-grouped
                        // type (q4_0x8) every cut is at a group boundary (the rule readers follow),
                        // the last range holding the plain rows past the last group.
                        let cuts = type.rowGroup == 1 ? [0 ..< 7, 7 ..< 150, 150 ..< 151, 151 ..< 301]
                                                      : [0 ..< 8, 8 ..< 152, 152 ..< 160, 160 ..< 301]
                        for r in cuts {
                            parts.withUnsafeMutableBufferPointer {
                                c.linear(Matrix(name: "w", type: type, rows: r.count, cols: cols, data: q + r.lowerBound * rowBytes),
                                         xp.baseAddress!, T: T, out: $0.baseAddress! + r.lowerBound, ldOut: rows)
                            }
                        }
                    }
                    XCTAssertTrue(whole.map(\.bitPattern) == parts.map(\.bitPattern), "\(type) T \(T) threads \(threads)")
                }
            }
        }
    }

    // MARK: streaming gives the same numbers

    static let lock = NSLock()
    static var made: [String: URL] = [:]

    /// A synthetic GPT-2 with `layers` blocks (d 64, vocab 50257), q8_0, optionally zstd.
    func gpt2Layers(_ layers: Int, zstd: Int?, type: QuantType = .q8_0) throws -> URL {
        let key = "gpt2-\(layers)L-\(zstd ?? 0)" + (type == .q8_0 ? "" : "-\(type)")
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
        _ = try Converter.convert(ckpt, tokenizer: payload, options: ConvertOptions(policy: QuantPolicy(defaultType: type),
                                                                                    zstdLevel: zstd, chunkBytes: 4096), to: out)
        Self.made[key] = out
        return out
    }

    /// Loads with a zero baseline and margin, so the plans are the pure planner's.
    func load(_ url: URL, budget: Int?, maxBatch: Int = 64, direct: Bool = false) throws -> LoadedModel {
        var opts = LoadOptions(threads: 2, maxBatch: maxBatch, memoryBudget: budget, memoryBaseline: 0)
        opts.memoryMargin = 0
        opts.directReads = direct
        return try LoadedModel(path: url.path, options: opts)
    }

    /// Unlimited vs the minimum (every layer and the classifier stream, embedding rows read per
    /// token) vs the classifier resident with layers streaming vs everything but the classifier
    /// resident vs everything: every logit bit-identical, in one batch and in several; in one
    /// batch also with O_DIRECT reads of each streamed item's file span (raw files; zstd items
    /// and a zstd classifier are read tensor by tensor either way).
    func checkLogits(_ url: URL, ids: [Int32], streamsClassifier: Bool = true, file: StaticString = #filePath, line: UInt = #line) throws {
        var sawStreamedClassifier = false, sawStreamedEmbedding = false
        defer {
            XCTAssertEqual(sawStreamedClassifier, streamsClassifier, "a plan streamed the classifier", file: file, line: line)
            XCTAssertEqual(sawStreamedEmbedding, streamsClassifier, "a plan read embedding rows per token", file: file, line: line)
        }
        for maxBatch in [64, 5] {
            let unlimited = try load(url, budget: nil, maxBatch: maxBatch)
            let want = try Fixtures.logits(unlimited, ids)
            let minimum = unlimited.plan.minimumBytes
            // The loaded model's settings (its KV cache, its batch), as LoadedModel plans them.
            let qlm = unlimited.file
            let settings = MemorySettings(kvBytes: unlimited.model.cache.bytes, maxBatch: maxBatch)
            let classifierResident = try firstBudget(from: minimum, to: unlimited.plan.totalBytes, plan: {
                try MemoryPlan.make(model: url.lastPathComponent, tensors: qlm.tensors, metadata: qlm.metadata, settings: settings,
                                    budget: $0, baseline: 0, margin: 0)
            }) { !$0.outputStreams }
            var budgets = [minimum, classifierResident, classifierResident + unlimited.plan.totalBytes / 8,
                           unlimited.plan.totalBytes - 1, 1 << 30]
            if maxBatch == 5 { budgets = [minimum, unlimited.plan.totalBytes - 1] }
            // Buffered; O_DIRECT with the default pieces and loader threads; O_DIRECT cut into
            // one-block pieces read by 3 loader threads (items overlap at their boundaries).
            for (direct, split) in maxBatch == 64 ? [(false, false), (true, false), (true, true)] : [(false, false)] {
            for budget0 in budgets {
                // Direct buffers hold the block-aligned spans: a few KiB more than the minimum.
                let budget = budget0 + (direct ? 64 << 10 : 0)
                if split { setenv("QUANTLM_STREAM_PIECES", "3", 1); setenv("QUANTLM_STREAM_PIECE_KIB", "4", 1) }
                let lm: LoadedModel
                do {
                    defer { unsetenv("QUANTLM_STREAM_PIECES"); unsetenv("QUANTLM_STREAM_PIECE_KIB") }
                    lm = try load(url, budget: budget, maxBatch: maxBatch, direct: direct)
                }
                XCTAssertLessThanOrEqual(lm.plan.totalBytes, budget, file: file, line: line)
                XCTAssertEqual(lm.plan.directReads, direct && lm.plan.streams, file: file, line: line)
                if lm.plan.directReads { XCTAssertEqual(lm.plan.bufferBytes % MemoryPlan.directAlignment, 0, file: file, line: line) }
                defer {
                    // Raw items are read with O_DIRECT where the file system takes it; zstd items never are.
                    let streamed = lm.plan.streamedTensors + (lm.plan.outputStreams ? [lm.plan.outputTensor] : [])
                    let raw = streamed.allSatisfy { (try? lm.file.info($0).encoding) == .raw }
                    let fsDirect = (try? DiskProbe.Reader(path: lm.file.path).usesDirectIO) ?? false
                    XCTAssertEqual(lm.weights.directItemsRead > 0, lm.plan.directReads && raw && fsDirect,
                                   "direct reads \(lm.weights.directItemsRead), file system takes O_DIRECT: \(fsDirect)", file: file, line: line)
                }
                if budget == minimum {
                    XCTAssertEqual(lm.plan.bufferCount, 2, file: file, line: line)
                    XCTAssertEqual(lm.plan.residentLayers, [], file: file, line: line)
                }
                sawStreamedClassifier = sawStreamedClassifier || lm.plan.outputStreams
                sawStreamedEmbedding = sawStreamedEmbedding || lm.plan.embeddingStreams
                if budget == classifierResident { XCTAssertFalse(lm.plan.outputStreams, file: file, line: line) }
                let got = try Fixtures.logits(lm, ids)
                XCTAssertEqual(got.count, want.count, file: file, line: line)
                for (a, b) in zip(got, want) {
                    XCTAssertTrue(a.map(\.bitPattern) == b.map(\.bitPattern),
                                  "logits differ with budget \(budget), batch \(maxBatch), direct \(direct), split \(split)", file: file, line: line)
                }
                // Each batch streams every streamed layer once.
                let batches = (ids.count + maxBatch - 1) / maxBatch
                XCTAssertEqual(lm.weights.streamedStoredBytes, batches * lm.plan.streamedStoredBytesPerPass, file: file, line: line)
                if lm.plan.directReads {
                    // bench's disk probe between passes drives the loader over the items; it counts nothing as streamed.
                    let probe = try lm.weights.probeDisk(bytes: 3 * lm.plan.streamedStoredBytesPerPass)
                    if let probe { XCTAssertEqual(probe.pieces, split ? 3 : TensorReader.defaultDirectPieces, file: file, line: line) }
                    XCTAssertEqual(lm.weights.streamedStoredBytes, batches * lm.plan.streamedStoredBytesPerPass, file: file, line: line)
                }
                // Embedding rows: a row (raw) or a chunk (zstd) at most per token.
                XCTAssertEqual(lm.weights.embeddingStoredBytes > 0, lm.plan.embeddingStreams, file: file, line: line)
                // A second pass over the same model (the loader wraps around) gives the same again.
                let again = try Fixtures.logits(lm, ids)
                XCTAssertTrue(again.last!.map(\.bitPattern) == want.last!.map(\.bitPattern), "again \(budget)", file: file, line: line)
            }
            }
        }
    }

    func testStreamedLogitsBitIdenticalStoriesRawAndZstd() throws {
        let ids: [Int32] = [1, 403, 407, 261, 378, 436, 271, 261, 445, 260, 340, 267, 402, 286, 384, 282]
        try checkLogits(Fixtures.stories(.q8_0), ids: ids)
        // One 1 MiB zstd chunk holds the whole 512-row table: a row lookup would need as much
        // memory as the table, so the classifier never streams here...
        try checkLogits(Fixtures.stories(.q4_0, zstd: 3), ids: ids, streamsClassifier: false)
        // ... with 2 KiB chunks (56 rows) it does.
        try checkLogits(storiesSmallChunks(), ids: ids)
    }

    /// stories260K in q4_0, zstd 3, 2 KiB chunks.
    func storiesSmallChunks() throws -> URL { try Stories.cached(.q4_0, zstd: 3, chunkBytes: 2048) }

    func testStreamedLogitsBitIdenticalGPT2RawAndZstd() throws {
        let ids: [Int32] = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13, 50256, 11, 290]
        try checkLogits(gpt2Layers(6, zstd: nil), ids: ids)
        try checkLogits(gpt2Layers(6, zstd: 3), ids: ids)
    }

    /// q4_0x8 (8-row groups): streamed classifier chunks and embedding row reads must cut at group
    /// boundaries; token 50256 is the plain row past the last group (vocab 50257 = 8 * 6282 + 1).
    func testStreamedLogitsBitIdenticalRowGroupedGPT2() throws {
        let ids: [Int32] = [464, 2068, 50256, 21831, 18045, 625, 262, 16931, 3290, 13, 50255, 11, 290]
        try checkLogits(gpt2Layers(3, zstd: nil, type: .q4_0x8), ids: ids)
        try checkLogits(gpt2Layers(3, zstd: 3, type: .q4_0x8), ids: ids)
    }

    /// The 2-layer GPT-2 fixture: wte is most of the model, so it streams while both layers stay resident.
    func testStreamedClassifierOnlyBitIdentical() throws {
        let url = try Fixtures.gpt2(.q8_0)
        let ids: [Int32] = [464, 2068, 7586, 21831, 18045, 625, 262]
        let unlimited = try load(url, budget: nil)
        let want = try Fixtures.logits(unlimited, ids)
        let lm = try load(url, budget: unlimited.plan.totalBytes - 1)
        XCTAssertTrue(lm.plan.outputStreams)
        XCTAssertEqual(lm.plan.streamedLayers, [])
        let got = try Fixtures.logits(lm, ids)
        XCTAssertTrue(zip(got, want).allSatisfy { $0.map(\.bitPattern) == $1.map(\.bitPattern) })
        XCTAssertEqual(lm.weights.streamedStoredBytes, lm.plan.streamedStoredBytesPerPass)
        // A batch that asks for no logits skips the classifier; the next one still gets it right.
        try lm.model.forward(ids, startPos: 0, logitRows: 0 ..< 0) { _, _ in }
        var last: [Float] = []
        try lm.model.forward(ids, startPos: 0, logitRows: ids.count - 1 ..< ids.count) { _, l in last = Array(l) }
        XCTAssertTrue(last.map(\.bitPattern) == want.last!.map(\.bitPattern))
    }

    func testGenerationSameTokensUnderBudget() throws {
        for url in [try Fixtures.stories(.q8_0, zstd: 3), try storiesSmallChunks(), try gpt2Layers(6, zstd: 3)] {
            let opts = GenerationOptions(maxNewTokens: 40, sampling: SamplingConfig(temperature: 0), stopAtEndOfText: false)
            let prompt = "Once upon a time"
            func run(_ budget: Int?) throws -> (GenerationResult, LoadedModel) {
                var o = LoadOptions(threads: 2, memoryBudget: budget, memoryBaseline: 0,
                                    sizing: Generator.sizing(prompt: prompt, options: opts))
                o.memoryMargin = 0
                let lm = try LoadedModel(path: url.path, options: o)
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
            XCTAssertGreaterThanOrEqual(got.memoryPlan.streamedBytesPerToken, Double(lm.plan.streamedStoredBytesPerPass))
            XCTAssertEqual(got.memoryPlan.classifierChunks, lm.plan.outputChunks.count)
            XCTAssertEqual(got.memoryPlan.embeddingStreamed, lm.plan.embeddingStreams)
            XCTAssertGreaterThan(got.memoryPlan.streamedRawBytesPerToken, 0)
            XCTAssertGreaterThan(got.memory.peakRSSAnon, 0)
            XCTAssertThrowsError(try run(lm0.plan.minimumBytes - 1)) { e in
                XCTAssertTrue("\(e)".contains("is below the minimum for \(url.lastPathComponent)"), "\(e)")
            }
        }
    }
}
