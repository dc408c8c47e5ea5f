import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// `ConversionJob`: the preset and calibration orchestration `convert` delegates to.
final class ConversionJobTests: XCTestCase {
    func testPresetAndCalibrationRunInOrderAndAreRecorded() throws {
        let out = TestFiles.tempRoot.appendingPathComponent("job-q4mix-gptq.qlm")
        var job = ConversionJob(input: try Stories.model(), output: out, type: "q8_0")
        job.tokenizer = try Stories.tokenizer()
        job.preset = "q4_mix"
        job.keep = ["layers.3.feed_forward.w2.weight=q4_0"]
        var cal = ConversionJob.CalibrationRequest(file: try SharedData.path("data/tinystories/tinystories_valid_first1000.txt").path)
        cal.documents = 900 ..< 1000
        cal.maxTokens = 2048
        cal.ctx = 256
        cal.skip = ["layers.0.*"]
        job.calibration = cal
        job.threads = 2
        var notes: [String] = []
        var lastProgress = (0, 0)
        let r = try job.run(note: { n in
            switch n {
            case .preset(let s): notes.append("preset:" + s)
            case .calibrationStage(let s): notes.append("stage:" + s)
            case .calibration(let s): notes.append("calibration:" + s)
            case .sensitivity(let s): notes.append("sensitivity:" + s)
            }
        }, progress: { lastProgress = ($0, $1) })

        // The preset replaces --type (q4_mix's default is iq4_k16), is announced before
        // calibration, and the caller's --keep pattern still wins over it.
        XCTAssertEqual(notes.count, 2, "\(notes)")
        XCTAssertTrue(notes.first?.hasPrefix("preset:preset q4_mix: matrices iq4_k16") == true, "\(notes)")
        XCTAssertTrue(notes.last?.hasPrefix("calibration:GPTQ (float), damp 0.01 + importance-weighted rounding; calibration tinystories_valid_first1000.txt documents 900..<1000") == true, "\(notes)")
        XCTAssertEqual(r.policy.defaultType, .iq4_k16)
        let f = try QLMFile(out)
        XCTAssertEqual(try f.info("layers.2.attention.wq.weight").type, .iq4_k16)
        XCTAssertEqual(try f.info("layers.1.attention.wk.weight").type, .q8_0)   // the preset's own override
        XCTAssertEqual(try f.info("layers.3.feed_forward.w2.weight").type, .q4_0)   // the caller's
        // The recorded calibration note is the one reported, and GPTQ touched exactly the
        // matrices not skipped: every layer-0 matrix is plain.
        XCTAssertEqual(f.metadata.quantization.calibration, r.calibrationNote)
        XCTAssertFalse(r.summary.gptqTensors.isEmpty)
        XCTAssertFalse(r.summary.gptqTensors.contains { $0.hasPrefix("layers.0.") })
        XCTAssertTrue(r.plainMatrices.contains("layers.0.attention.wq.weight"), "\(r.plainMatrices)")
        XCTAssertTrue(Set(r.plainMatrices).isDisjoint(with: r.summary.gptqTensors))
        XCTAssertNotNil(r.calibrationSeconds)
        XCTAssertEqual(lastProgress.0, lastProgress.1, "progress reaches its total")
        XCTAssertGreaterThan(lastProgress.1, 0)
    }

    func testBadRequestsNameTheInput() throws {
        let out = TestFiles.tempRoot.appendingPathComponent("job-bad.qlm")
        var job = ConversionJob(input: try Stories.model(), output: out, type: "q9_9")
        job.tokenizer = try Stories.tokenizer()
        XCTAssertThrowsError(try job.run()) { e in
            XCTAssertTrue("\(e)".contains("stories260K.bin") && "\(e)".contains("unknown type 'q9_9'"), "\(e)")
        }
        job.type = "q8_0"
        job.preset = "nope"
        XCTAssertThrowsError(try job.run()) { e in XCTAssertTrue("\(e)".contains("unknown preset 'nope'"), "\(e)") }
        job.preset = nil
        job.calibration = .init(file: "/nonexistent/cal.txt")
        XCTAssertThrowsError(try job.run()) { e in XCTAssertTrue("\(e)".contains("/nonexistent/cal.txt"), "\(e)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "no output on failure")
    }

    /// A calibration text shorter than one chunk, or not UTF-8, is a one-line error naming the file.
    func testBadCalibrationTextNamesTheFile() throws {
        let out = TestFiles.tempRoot.appendingPathComponent("job-badcal.qlm")
        var job = ConversionJob(input: try Stories.model(), output: out, type: "q4_0")
        job.tokenizer = try Stories.tokenizer()
        job.threads = 2
        let short = TestFiles.tempRoot.appendingPathComponent("short-cal.txt")
        try "Once upon a time there was a cat.".write(to: short, atomically: true, encoding: .utf8)
        job.calibration = .init(file: short.path)
        XCTAssertThrowsError(try job.run()) { e in
            XCTAssertTrue("\(e)".contains(short.path) && "\(e)".contains("shorter than one chunk of 512"), "\(e)")
        }
        let latin1 = TestFiles.tempRoot.appendingPathComponent("latin1-cal.txt")
        try Data([0x63, 0x61, 0x66, 0xE9, 0x20, 0xFF, 0xFE]).write(to: latin1)
        job.calibration = .init(file: latin1.path)
        XCTAssertThrowsError(try job.run()) { e in
            XCTAssertTrue("\(e)".contains(latin1.path) && "\(e)".contains("not UTF-8"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "no output on failure")
    }
}

/// Size targets (`--max-size`, `--target-bpw`): MixPlanner's choice under a byte budget.
final class SizeTargetTests: XCTestCase {
    /// `--max-size` with `--format gguf` bounds the GGUF's bytes: its key/values and tensor infos,
    /// copied from the source, are not the .qlm's tokenizer blob and table (budgeting for the .qlm
    /// let SmolLM2's export come out 0.4 MB over, and refused this fixture's budget as below the
    /// smallest reachable). A budget between the smallest and largest plans gives a mixed file of
    /// at most that many bytes.
    func testMaxSizeBoundsTheGGUFExport() throws {
        let src = SharedData.packageRoot.appendingPathComponent("Tests/Fixtures/arch/llama3/model.gguf")
        let ckpt = try Checkpoint.open(src)
        let cands: [QuantType] = [.q4_0, .q4_1, .q8_0]
        let policy = QuantPolicy(defaultType: .q8_0)
        let small = try MixPlanner.plan(ckpt, policy: policy, candidates: cands, importance: nil, budget: 0, threads: 2)
        let big = try MixPlanner.plan(ckpt, policy: policy, candidates: cands, importance: nil, budget: .max, threads: 2)
        let overhead = ConversionJob.overheadBytes(ggufLike: try GGUFFile(src))
        let out = TestFiles.tempRoot.appendingPathComponent("job-maxsize.gguf")
        var job = ConversionJob(input: src, output: out, type: "q8_0")
        job.threads = 2
        job.gguf = true
        job.mixTypes = cands
        let limit = overhead + (small.minimumTensorBytes + big.tensorBytes) / 2
        job.maxSize = limit
        _ = try job.run()
        let size = try FileManager.default.attributesOfItem(atPath: out.path)[.size] as! Int
        XCTAssertLessThanOrEqual(size, limit)
        let types = Set(try GGUFFile(out).tensors.filter { $0.shape.count >= 2 }.map(\.type.rawValue))
        XCTAssertGreaterThan(types.count, 1, "a mix")
    }

    /// A budget between the smallest and the largest plan gives a file within it that mixes
    /// types, records the choice (quantization.mix, one override per matrix), and a larger budget
    /// never plans a larger loss; a budget below every plan names the smallest reachable size.
    func testMaxSizeChoosesAMixWithinTheBudget() throws {
        let ckpt = try Checkpoint.open(Stories.model(), tokenizer: Stories.tokenizer())
        let policy = QuantPolicy(defaultType: .q8_0)
        let cands: [QuantType] = [.q4_0, .iq4_k16, .q4_1, .q8_0]
        let small = try MixPlanner.plan(ckpt, policy: policy, candidates: cands, importance: nil, budget: 0, threads: 2)
        let big = try MixPlanner.plan(ckpt, policy: policy, candidates: cands, importance: nil, budget: .max, threads: 2)
        XCTAssertLessThan(small.minimumTensorBytes, big.tensorBytes)
        var lastLoss = Double.infinity
        for k in 0 ... 4 {
            let budget = small.minimumTensorBytes + (big.tensorBytes - small.minimumTensorBytes) * k / 4
            let p = try MixPlanner.plan(ckpt, policy: policy, candidates: cands, importance: nil, budget: budget, threads: 2)
            XCTAssertLessThanOrEqual(p.tensorBytes, budget)
            XCTAssertLessThanOrEqual(p.loss, lastLoss * (1 + 1e-12), "budget \(budget)")
            lastLoss = p.loss
        }

        let out = TestFiles.tempRoot.appendingPathComponent("job-maxsize.qlm")
        var job = ConversionJob(input: try Stories.model(), output: out, type: "q8_0")
        job.tokenizer = try Stories.tokenizer()
        job.threads = 2
        job.mixTypes = cands
        let mid = (small.minimumTensorBytes + big.tensorBytes) / 2
        let overhead = ConversionJob.overheadBytes(tokenizerBytes: 6000, tensors: ckpt.tensors.count + 1)
        job.maxSize = mid + overhead
        let r = try job.run()
        let size = try FileManager.default.attributesOfItem(atPath: out.path)[.size] as! Int
        XCTAssertLessThanOrEqual(size, mid + overhead)
        let f = try QLMFile(out)
        let matrices = f.tensors.filter { $0.shape.count >= 2 }
        XCTAssertGreaterThan(Set(matrices.map(\.type)).count, 1, "a mix")
        XCTAssertTrue(f.metadata.quantization.mix?.hasPrefix("max-size \(mid + overhead) bytes: ") == true, "\(f.metadata.quantization.mix ?? "nil")")
        XCTAssertEqual(f.metadata.quantization.overrides.count, matrices.count)
        for m in matrices { XCTAssertEqual(r.plan?.types[m.name], m.type, m.name) }

        job.maxSize = small.minimumTensorBytes / 2
        XCTAssertThrowsError(try job.run()) { e in
            XCTAssertTrue("\(e)".contains("stories260K.bin") && "\(e)".contains("is below the smallest size reachable"), "\(e)")
        }
    }

    /// The K-quants take only rows of whole 256-weight blocks: for other rows (stories260K's rows are
    /// 64 and 172 weights) the plan offers their row fallbacks
    /// instead (q4_k -> q5_0, q2_k -> iq4_nl), so every chosen type stores its matrix's rows.
    func testWholeBlockTypesAreOfferedAsTheirFallbacks() throws {
        let ckpt = try Checkpoint.open(Stories.model(), tokenizer: Stories.tokenizer())
        let cands: [QuantType] = [.q4_k, .q2_k, .q8_0]
        for budget in [0, Int.max] {
            let p = try MixPlanner.plan(ckpt, policy: QuantPolicy(defaultType: .q8_0), candidates: cands, importance: nil,
                                        budget: budget, threads: 2)
            for t in ckpt.tensors where t.shape.count >= 2 {
                let type = try XCTUnwrap(p.types[t.name], t.name)
                XCTAssertTrue(type.allows(rowLength: t.rowLength), "\(t.name): \(type.name) at rows of \(t.rowLength)")
                let offered = Set(cands.map { $0.allows(rowLength: t.rowLength) ? $0 : $0.rowFallback })
                XCTAssertTrue(offered.contains(type), "\(t.name): \(type.name)")
            }
        }
    }

    /// Sensitivity groups: a matrix kind (the layer number replaced) per band of consecutive
    /// layers; tensors outside the layers are their own group.
    func testSensitivityGroupsAreKindsByLayerBand() {
        var names = ["tok_embeddings.weight"]
        for l in 0 ..< 6 { names += ["layers.\(l).attention.wq.weight", "layers.\(l).feed_forward.w2.weight"] }
        let g = MixSensitivity.groups(names, bands: 3)
        XCTAssertEqual(g.map(\.0), ["tok_embeddings.weight", "layers.*.attention.wq.weight band 0", "layers.*.feed_forward.w2.weight band 0",
                                    "layers.*.attention.wq.weight band 1", "layers.*.feed_forward.w2.weight band 1",
                                    "layers.*.attention.wq.weight band 2", "layers.*.feed_forward.w2.weight band 2"])
        XCTAssertEqual(g[1].1, ["layers.0.attention.wq.weight", "layers.1.attention.wq.weight"])
        XCTAssertEqual(Set(g.flatMap(\.1)), Set(names), "every matrix in one group")
        // more bands than layers: one band per layer
        XCTAssertEqual(MixSensitivity.groups(names, bands: 50).count, 1 + 12)
    }

    /// The planner's weights steer the mix: at a budget between the smallest and largest plans, a
    /// matrix whose error weighs 1e6 times the others' gets its most accurate candidate, and one
    /// weighted 1e-6 its smallest. Measured weights (stories260K, calibration text, KL of each
    /// group at q4_0) are positive and finite for every free matrix, and a size-targeted job with
    /// calibration reports one line per group.
    func testSensitivityWeightsSteerThePlan() throws {
        let ckpt = try Checkpoint.open(Stories.model(), tokenizer: Stories.tokenizer())
        let policy = QuantPolicy(defaultType: .q8_0)
        let cands: [QuantType] = [.q4_0, .q8_0]
        let small = try MixPlanner.plan(ckpt, policy: policy, candidates: cands, importance: nil, budget: 0, threads: 2)
        let big = try MixPlanner.plan(ckpt, policy: policy, candidates: cands, importance: nil, budget: .max, threads: 2)
        let mid = (small.minimumTensorBytes + big.tensorBytes) / 2
        let hot = "layers.2.attention.wo.weight", cold = "layers.0.feed_forward.w1.weight"
        XCTAssertEqual(small.types[hot], .q4_0)
        XCTAssertEqual(big.types[cold], .q8_0)
        let p = try MixPlanner.plan(ckpt, policy: policy, candidates: cands, importance: nil, weights: [hot: 1e6, cold: 1e-6],
                                    budget: mid, threads: 2)
        XCTAssertEqual(p.types[hot], .q8_0)
        XCTAssertEqual(p.types[cold], .q4_0)

        let text = try String(contentsOf: SharedData.path("data/tinystories/tinystories_valid_first1000.txt"), encoding: .utf8)
        let payload = try TokenizerPayloads.make(ckpt.tokenizer!, vocabSize: ckpt.hparams.vocabSize)
        let free = Set(ckpt.tensors.filter { $0.shape.count >= 2 }.map(\.name))
        let s = try MixSensitivity.measure(checkpoint: ckpt, tokenizer: payload, matrices: free, importance: [:], text: text,
                                           separator: ConversionJob.documentSeparator, documents: 900 ..< 1000, maxTokens: 256,
                                           ctx: 128, probe: .q4_0, bands: 2, threads: 2)
        XCTAssertEqual(Set(s.weights.keys), free)
        for (n, w) in s.weights { XCTAssertTrue(w > 0 && w.isFinite, "\(n): \(w)") }
        XCTAssertTrue(s.groups.allSatisfy { $0.kl > 0 && $0.error > 0 }, "\(s.groups.map { ($0.name, $0.kl, $0.error) })")
        XCTAssertGreaterThan(s.positions, 0)

        let out = TestFiles.tempRoot.appendingPathComponent("job-sensitivity.qlm")
        var job = ConversionJob(input: try Stories.model(), output: out, type: "q8_0")
        job.tokenizer = try Stories.tokenizer()
        job.threads = 2
        job.mixTypes = cands
        job.maxSize = mid + ConversionJob.overheadBytes(tokenizerBytes: 6000, tensors: ckpt.tensors.count + 1)
        var cal = ConversionJob.CalibrationRequest(file: try SharedData.path("data/tinystories/tinystories_valid_first1000.txt").path)
        cal.documents = 900 ..< 1000
        cal.maxTokens = 512
        cal.ctx = 128
        cal.gptq = false
        cal.sensitivityTokens = 256
        cal.sensitivityBands = 2
        job.calibration = cal
        var lines = 0
        _ = try job.run(note: { if case .sensitivity = $0 { lines += 1 } })
        XCTAssertEqual(lines, s.groups.count)
        let mix = try QLMFile(out).metadata.quantization.mix ?? ""
        XCTAssertTrue(mix.contains("weighted by its group's KL per unit error"), mix)
    }
}
