import CKernels
import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

/// A plain reference for windowed attention: every position of every layer in f32 at slot
/// = position (no ring), and a query sees exactly the positions `mask(p, j)` allows, one run
/// per position. With `reindexFreq` (rotary models, loaded with absolute positions) each
/// visible key is re-rotated so that its rotary distance to the query is its distance in the
/// visible list (StreamingLLM's cache positions): key number r of n is rotated by
/// (r - j) + (p - (n - 1)), which the query rotated at p turns into the distance (n - 1) - r.
final class ReferenceMaskCache: KVCache {
    let nLayer, kvDim, headDim, nCtx: Int
    let mask: (Int, Int) -> Bool
    let reindexFreq: [Float]?
    var k: [Float], v: [Float]
    var scratch: [Float]
    var capacity: Int { nCtx }
    var maxVisible: Int { nCtx }
    var maxRuns: Int { nCtx }
    var bytes: Int { 2 * nLayer * nCtx * kvDim * 4 }
    var kvType: KVType { .f32 }
    var rowBytes: Int { kvDim * 4 }

    init(hp: HParams, mask: @escaping (Int, Int) -> Bool, reindexFreq: [Float]? = nil) {
        nLayer = hp.nLayer; kvDim = hp.kvDim; headDim = hp.headDim; nCtx = hp.nCtx
        self.mask = mask; self.reindexFreq = reindexFreq
        k = [Float](repeating: 0, count: nLayer * nCtx * kvDim)
        v = k
        scratch = [Float](repeating: 0, count: nCtx * kvDim)
    }


    var length = 0
    var rollbackLimit: Int { Int.max }
    func truncate(to n: Int) throws { precondition(n <= length); length = n }

    func store(layer: Int, pos: Int, k kIn: UnsafePointer<Float>, v vIn: UnsafePointer<Float>) {
        if layer == 0 { length = pos + 1 }
        for i in 0 ..< kvDim {
            k[(layer * nCtx + pos) * kvDim + i] = kIn[i]
            v[(layer * nCtx + pos) * kvDim + i] = vIn[i]
        }
    }

    func visibleRuns(layer: Int, pos p: Int, into runs: UnsafeMutablePointer<KVRun>) -> Int {
        var visible: [Int] = []
        for j in 0 ... p where mask(p, j) { visible.append(j) }
        let n = visible.count
        for (r, j) in visible.enumerated() {
            let src = (layer * nCtx + j) * kvDim
            for i in 0 ..< kvDim { scratch[r * kvDim + i] = k[src + i] }
            if let freq = reindexFreq {
                let delta = Float((r - j) + (p - (n - 1)))
                var i = 0
                while i < kvDim {
                    let angle = delta * freq[(i % headDim) / 2]
                    let a = scratch[r * kvDim + i], b = scratch[r * kvDim + i + 1]
                    scratch[r * kvDim + i] = a * cosf(angle) - b * sinf(angle)
                    scratch[r * kvDim + i + 1] = a * sinf(angle) + b * cosf(angle)
                    i += 2
                }
            }
        }
        k.withUnsafeBufferPointer { _ in }
        let kBase = scratch.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress!) }
        let vBase = v.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress!) }
        for (r, j) in visible.enumerated() {
            runs[r] = KVRun(k: kBase + r * rowBytes, v: vBase + (layer * nCtx + j) * rowBytes, count: 1, firstPos: j, posStep: 1)
        }
        return n
    }
}

final class AttentionTests: XCTestCase {
    /// The first `count` tokens of the TinyStories validation stream (documents joined, BOS between).
    static func storyTokens(_ count: Int, tokenizer: any Tokenizer) throws -> [Int32] {
        let text = try String(contentsOf: SharedData.path("data/tinystories/tinystories_valid_first1000.txt"), encoding: .utf8)
        let head = String(text.prefix(20000))
        let ids = Perplexity.encodeDocuments(head, separator: "<|endoftext|>", tokenizer: tokenizer)
        XCTAssertGreaterThanOrEqual(ids.count, count)
        return Array(ids.prefix(count))
    }

    static func logits(_ m: LanguageModel, _ ids: [Int32]) throws -> [[Float]] {
        var rows: [[Float]] = []
        try m.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, l in rows.append(Array(l)) }
        return rows
    }

    static func maxDiff(_ a: [[Float]], _ b: [[Float]]) -> Float {
        var m: Float = 0
        for (x, y) in zip(a, b) { for (p, q) in zip(x, y) { m = max(m, abs(p - q)) } }
        return m
    }

    func load(_ url: URL, _ config: AttentionConfig, maxBatch: Int = 64) throws -> LoadedModel {
        try LoadedModel(path: url.path, options: LoadOptions(threads: 2, maxBatch: maxBatch, attention: config))
    }

    static func ropeFreq(_ hp: HParams) -> [Float] {
        let hd = hp.headDim, theta = hp.ropeTheta ?? 10000
        return (0 ..< hd / 2).map { i in 1 / powf(theta, Float(2 * i) / Float(hd)) }
    }

    // MARK: parsing and bad input

    func testParsing() throws {
        XCTAssertEqual(try AttentionPattern.parse("dense"), .dense)
        XCTAssertEqual(try AttentionPattern.parse("banded:128"), .banded(window: 128))
        XCTAssertEqual(try AttentionPattern.parse("strided:64,16"), .strided(window: 64, stride: 16))
        XCTAssertEqual(AttentionConfig.splitLayerList("dense,banded:8,strided:64,16,dense"), ["dense", "banded:8", "strided:64,16", "dense"])
        let alt = try AttentionConfig(attention: "alternating:32").layers(nLayer: 5, nCtx: 512)
        XCTAssertEqual(alt, [.dense, .banded(window: 32), .dense, .banded(window: 32), .dense])
        let list = try AttentionConfig(layerList: ["dense", "banded:8", "strided:16,4"], sinks: 2).layers(nLayer: 3, nCtx: 64)
        XCTAssertEqual(list, [.dense, .banded(window: 8), .strided(window: 16, stride: 4)])
    }

    func testBadInputErrors() throws {
        func message(_ c: AttentionConfig, nLayer: Int = 5) -> String {
            do { _ = try c.layers(nLayer: nLayer, nCtx: 512); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(message(AttentionConfig(attention: "banded:0")).contains("must be > 0"))
        XCTAssertTrue(message(AttentionConfig(attention: "banded:-3")).contains("must be > 0"))
        XCTAssertTrue(message(AttentionConfig(attention: "banded:513")).contains("exceeds the model's context of 512"))
        XCTAssertTrue(message(AttentionConfig(attention: "strided:64,0")).contains("stride K must be > 0"))
        XCTAssertTrue(message(AttentionConfig(attention: "strided:64")).contains("strided needs W,K"))
        XCTAssertTrue(message(AttentionConfig(attention: "banded:x")).contains("not an integer"))
        XCTAssertTrue(message(AttentionConfig(attention: "banded:8", sinks: 8)).contains("must be smaller than the window"))
        XCTAssertTrue(message(AttentionConfig(attention: "banded:8", sinks: 9)).contains("must be smaller than the window"))
        XCTAssertTrue(message(AttentionConfig(attention: "dense", sinks: 4)).contains("needs a banded or strided layer"))
        XCTAssertTrue(message(AttentionConfig(attention: "sparse:8")).contains("unknown attention pattern 'sparse'"))
        XCTAssertTrue(message(AttentionConfig(attention: "local")).contains("unknown attention pattern 'local'"))
        XCTAssertTrue(message(AttentionConfig(layerList: ["dense", "dense"])).contains("has 2 entries; this model has 5 layers"))
        XCTAssertTrue(message(AttentionConfig(layerList: ["dense", "alternating:8"]), nLayer: 2).contains("whole model"))
        XCTAssertThrowsError(try KVType.parse("q4_0"))
        // Through the loader: the same errors, before any cache is allocated.
        let url = try Fixtures.stories(.f32)
        XCTAssertThrowsError(try load(url, AttentionConfig(attention: "banded:1024"))) { e in
            XCTAssertTrue("\(e)".contains("exceeds the model's context of 512"), "\(e)")
        }
        let g = try Fixtures.gpt2(.f32)
        XCTAssertThrowsError(try load(g, AttentionConfig(attention: "banded:16", positions: .cache))) { e in
            XCTAssertTrue("\(e)".contains("GPT-2 has learned absolute positions"), "\(e)")
        }
    }

    // MARK: equivalences

    /// banded:W with W ≥ T (with or without sinks, f32 KV) equals dense bit for bit: the same
    /// kernels run over the same keys in the same order (the sinks and the window are one
    /// contiguous run until the ring wraps, and re-indexing is a no-op before it does).
    func testBandedWideEqualsDenseExactly() throws {
        let url = try Fixtures.stories(.f32)
        let dense = try load(url, AttentionConfig())
        let ids = try Self.storyTokens(300, tokenizer: dense.tokenizer)
        let ref = try Self.logits(dense.model, ids)
        for (w, s) in [(300, 0), (300, 4), (512, 4)] {
            let m = try load(url, AttentionConfig(attention: "banded:\(w)", sinks: s))
            XCTAssertEqual(m.model.positionMode, .cache)
            XCTAssertEqual(try Self.logits(m.model, ids), ref, "banded:\(w) sinks \(s)")
        }
        let strided = try load(url, AttentionConfig(attention: "strided:300,7", positions: .absolute))
        XCTAssertEqual(try Self.logits(strided.model, ids), ref, "strided with W ≥ T")

        let g = try Fixtures.gpt2(.f32)
        let gd = try load(g, AttentionConfig())
        let gids: [Int32] = (0 ..< 120).map { Int32(($0 * 7919 + 13) % 50257) }
        let gref = try Self.logits(gd.model, gids)
        let gb = try load(g, AttentionConfig(attention: "banded:128", sinks: 3))
        XCTAssertEqual(try Self.logits(gb.model, gids), gref)
    }

    /// The ring over many wraps, strided slots and sinks against the explicit mask on a full
    /// cache (absolute positions). Tolerance: exact — one run per position in the reference
    /// accumulates in the same order as the ring's runs.
    func testRingAndStridedMatchExplicitMask() throws {
        let url = try Fixtures.stories(.f32)
        let base = try load(url, AttentionConfig())
        let hp = base.file.metadata.hparams
        let ids = try Self.storyTokens(400, tokenizer: base.tokenizer)
        let cases: [(String, Int, AttentionPattern)] = [
            ("banded:16", 0, .banded(window: 16)),      // 25 wraps
            ("banded:16", 4, .banded(window: 16)),
            ("banded:7", 3, .banded(window: 7)),        // ring size not a power of two
            ("strided:16,8", 0, .strided(window: 16, stride: 8)),
            ("strided:12,5", 2, .strided(window: 12, stride: 5)),
        ]
        for (spec, s, pat) in cases {
            for batch in [1, 64] {
                let m = try load(url, AttentionConfig(attention: spec, sinks: s, kvType: .f32, positions: .absolute), maxBatch: batch)
                let mask: (Int, Int) -> Bool = { p, j in
                    switch pat {
                    case .dense: return true
                    case .banded(let w): return p - j < w || j < s
                    case .strided(let w, let k): return p - j < w || j % k == 0 || j < s
                    }
                }
                let refCache = ReferenceMaskCache(hp: hp, mask: mask)
                let ref = try Llama(weights: base.weights, compute: base.model.compute, cache: refCache, maxBatch: batch)
                let a = try Self.logits(m.model, ids), b = try Self.logits(ref, ids)
                XCTAssertEqual(a, b, "\(spec) sinks \(s) batch \(batch): max |Δ| \(Self.maxDiff(a, b))")
            }
        }
        // The mask helper agrees with the plain definition.
        XCTAssertTrue(AttentionPattern.strided(window: 4, stride: 3).visible(query: 20, key: 9, sinks: 0))
        XCTAssertFalse(AttentionPattern.strided(window: 4, stride: 3).visible(query: 20, key: 10, sinks: 0))
        XCTAssertTrue(AttentionPattern.banded(window: 4).visible(query: 20, key: 1, sinks: 2))
    }

    /// The same on GPT-2 (head_dim 16, absolute learned positions).
    func testGPT2RingAndStridedMatchExplicitMask() throws {
        let g = try Fixtures.gpt2(.f32)
        let base = try load(g, AttentionConfig())
        let hp = base.file.metadata.hparams
        let ids: [Int32] = (0 ..< 128).map { Int32(($0 * 104729 + 5) % 50257) }
        for (spec, s, w, k) in [("banded:10", 2, 10, 0), ("strided:9,4", 1, 9, 4)] {
            let m = try load(g, AttentionConfig(attention: spec, sinks: s, kvType: .f32))
            let refCache = ReferenceMaskCache(hp: hp, mask: { p, j in p - j < w || (k > 0 && j % k == 0) || j < s })
            let ref = try GPT2(weights: base.weights, compute: base.model.compute, cache: refCache, maxBatch: 64)
            let a = try Self.logits(m.model, ids), b = try Self.logits(ref, ids)
            XCTAssertEqual(a, b, "\(spec): max |Δ| \(Self.maxDiff(a, b))")
        }
    }

    /// StreamingLLM re-indexing against a reference that re-rotates each visible key to its
    /// rank in the visible list. Tolerance 1e-3 on logits (|logits| ~ 10): the ring rotates
    /// the query, the reference the keys, so rounding differs.
    func testReindexedPositionsMatchReference() throws {
        let url = try Fixtures.stories(.f32)
        let base = try load(url, AttentionConfig())
        let hp = base.file.metadata.hparams
        let ids = try Self.storyTokens(300, tokenizer: base.tokenizer)
        for (spec, s, w, k) in [("banded:16", 4, 16, 0), ("banded:32", 0, 32, 0), ("strided:16,8", 2, 16, 8)] {
            let m = try load(url, AttentionConfig(attention: spec, sinks: s, kvType: .f32, positions: .cache))
            let refCache = ReferenceMaskCache(hp: hp, mask: { p, j in p - j < w || (k > 0 && j % k == 0) || j < s },
                                              reindexFreq: Self.ropeFreq(hp))
            let ref = try Llama(weights: base.weights, compute: base.model.compute, cache: refCache, maxBatch: 64)
            let a = try Self.logits(m.model, ids), b = try Self.logits(ref, ids)
            let d = Self.maxDiff(a, b)
            XCTAssertLessThanOrEqual(d, 1e-3, spec)
            // And it differs from absolute positions once the window has moved (sinks / strided keys).
            let absolute = try Self.logits(load(url, AttentionConfig(attention: spec, sinks: s, kvType: .f32, positions: .absolute)).model, ids)
            if s > 0 || k > 0 { XCTAssertGreaterThan(Self.maxDiff(a, absolute), 1e-3, spec) }
        }
    }

    /// Quantized KV: same kernels family with a type parameter. Stated tolerances on
    /// stories260K (300 tokens, banded:64 with 4 sinks and dense) against f32 KV: mean |Δlogit|
    /// ≤ 0.01 (f16) / ≤ 0.15 (q8_0; measured 0.11, max 1.8 on one position), top-1 agreement
    /// ≥ 97 %, mean NLL within 0.5 % (measured +0.3 % for q8_0, -0.002 % for f16). GPT-2
    /// (head_dim 16): mean |Δlogit| ≤ 0.02 for q8_0.
    func testQuantizedKVWithinTolerance() throws {
        let url = try Fixtures.stories(.f32)
        for spec in ["dense", "banded:64"] {
            let s = spec == "dense" ? 0 : 4
            let f32 = try load(url, AttentionConfig(attention: spec, sinks: s, kvType: .f32))
            let ids = try Self.storyTokens(300, tokenizer: f32.tokenizer)
            let ref = try Self.logits(f32.model, ids)
            let refNLL = Self.meanNLL(ref, ids)
            for (t, tol) in [(KVType.f16, Float(0.01)), (.q8_0, 0.15)] {
                let m = try load(url, AttentionConfig(attention: spec, sinks: s, kvType: t))
                XCTAssertEqual(m.model.cache.kvType, t)
                let a = try Self.logits(m.model, ids)
                let d = Self.maxDiff(a, ref)
                let mean = Self.meanAbsDiff(a, ref)
                let top1 = Self.top1Agreement(a, ref)
                let nll = Self.meanNLL(a, ids)
                print("KV \(t) \(spec): max |Δlogit| \(d), mean |Δlogit| \(mean), top-1 \(top1), NLL \(nll) vs f32 \(refNLL)")
                XCTAssertLessThanOrEqual(mean, tol, "\(spec) \(t)")
                XCTAssertGreaterThanOrEqual(top1, 0.97, "\(spec) \(t)")
                XCTAssertGreaterThan(d, 0, "\(spec) \(t) should differ from f32 at all")
                XCTAssertLessThanOrEqual(abs(nll / refNLL - 1), 0.005, "\(spec) \(t): NLL \(nll) vs \(refNLL)")
            }
        }
        // GPT-2 (head_dim 16).
        let g = try Fixtures.gpt2(.f32)
        let gids: [Int32] = (0 ..< 100).map { Int32(($0 * 7919 + 13) % 50257) }
        let gref = try Self.logits(load(g, AttentionConfig(kvType: .f32)).model, gids)
        let gq = try Self.logits(load(g, AttentionConfig(kvType: .q8_0)).model, gids)
        print("KV q8_0 GPT-2: max |Δlogit| \(Self.maxDiff(gq, gref)), mean \(Self.meanAbsDiff(gq, gref))")
        XCTAssertLessThanOrEqual(Self.meanAbsDiff(gq, gref), 0.02)
    }

    static func meanAbsDiff(_ a: [[Float]], _ b: [[Float]]) -> Float {
        var s: Double = 0, n = 0
        for (x, y) in zip(a, b) { for (p, q) in zip(x, y) { s += Double(abs(p - q)); n += 1 } }
        return Float(s / Double(max(n, 1)))
    }

    static func top1Agreement(_ a: [[Float]], _ b: [[Float]]) -> Double {
        var same = 0
        for (x, y) in zip(a, b) where x.firstIndex(of: x.max()!) == y.firstIndex(of: y.max()!) { same += 1 }
        return Double(same) / Double(max(a.count, 1))
    }

    static func meanNLL(_ logits: [[Float]], _ ids: [Int32]) -> Double {
        var s = 0.0
        for t in 0 ..< ids.count - 1 {
            let l = logits[t]
            let mx = l.max()!
            let lse = Double(mx) + log(l.reduce(0.0) { $0 + exp(Double($1 - mx)) })
            s += lse - Double(l[Int(ids[t + 1])])
        }
        return s / Double(ids.count - 1)
    }

    // MARK: memory and positions

    func testCacheBytesFollowThePattern() throws {
        let url = try Fixtures.stories(.f32)
        let hp = try load(url, AttentionConfig()).file.metadata.hparams   // 5 layers, 4 KV heads × 8
        let row = hp.nKVHead * hp.headDim * 4
        func bytes(_ c: AttentionConfig) throws -> Int { try load(url, c).model.cache.bytes }
        XCTAssertEqual(try bytes(AttentionConfig(kvType: .f32)), 5 * 2 * 512 * row)
        XCTAssertEqual(try bytes(AttentionConfig()), 5 * 2 * 512 * row / 2) // the default cache is f16
        XCTAssertEqual(try bytes(AttentionConfig(attention: "banded:128", sinks: 4, kvType: .f32)), 5 * 2 * 132 * row)
        XCTAssertEqual(try bytes(AttentionConfig(attention: "banded:128", sinks: 4, kvType: .f16)), 5 * 2 * 132 * row / 2)
        XCTAssertEqual(try bytes(AttentionConfig(attention: "banded:128", sinks: 4, kvType: .q8_0)), 5 * 2 * 132 * 4 * (8 + 4))
        XCTAssertEqual(try bytes(AttentionConfig(attention: "alternating:64", kvType: .f32)), (3 * 512 + 2 * 64) * 2 * row)
        // strided:64,16, 2 sinks: 2 + 64 ring + multiples of 16 in [2, 512) = 31.
        XCTAssertEqual(try bytes(AttentionConfig(attention: "strided:64,16", sinks: 2, kvType: .f32)), 5 * 2 * (2 + 64 + 31) * row)
        XCTAssertEqual(KVBudget.slots(.strided(window: 64, stride: 16), sinks: 2, tokens: 512), 2 + 64 + 31)
        XCTAssertEqual(KVBudget.slots(.banded(window: 128), sinks: 4, tokens: 4096), 132)
        XCTAssertEqual(KVBudget.slots(.banded(window: 128), sinks: 4, tokens: 100), 100)
        XCTAssertEqual(KVBudget.slots(.dense, sinks: 0, tokens: 4096), 4096)
    }

    /// banded:128 + 4 sinks generates 4,096 tokens (8× stories260K's context) with the same
    /// cache as for 512: the cache is allocated once and never grows.
    func testBandedGeneratesPastContextInBoundedMemory() throws {
        let url = try Fixtures.stories(.f32)
        var bytes: [Int] = []
        for n in [512, 4096] {
            let lm = try load(url, AttentionConfig(attention: "banded:128", sinks: 4))
            XCTAssertEqual(lm.model.positionLimit, Int.max)
            let r = try Generator.generate(lm, prompt: "Once upon a time", options: GenerationOptions(
                maxNewTokens: n, sampling: SamplingConfig(temperature: 0.8, topK: 0, topP: 0.9, seed: 3), stopAtEndOfText: false)) { _ in }
            XCTAssertEqual(r.tokens.count, n)
            XCTAssertEqual(r.stopReason, "max_tokens")
            bytes.append(r.kvCacheBytes)
        }
        XCTAssertEqual(bytes[0], bytes[1])
        XCTAssertEqual(bytes[0], 5 * 2 * 132 * 4 * 8 * 2) // 132 slots × 4 KV heads × 8 dims, f16 (the default)
    }

    /// Positions a model cannot represent are refused, never wrapped: GPT-2 (learned positions)
    /// stops at n_ctx even with a ring cache; a rotary model with absolute positions or any
    /// dense/strided layer too.
    func testPositionLimits() throws {
        let g = try Fixtures.gpt2(.f32)
        let gb = try load(g, AttentionConfig(attention: "banded:16"))
        XCTAssertEqual(gb.model.positionLimit, Fixtures.gpt2Dims.ctx)
        XCTAssertThrowsError(try gb.model.forward([1, 2], startPos: Fixtures.gpt2Dims.ctx - 1, logitRows: 0 ..< 1) { _, _ in }) { e in
            XCTAssertTrue("\(e)".contains("exceed the model's context of 128"), "\(e)")
        }
        let r = try Generator.generate(gb, prompt: "Hello", options: GenerationOptions(maxNewTokens: 500, stopAtEndOfText: false)) { _ in }
        XCTAssertEqual(r.stopReason, "context_full")
        XCTAssertEqual(r.promptTokens.count + r.tokens.count, Fixtures.gpt2Dims.ctx + 1)

        let url = try Fixtures.stories(.f32)
        XCTAssertEqual(try load(url, AttentionConfig(attention: "banded:64", positions: .absolute)).model.positionLimit, 512)
        XCTAssertEqual(try load(url, AttentionConfig(attention: "alternating:64")).model.positionLimit, 512)
        XCTAssertEqual(try load(url, AttentionConfig(attention: "strided:64,16")).model.positionLimit, 512)
    }
}
