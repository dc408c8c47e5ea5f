import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// Speculative decoding: KV rollback for every cache kind, lookup drafting, greedy output equal
/// to plain greedy decoding token for token, and sampling with the target's distribution.
final class SpeculativeTests: XCTestCase {
    // MARK: KV cache rollback

    /// Every visible row (key and value bytes, with its position) a query at `pos` of `layer` sees.
    func visible(_ c: PatternKVCache, layer: Int, pos: Int) -> [(Int, [UInt8], [UInt8])] {
        let runs = UnsafeMutablePointer<KVRun>.allocate(capacity: c.maxRuns)
        defer { runs.deallocate() }
        let n = c.visibleRuns(layer: layer, pos: pos, into: runs)
        var out: [(Int, [UInt8], [UInt8])] = []
        for r in 0 ..< n {
            let run = runs[r]
            for i in 0 ..< run.count {
                let k = Array(UnsafeRawBufferPointer(start: run.k + i * c.rowBytes, count: c.rowBytes))
                let v = Array(UnsafeRawBufferPointer(start: run.v + i * c.rowBytes, count: c.rowBytes))
                out.append((run.firstPos + i * run.posStep, k, v))
            }
        }
        return out
    }

    /// Key/value floats of (position, layer) in sequence `seq` (0: the real one, others: junk).
    func row(_ pos: Int, _ layer: Int, seq: Int, width: Int) -> [Float] {
        (0 ..< width).map { i in sinf(Float(pos * 131 + layer * 17 + i * 7 + seq * 1009) * 0.37) * Float(1 + seq) }
    }

    func store(_ c: PatternKVCache, _ positions: Range<Int>, seq: Int, layers: Int, width: Int) {
        for p in positions {
            for l in 0 ..< layers {
                let k = row(p, l, seq: seq, width: width), v = row(p + 7, l, seq: seq, width: width)
                c.store(layer: l, pos: p, k: k, v: v)
            }
        }
    }

    func sameVisible(_ a: PatternKVCache, _ b: PatternKVCache, layers: Int, pos: Int) -> Bool {
        (0 ..< layers).allSatisfy { l in
            let x = visible(a, layer: l, pos: pos), y = visible(b, layer: l, pos: pos)
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 && $0.2 == $1.2 }
        }
    }

    /// Storing j junk positions after n, truncating to n and storing the real ones again leaves
    /// every query seeing exactly the rows (bytes) of a cache that never held the junk, for
    /// j ≤ rollback, in dense (f32, f16, q8_0), banded with sinks and strided layers, at ring
    /// wraps. Exact: the same rows are stored the same way.
    func testTruncateIsExactForEveryCacheKind() throws {
        let nKV = 2, hd = 8, width = nKV * hd
        let kinds: [([AttentionPattern], Int, KVType)] = [
            ([.dense, .dense], 0, .f32), ([.dense], 0, .f16), ([.dense], 0, .q8_0),
            ([.banded(window: 8), .banded(window: 8)], 2, .f16), ([.banded(window: 5)], 0, .q8_0),
            ([.strided(window: 6, stride: 4), .dense], 1, .f32), ([.dense, .banded(window: 7)], 3, .q8_0),
        ]
        for (patterns, sinks, type) in kinds {
            for rollback in [1, 3, 9] {
                for n in [3, 8, 13, 20, 31] {
                    for j in 1 ... rollback {
                        let ref = PatternKVCache(patterns: patterns, sinks: sinks, kvType: type, nKVHead: nKV, headDim: hd, positions: 64, rollback: rollback)
                        let c = PatternKVCache(patterns: patterns, sinks: sinks, kvType: type, nKVHead: nKV, headDim: hd, positions: 64, rollback: rollback)
                        store(ref, 0 ..< n, seq: 0, layers: patterns.count, width: width)
                        store(c, 0 ..< n, seq: 0, layers: patterns.count, width: width)
                        store(c, n ..< n + j, seq: 1, layers: patterns.count, width: width)
                        XCTAssertEqual(c.length, n + j)
                        try c.truncate(to: n)
                        XCTAssertEqual(c.length, n)
                        for p in n ..< n + 12 {
                            store(ref, p ..< p + 1, seq: 0, layers: patterns.count, width: width)
                            store(c, p ..< p + 1, seq: 0, layers: patterns.count, width: width)
                            XCTAssertTrue(sameVisible(ref, c, layers: patterns.count, pos: p),
                                          "\(patterns) sinks \(sinks) \(type) rollback \(rollback): n \(n), \(j) discarded, query at \(p)")
                        }
                    }
                }
            }
        }
    }

    /// The undo slots are what makes it exact: without them a ring loses rows that later
    /// queries see (so the test above would catch a missing margin), and truncate refuses to
    /// discard more positions than the margin covers; dense caches roll back any number.
    func testRingRollbackNeedsTheUndoSlots() throws {
        let width = 8
        let ref = PatternKVCache(patterns: [.banded(window: 6)], sinks: 1, kvType: .f32, nKVHead: 1, headDim: width, positions: 64)
        let c = PatternKVCache(patterns: [.banded(window: 6)], sinks: 1, kvType: .f32, nKVHead: 1, headDim: width, positions: 64)
        XCTAssertEqual(c.rollbackLimit, 1)
        store(ref, 0 ..< 16, seq: 0, layers: 1, width: width)
        store(c, 0 ..< 15, seq: 0, layers: 1, width: width)
        store(c, 15 ..< 18, seq: 1, layers: 1, width: width)
        XCTAssertThrowsError(try c.truncate(to: 15)) { XCTAssertTrue("\($0)".contains("roll the KV cache back 3 positions"), "\($0)") }
        // Storing over the junk without the margin: the query at 15 misses rows it needs.
        store(c, 15 ..< 16, seq: 0, layers: 1, width: width)
        XCTAssertFalse(sameVisible(ref, c, layers: 1, pos: 15))

        let dense = PatternKVCache(patterns: [.dense], sinks: 0, kvType: .f16, nKVHead: 1, headDim: width, positions: 64)
        XCTAssertEqual(dense.rollbackLimit, Int.max)
        store(dense, 0 ..< 40, seq: 1, layers: 1, width: width)
        try dense.truncate(to: 2)
        XCTAssertThrowsError(try dense.truncate(to: 3))
        let banded = PatternKVCache(patterns: [.banded(window: 6)], sinks: 0, kvType: .f32, nKVHead: 1, headDim: width, positions: 64, rollback: 4)
        XCTAssertEqual(banded.rollbackLimit, 4)
        XCTAssertEqual(banded.bytes, 2 * (6 + 3) * width * 4, "W + rollback - 1 ring slots")
    }

    /// Through the model: running junk tokens after a prefix, truncating, then the real tokens
    /// gives the logits of one straight run, bit for bit (same kernels, same rows), for a dense
    /// f16 cache, a q8_0 ring with sinks (re-indexed positions) and a strided layer mix.
    func testModelLogitsAfterRollbackAreExact() throws {
        let url = try Fixtures.stories(.q8_0)
        let ids = try AttentionTests.storyTokens(120, tokenizer: try Fixtures.load(url).tokenizer)
        for (attention, sinks, kv) in [("dense", 0, KVType.f16), ("banded:24", 2, .q8_0), ("strided:20,6", 1, .f16)] {
            var o = LoadOptions(threads: 2, maxBatch: 16, attention: AttentionConfig(attention: attention, sinks: sinks, kvType: kv))
            o.kvRollback = 6
            let lm = try LoadedModel(path: url.path, options: o)
            let m = lm.model
            var straight: [[Float]] = []
            try m.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, l in straight.append(Array(l)) }
            var got: [[Float]] = Array(repeating: [], count: ids.count)
            var pos = 0
            var step = 0
            while pos < ids.count {
                let take = min(1 + step % 4, ids.count - pos)
                // The real tokens plus junk drafts, then roll the junk back.
                let junk = (0 ..< (step % 6)).map { Int32(($0 * 53 + step * 11 + 7) % 512) }
                let batch = Array(ids[pos ..< pos + take]) + junk
                let extra = min(junk.count, m.positionLimit - pos - take)
                try m.forward(Array(batch.prefix(take + extra)), startPos: pos, logitRows: 0 ..< take) { i, l in got[pos + i] = Array(l) }
                try m.cache.truncate(to: pos + take)
                pos += take
                step += 1
            }
            XCTAssertEqual(got, straight, "\(attention) sinks \(sinks) \(kv)")
        }
    }

    // MARK: lookup drafting

    func testLookupFindsTheLongestLatestMatch() throws {
        func match(_ c: [Int32], max: Int = 4, min: Int = 1) -> Int? {
            c.withUnsafeBufferPointer { LookupDrafter.match($0, ngramMax: max, ngramMin: min) }
        }
        // ... 1 2 3 [9] ... 2 3 [8] ... 1 2 3: the 3-gram "1 2 3" first, then 9 follows.
        XCTAssertEqual(match([1, 2, 3, 9, 5, 2, 3, 8, 7, 1, 2, 3]), 3)
        // Only 1-grams match: the latest one.
        XCTAssertEqual(match([4, 6, 4, 7, 4]), 3)
        XCTAssertNil(match([4, 6, 4, 7, 4], min: 2))
        XCTAssertNil(match([1, 2, 3]))
        XCTAssertNil(match([5]))
        // Capped at ngramMax: the latest of the equally long (4) matches.
        XCTAssertEqual(match([1, 2, 3, 4, 10, 1, 2, 3, 4, 11, 1, 2, 3, 4], max: 4), 9)
        // A run of one token: the continuation overlaps the suffix itself.
        XCTAssertEqual(match([7, 7, 7, 7], max: 2), 3)
    }

    /// The draft-length policy: long drafts when they are accepted and cheap, none when they are
    /// rejected or expensive (but one every 8th pass, to keep measuring), the cost line recovered.
    func testDraftPolicy() {
        var p = DraftPolicy(maxK: 8)
        XCTAssertEqual(p.next(), 8, "no pass yet: the longest draft")
        // Passes cost 10 ms + 1 ms per draft; 9 of 10 drafts accepted.
        for i in 0 ..< 40 { let m = i % 9; p.record(drafted: m, accepted: m == 0 ? 0 : m - (i % 2), seconds: 0.010 + 0.001 * Double(m)) }
        let (a, b) = p.cost!
        XCTAssertEqual(a, 0.010, accuracy: 1e-6); XCTAssertEqual(b, 0.001, accuracy: 1e-6)
        XCTAssertEqual(p.next(), 8)
        // Drafts now cost as much as a pass and are rarely accepted: stop drafting.
        var q = DraftPolicy(maxK: 8)
        for i in 0 ..< 40 { let m = 1 + i % 3; q.record(drafted: m, accepted: i % 10 == 0 ? 1 : 0, seconds: 0.010 * Double(1 + m)) }
        XCTAssertLessThan(q.alpha(), 0.2)
        var ks: [Int] = []
        for _ in 0 ..< 16 { let k = q.next(); ks.append(k); q.record(drafted: k, accepted: 0, seconds: 0.010 * Double(1 + k)) }
        XCTAssertEqual(ks.filter { $0 > 0 }.count, 2, "one exploring draft every 8th pass: \(ks)")
        XCTAssertEqual(Set(ks), [0, 1])
        // Classes are separate: a class that is always accepted keeps long drafts.
        var r = DraftPolicy(maxK: 6, classes: 3)
        for i in 0 ..< 30 {
            r.record(class: 1, drafted: 2, accepted: 0, seconds: 0.012)
            r.record(class: 2, drafted: 1 + i % 6, accepted: 1 + i % 6, seconds: 0.010 + 0.001 * Double(1 + i % 6))
        }
        XCTAssertEqual(r.next(class: 2), 6)
        XCTAssertEqual(r.next(class: 1), 0)
    }

    // MARK: greedy equality

    struct Case { var attention: String? = nil; var sinks = 0; var kv: KVType = .f16 }

    func greedy(_ url: URL, _ c: Case, prompt: [Int32], tokens: Int, spec: SpeculativeOptions?, draft: URL? = nil) throws -> GenerationResult {
        var o = GenerationOptions(maxNewTokens: tokens, sampling: SamplingConfig(temperature: 0), stopAtEndOfText: false)
        o.speculative = spec
        o.echoPrompt = false
        let attention = AttentionConfig(attention: c.attention, sinks: c.sinks, kvType: c.kv)
        var lo = LoadOptions(threads: 2, maxBatch: 64, attention: attention, kvPositions: prompt.count + tokens)
        lo.kvRollback = (spec?.draftLength ?? 0) + 1
        let lm = try LoadedModel(path: url.path, options: lo)
        let d = try draft.map { try LoadedModel(path: $0.path, options: lo) }
        return try Generator.generate(lm, promptIDs: prompt, options: o, draft: d) { _ in }
    }

    /// Prompts that repeat themselves (input-grounded), so drafts are often right and often not.
    func storyPrompts(_ tok: any Tokenizer) throws -> [[Int32]] {
        let text = try String(contentsOf: SharedData.path("data/tinystories/tinystories_valid_first1000.txt"), encoding: .utf8)
        let stories = text.components(separatedBy: "<|endoftext|>").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        XCTAssertGreaterThan(stories.count, 3)
        return [
            tok.encode(stories[0] + "\nOnce more, the same story: " + String(stories[0].prefix(40))),
            tok.encode(String(stories[1].prefix(300))),
            tok.encode(String(stories[2].prefix(200)) + " " + String(stories[2].prefix(60))),
        ]
    }

    func testGreedyLookupEqualsPlainOnStories260K() throws {
        let url = try Fixtures.stories(.q8_0)
        let tok = try Fixtures.load(url).tokenizer
        var accepted = 0
        for (pi, prompt) in try storyPrompts(tok).enumerated() {
            for c in [Case(), Case(attention: "banded:32", sinks: 2, kv: .q8_0), Case(attention: "alternating:24", kv: .f32)] {
                let plain = try greedy(url, c, prompt: prompt, tokens: 160, spec: nil)
                for (k, adaptive) in [(1, false), (3, true), (8, false), (8, true)] {
                    let s = try greedy(url, c, prompt: prompt, tokens: 160, spec: SpeculativeOptions(kind: .lookup, draftLength: k, adaptive: adaptive))
                    XCTAssertEqual(s.tokens, plain.tokens, "prompt \(pi) \(c) k \(k) adaptive \(adaptive)")
                    XCTAssertEqual(s.stopReason, plain.stopReason)
                    let st = try XCTUnwrap(s.speculative)
                    XCTAssertEqual(st.accepted + st.passes, s.tokens.count - 1, "each pass yields its accepted drafts + 1 token")
                    accepted += st.accepted
                }
            }
        }
        XCTAssertGreaterThan(accepted, 500, "the prompts should make lookup drafts succeed often")
    }

    func testGreedyDraftModelEqualsPlainOnStories260K() throws {
        let url = try Fixtures.stories(.f32), draft = try Fixtures.stories(.q4_0)
        let tok = try Fixtures.load(url).tokenizer
        for prompt in try storyPrompts(tok).prefix(2) {
            for c in [Case(), Case(attention: "banded:32", sinks: 2, kv: .q8_0)] {
                let plain = try greedy(url, c, prompt: prompt, tokens: 120, spec: nil)
                for k in [2, 6] {
                    let s = try greedy(url, c, prompt: prompt, tokens: 120, spec: SpeculativeOptions(kind: .draft, draftLength: k), draft: draft)
                    XCTAssertEqual(s.tokens, plain.tokens, "\(c) k \(k)")
                    XCTAssertGreaterThan(s.speculative!.acceptanceRate, 0.3, "a q4_0 draft of the same model agrees often")
                }
            }
        }
    }

    /// SmolLM2-135M (GGUF Q4_1 blocks kept) on token ids: a code-editing prompt (copy a function
    /// with a rename) and a repeated sentence; lookup at several draft lengths, dense and ring.
    func testGreedyLookupEqualsPlainOnSmolLM2() throws {
        let url = try SmolLM2.keep()
        let code: [Int32] = SmolLM2.codePrompt
        let repeated: [Int32] = Array(GGUFModelTests.ids + GGUFModelTests.ids.prefix(6))
        for prompt in [code, repeated] {
            for c in [Case(), Case(attention: "banded:48", sinks: 4, kv: .q8_0)] {
                let plain = try greedy(url, c, prompt: prompt, tokens: 48, spec: nil)
                for k in [2, 7] {
                    let s = try greedy(url, c, prompt: prompt, tokens: 48, spec: SpeculativeOptions(kind: .lookup, draftLength: k))
                    XCTAssertEqual(s.tokens, plain.tokens, "\(c) k \(k)")
                }
            }
        }
    }

    func testGreedyDraftModelEqualsPlainOnSmolLM2() throws {
        let url = try SmolLM2.keep(), draft = try SmolLM2.q4_0()
        let prompt = SmolLM2.codePrompt
        let plain = try greedy(url, Case(), prompt: prompt, tokens: 40, spec: nil)
        let s = try greedy(url, Case(), prompt: prompt, tokens: 40, spec: SpeculativeOptions(kind: .draft, draftLength: 4), draft: draft)
        XCTAssertEqual(s.tokens, plain.tokens)
        XCTAssertGreaterThan(s.speculative!.acceptanceRate, 0.3)
    }

    // MARK: sampling keeps the distribution

    /// Upper regularized incomplete gamma Q(a, x) (series below a + 1, continued fraction above).
    static func gammaQ(_ a: Double, _ x: Double) -> Double {
        if x <= 0 { return 1 }
        let lg: Double = Glibc.lgamma(a)
        if x < a + 1 {
            var sum = 1 / a, term = sum, n = a
            for _ in 0 ..< 10000 { n += 1; term *= x / n; sum += term; if abs(term) < abs(sum) * 1e-15 { break } }
            return 1 - sum * exp(-x + a * log(x) - lg)
        }
        var b = x + 1 - a, c = 1 / 1e-300, d = 1 / b, h = d
        for i in 1 ..< 10000 {
            let an = -Double(i) * (Double(i) - a)
            b += 2
            d = an * d + b; if abs(d) < 1e-300 { d = 1e-300 }
            c = b + an / c; if abs(c) < 1e-300 { c = 1e-300 }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < 1e-15 { break }
        }
        return exp(-x + a * log(x) - lg) * h
    }

    func testChiSquareHelper() {
        // Known values: chi-square survival at df 1, x 3.841 ≈ 0.05; df 10, x 23.209 ≈ 0.01; df 100, x 100 ≈ 0.4812.
        XCTAssertEqual(Self.gammaQ(0.5, 3.841 / 2), 0.05, accuracy: 1e-4)
        XCTAssertEqual(Self.gammaQ(5, 23.209 / 2), 0.01, accuracy: 1e-4)
        XCTAssertEqual(Self.gammaQ(50, 50), 0.4812, accuracy: 1e-3)
    }

    /// The exact distribution of the first three generated tokens, from the target model and
    /// the sampler's own `distribution`: every triple with probability ≥ tau (found by walking
    /// the tree of continuations, the KV cache rolled back between branches), the rest one
    /// category ("other").
    func exactTriples(_ lm: LoadedModel, prompt: [Int32], sampling: SamplingConfig, tau: Double) throws -> [[Int32]: Double] {
        let m = lm.model, V = m.shape.vocabSize, n = prompt.count
        let sampler = Sampler(vocab: V, config: sampling)
        var dist = [Float](repeating: 0, count: V)
        func probs(_ tokens: [Int32], at pos: Int) throws -> [Double] {
            try m.forward(tokens, startPos: pos, logitRows: tokens.count - 1 ..< tokens.count) { _, l in
                dist.withUnsafeMutableBufferPointer { sampler.distribution(l, into: $0.baseAddress!) }
            }
            return dist.map(Double.init)
        }
        let p1 = try probs(prompt, at: 0)
        var out: [[Int32]: Double] = [:]
        for x1 in 0 ..< V where p1[x1] >= tau {
            try m.cache.truncate(to: n)
            let p2 = try probs([Int32(x1)], at: n)
            for x2 in 0 ..< V where p1[x1] * p2[x2] >= tau {
                try m.cache.truncate(to: n + 1)
                let p3 = try probs([Int32(x2)], at: n + 1)
                for x3 in 0 ..< V where p1[x1] * p2[x2] * p3[x3] >= tau {
                    out[[Int32(x1), Int32(x2), Int32(x3)]] = p1[x1] * p2[x2] * p3[x3]
                }
            }
        }
        return out
    }

    /// Chi-square goodness of fit of the first three sampled tokens, over many seeded
    /// generations, against the exact distribution: plain sampling (the control), lookup speculation (point-mass drafts: kept with probability p(d), else a draw from p without d)
    /// and a draft model (kept with min(1, p/q), else a draw from max(0, p - q)), at temperature 1
    /// and at 0.8 with top-p 0.9 (drafts outside the nucleus). Categories: triples with expected
    /// count ≥ 5, and the rest. Each arm fails when p < 1e-4, so with correct sampling and seeds
    /// drawn at random the test fails falsely with probability below 5 × 1e-4 = 5e-4 (the seeds
    /// are fixed, so the outcome is reproducible). The prompt repeats itself, so lookup drafts
    /// exist and both acceptances and rejections happen (asserted).
    func testSpeculativeSamplingMatchesTheDistribution() throws {
        let url = try Fixtures.stories(.f32), draftURL = try Fixtures.stories(.q4_0)
        var lo = LoadOptions(threads: 1, maxBatch: 64, attention: AttentionConfig(kvType: .f32))
        lo.kvRollback = 8
        let lm = try LoadedModel(path: url.path, options: lo)
        let draft = try LoadedModel(path: draftURL.path, options: lo)
        let prompt = lm.tokenizer.encode("Tom had a ball. Tom had a")
        // QUANTLM_SPEC_RUNS: more runs for a stronger check by hand (4000 in the suite: ~25 s).
        let runs = ProcessInfo.processInfo.environment["QUANTLM_SPEC_RUNS"].flatMap { Int($0) } ?? 4000
        let arms: [(String, SamplingConfig, SpeculativeOptions?)] = [
            ("plain T=1", SamplingConfig(temperature: 1), nil),   // the control: the harness passes on plain sampling
            ("lookup T=1", SamplingConfig(temperature: 1), SpeculativeOptions(kind: .lookup, draftLength: 3, adaptive: false)),
            ("lookup T=0.8 top-p 0.9", SamplingConfig(temperature: 0.8, topP: 0.9), SpeculativeOptions(kind: .lookup, draftLength: 3, adaptive: false)),
            ("draft T=1", SamplingConfig(temperature: 1), SpeculativeOptions(kind: .draft, draftLength: 2, adaptive: false)),
            ("draft T=0.8 top-p 0.9", SamplingConfig(temperature: 0.8, topP: 0.9), SpeculativeOptions(kind: .draft, draftLength: 2, adaptive: false)),
        ]
        var seeds = SplitMix64(seed: 2026)
        for (name, sampling, spec) in arms {
            let t0 = Date()
            let exact = try exactTriples(lm, prompt: prompt, sampling: sampling, tau: 5 / Double(runs))
            let t1 = Date()
            var counts: [[Int32]: Int] = [:]
            var other = 0
            var stats = SpeculativeStats(kind: "", draftLength: 0)
            for _ in 0 ..< runs {
                var s = sampling
                s.seed = seeds.next()
                // Four tokens, so the first pass drafts (and verifies) up to two.
                var o = GenerationOptions(maxNewTokens: 4, sampling: s, stopAtEndOfText: false)
                o.speculative = spec
                o.echoPrompt = false
                let res = try Generator.generate(lm, promptIDs: prompt, options: o, draft: spec?.kind == .draft ? draft : nil) { _ in }
                XCTAssertEqual(res.tokens.count, 4)
                let t3 = Array(res.tokens.prefix(3))
                if exact[t3] != nil { counts[t3, default: 0] += 1 } else { other += 1 }
                if let st = res.speculative { stats.passes += st.passes; stats.drafted += st.drafted; stats.accepted += st.accepted }
            }
            var chi = 0.0
            var pOther = 1.0
            for (t, p) in exact {
                let e = p * Double(runs), o = Double(counts[t] ?? 0)
                chi += (o - e) * (o - e) / e
                pOther -= p
            }
            let eOther = max(pOther, 0) * Double(runs)
            var df = exact.count - 1
            if eOther >= 1 { chi += (Double(other) - eOther) * (Double(other) - eOther) / eOther; df += 1 }
            let pValue = Self.gammaQ(Double(df) / 2, chi / 2)
            XCTAssertGreaterThan(pValue, 1e-4, "\(name): chi-square \(chi) on \(df) degrees of freedom")
            XCTAssertGreaterThanOrEqual(exact.count, 10, "\(name): too few categories to test anything")
            if spec != nil {
                XCTAssertGreaterThan(stats.accepted, 200, "\(name): drafts should be accepted often (\(stats))")
                XCTAssertLessThan(stats.accepted, stats.drafted - 40, "\(name): and rejected sometimes (\(stats))")
            }
            print("\(name) (\(String(format: "%.1f + %.1f s", t1.timeIntervalSince(t0), Date().timeIntervalSince(t1)))): \(exact.count) triples, other \(other) (expected \(Int(eOther))), chi-square \(String(format: "%.1f", chi)) df \(df), p \(String(format: "%.3f", pValue)); accepted \(stats.accepted)/\(stats.drafted)")
        }
    }
}

/// SmolLM2 files converted once per test process from the fetched GGUF.
enum SmolLM2 {
    private static let lock = NSLock()
    private static var files: [String: URL] = [:]

    static func convert(_ name: String, _ policy: QuantPolicy) throws -> URL {
        lock.lock(); defer { lock.unlock() }
        if let u = files[name] { return u }
        let gguf = try SharedData.model(GGUFModelTests.modelName)
        let ck = try Checkpoint.open(gguf)
        let out = Fixtures.tempRoot.appendingPathComponent("spec-smollm2-\(name).qlm")
        _ = try Converter.convert(ck, tokenizer: try GGUFModelTests.payload(ck), options: ConvertOptions(policy: policy, threads: 2), to: out)
        files[name] = out
        return out
    }

    static func keep() throws -> URL { try convert("keep", .keep()) }
    static func q4_0() throws -> URL { try convert("q4_0", QuantPolicy(defaultType: .q4_0)) }

    /// "Rename the variable `total` to `sum` in this Python function and return the whole
    /// function:\n\ndef average(values):\n    total = 0 ..." and the start of the answer ("Here is
    /// the function with `total` renamed to `sum`:\n\n```python\ndef average(values):\n"), as
    /// SmolLM2 token ids (`run tokenize` with the GGUF's vocabulary).
    static let codePrompt: [Int32] = [66, 4236, 260, 5811, 2179, 9712, 80, 288, 2179, 5422, 80, 281, 451, 5905, 1517, 284, 1003, 260, 2444, 1517, 42, 198, 198, 1604, 3049, 24, 6347, 727, 472, 2719, 446, 216, 32, 472, 985, 446, 216, 32, 472, 327, 386, 281, 2396, 42, 448, 2719, 4519, 386, 448, 985, 4519, 216, 33, 472, 585, 985, 1758, 216, 32, 42, 448, 1003, 216, 32, 472, 1003, 2719, 2272, 985, 198, 198, 4590, 314, 260, 1517, 351, 2179, 9712, 80, 22184, 288, 2179, 5422, 21157, 198, 198, 3725, 5367, 198, 1604, 3049, 24, 6347, 727, 198]
}
