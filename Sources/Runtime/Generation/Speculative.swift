import CKernels
import Foundation
import Quant

/// How speculative decoding drafts tokens.
package enum DraftKind: String, Sendable, Codable, CaseIterable {
    /// Prompt / n-gram lookup: the continuation of the latest earlier match of the context's last
    /// n tokens (longest n first) in the prompt and the generated text. No second model.
    case lookup
    /// A small draft model sharing the tokenizer, decoding token by token.
    case draft
}

package struct SpeculativeOptions: Sendable {
    package var kind: DraftKind
    /// The most tokens drafted per verification pass (k; the pass runs k + 1 positions).
    package var draftLength: Int
    /// Choose each pass's draft length (0 ... draftLength) from what drafts have been accepted
    /// and what passes have cost (`DraftPolicy`); false: always draftLength where available.
    package var adaptive: Bool
    /// Lookup: n-gram lengths tried, longest first.
    package var ngramMax: Int
    package var ngramMin: Int

    /// 7: a pass of 1 + k rows stays within the few-token product kernels (QLM_FEW_MAX rows; one
    /// more row falls to the prefill tiles: k = 8 ran at ×0.72–1.07 of k = 7, lower in 6 of 8
    /// SmolLM2 story-repeat runs, scripts/bench/draft_len_sweep.py).
    package static let defaultDraftLength = Int(QLM_FEW_MAX) - 1

    package init(kind: DraftKind, draftLength: Int = SpeculativeOptions.defaultDraftLength, adaptive: Bool = true, ngramMax: Int = 4, ngramMin: Int = 1) {
        self.kind = kind; self.draftLength = draftLength; self.adaptive = adaptive
        self.ngramMax = ngramMax; self.ngramMin = ngramMin
    }
}

/// What speculation did over one generation.
package struct SpeculativeStats: Codable, Sendable, Equatable {
    package var kind: String
    package var draftLength: Int
    /// Verification passes of the target model (each one batched forward of 1 + drafted tokens).
    package var passes = 0
    package var drafted = 0
    package var accepted = 0
    /// accepted / drafted.
    package var acceptanceRate: Double { drafted == 0 ? 0 : Double(accepted) / Double(drafted) }
    /// Tokens each pass produced: accepted drafts + the one the target decides.
    package var tokensPerPass: Double { passes == 0 ? 0 : Double(accepted + passes) / Double(passes) }

    enum CodingKeys: String, CodingKey {
        case kind, draftLength = "draft_length", passes, drafted, accepted
        case acceptanceRate = "acceptance_rate", tokensPerPass = "tokens_per_pass"
    }

    package init(kind: String, draftLength: Int) { self.kind = kind; self.draftLength = draftLength }

    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decode(String.self, forKey: .kind)
        draftLength = try c.decode(Int.self, forKey: .draftLength)
        passes = try c.decode(Int.self, forKey: .passes)
        drafted = try c.decode(Int.self, forKey: .drafted)
        accepted = try c.decode(Int.self, forKey: .accepted)
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind); try c.encode(draftLength, forKey: .draftLength)
        try c.encode(passes, forKey: .passes); try c.encode(drafted, forKey: .drafted); try c.encode(accepted, forKey: .accepted)
        try c.encode(acceptanceRate, forKey: .acceptanceRate); try c.encode(tokensPerPass, forKey: .tokensPerPass)
    }
}

/// Picks the draft length k that maximizes expected tokens per second of a pass, from online
/// estimates with exponential forgetting (recent passes count most):
/// - α per draft class (lookup: the length of the matched n-gram, so copying, with its long
///   matches, is told apart from chance one-token matches; a draft model: one class): the chance
///   that a draft token is accepted given the ones before it were. A pass that kept a of m drafts
///   counts a successes and, when a < m, one failure (prior 1 of 2);
/// - the pass's wall time as a + b·k (k drafted tokens; drafting time included), a least-squares
///   line through the (k, seconds) of recent passes (prior slope b = a / 4 until k has varied).
/// A pass of k drafts yields 1 + α + ... + α^k tokens on average, so k maximizes that over a + b·k.
/// When k = 0 wins for a class, every 8th such pass still drafts one token, so α keeps being measured.
package struct DraftPolicy {
    package let maxK: Int
    private var num: [Double], den: [Double], since: [Int]
    private var w = 0.0, sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0
    static let decay = 0.9

    package init(maxK: Int, classes: Int = 1) {
        self.maxK = maxK
        num = Array(repeating: 1, count: max(1, classes)); den = Array(repeating: 2, count: max(1, classes))
        since = Array(repeating: 0, count: max(1, classes))
    }

    package func alpha(_ c: Int = 0) -> Double { min(0.99, num[c] / den[c]) }

    package mutating func record(class c: Int = 0, drafted m: Int, accepted a: Int, seconds: Double) {
        if m > 0 {
            num[c] = num[c] * Self.decay + Double(a)
            den[c] = den[c] * Self.decay + Double(a) + (a < m ? 1 : 0)
            since[c] = 0
        }
        let x = Double(m)
        w = w * Self.decay + 1; sx = sx * Self.decay + x; sy = sy * Self.decay + seconds
        sxx = sxx * Self.decay + x * x; sxy = sxy * Self.decay + x * seconds
    }

    /// (a, b) of the cost line, or nil before any pass.
    package var cost: (Double, Double)? {
        guard w > 0 else { return nil }
        let mx = sx / w, my = sy / w, vx = sxx / w - mx * mx
        var b = vx > 0.05 ? (sxy / w - mx * my) / vx : -1
        if b < 0 { b = my / (1 + mx / 4) / 4 }         // prior: each draft costs a quarter of a pass
        return (max(my - b * mx, 1e-9), b)
    }

    /// The draft length for a pass whose draft is of class `c`.
    package mutating func next(class c: Int = 0) -> Int {
        guard let (a, b) = cost else { return maxK }
        let al = alpha(c)
        var best = 0, bestScore = 1 / a, e = 1.0, p = 1.0
        for k in 1 ... max(1, maxK) {
            p *= al; e += p
            let score = e / (a + b * Double(k))
            if score > bestScore { best = k; bestScore = score }
        }
        if best == 0 {
            since[c] += 1
            if since[c] >= 8 { return 1 }
        }
        return best
    }
}

/// Proposes tokens continuing a context.
protocol Drafter: AnyObject {
    /// Classes `draftClass` takes (DraftPolicy keeps an acceptance estimate per class).
    var classes: Int { get }
    /// The class of the last proposal (lookup: its n-gram length).
    var draftClass: Int { get }
    /// Proposing costs nothing worth saving (lookup): propose the most, then keep what the policy
    /// picks for the proposal's class. Otherwise the policy picks the length first.
    var proposesFreely: Bool { get }
    /// Up to `max` (≥ 1) tokens continuing `context` (whose last token is the current one: its
    /// position is context.count - 1 and the target has not run it yet), into out[0 ..< n]; returns n.
    func propose(_ context: [Int32], max: Int, into out: UnsafeMutablePointer<Int32>) throws -> Int
    /// The draft's distribution of token i of the last proposal (vocab floats), or nil: a point
    /// mass on the proposed token (the draft is deterministic given the context).
    func distribution(_ i: Int) -> UnsafePointer<Float>?
    /// The target kept the first `accepted` of the `drafted` tokens proposed for `context`.
    func verified(context: [Int32], drafted: Int, accepted: Int) throws
}

/// Prompt lookup: find the latest earlier place where the context's last n tokens occur (the
/// longest n in ngramMin...ngramMax first) and propose what followed them there.
package final class LookupDrafter: Drafter {
    let ngramMax: Int, ngramMin: Int

    package init(ngramMax: Int, ngramMin: Int) {
        self.ngramMax = max(1, ngramMax); self.ngramMin = max(1, min(ngramMin, ngramMax))
    }

    package var classes: Int { ngramMax + 1 }
    package private(set) var draftClass = 0
    var proposesFreely: Bool { true }

    /// Start (in `c`) of the continuation of the best match, or nil. One backward scan: for each
    /// earlier end i (≤ c.count - 2, so something follows), the length of the common suffix of
    /// c[...i] and c (capped at ngramMax); the longest wins, the latest among equals.
    package static func match(_ c: UnsafeBufferPointer<Int32>, ngramMax: Int, ngramMin: Int) -> Int? {
        matchWithLength(c, ngramMax: ngramMax, ngramMin: ngramMin)?.start
    }

    /// The same with the matched n-gram's length.
    static func matchWithLength(_ c: UnsafeBufferPointer<Int32>, ngramMax: Int, ngramMin: Int) -> (start: Int, length: Int)? {
        let n = c.count
        guard n >= 2 else { return nil }
        let last = c[n - 1]
        var best = 0, bestEnd = -1
        var i = n - 2
        while i >= 0 {
            if c[i] == last {
                var l = 1
                while l < ngramMax && i - l >= 0 && c[i - l] == c[n - 1 - l] { l += 1 }
                if l > best { best = l; bestEnd = i; if l == ngramMax { break } }
            }
            i -= 1
        }
        return best >= ngramMin ? (bestEnd + 1, best) : nil
    }

    func propose(_ context: [Int32], max: Int, into out: UnsafeMutablePointer<Int32>) throws -> Int {
        context.withUnsafeBufferPointer { c in
            guard let (start, length) = Self.matchWithLength(c, ngramMax: ngramMax, ngramMin: ngramMin) else { draftClass = 0; return 0 }
            draftClass = length
            let n = Swift.min(max, c.count - start)
            for j in 0 ..< n { out[j] = c[start + j] }
            return n
        }
    }

    func distribution(_ i: Int) -> UnsafePointer<Float>? { nil }
    func verified(context: [Int32], drafted: Int, accepted: Int) throws {}
}

/// A small model with the target's vocabulary drafts token by token, with the target's sampling
/// settings (its own generator). Its KV cache follows the context: each proposal first runs the
/// context tokens it has not seen as one batch, and after verification it is truncated to the
/// positions whose tokens the target kept.
final class ModelDrafter: Drafter {
    let lm: LoadedModel
    let sampler: Sampler
    let vocab: Int
    /// Positions of the context in the draft's cache (0 ..< seen).
    private var seen = 0
    /// q_i of the last proposal, [maxDraft, vocab] (sampling only).
    private let q: UnsafeMutablePointer<Float>?
    private let maxDraft: Int
    private var one: [Int32] = [0]
    private var tok: Int32 = 0
    var classes: Int { 1 }
    var draftClass: Int { 0 }
    var proposesFreely: Bool { false }

    init(_ lm: LoadedModel, sampling: SamplingConfig, maxDraft: Int) {
        self.lm = lm
        vocab = lm.model.shape.vocabSize
        var s = sampling
        s.seed = sampling.seed ^ 0xD1B5_4A32_D192_ED03   // independent of the target's draws
        sampler = Sampler(vocab: vocab, config: s)
        self.maxDraft = maxDraft
        q = sampling.temperature > 0 ? .allocate(capacity: maxDraft * vocab) : nil
    }

    deinit { q?.deallocate() }

    func propose(_ context: [Int32], max: Int, into out: UnsafeMutablePointer<Int32>) throws -> Int {
        let model = lm.model
        let n = context.count
        // Positions n - 1 ... n - 2 + k are run (the current token, then drafts 1 ..< k).
        let k = Swift.min(max, maxDraft, model.positionLimit - n + 1)
        guard k >= 1, seen < n else { return 0 }
        try context.withUnsafeBufferPointer { c in
            try model.forward(UnsafeBufferPointer(rebasing: c[seen ..< n]), startPos: seen, logitRows: n - seen - 1 ..< n - seen) { _, l in
                pick(0, l)
            }
        }
        seen = n
        out[0] = tok
        for i in 1 ..< k {
            one[0] = tok
            try model.forward(one, startPos: seen, logitRows: 0 ..< 1) { _, l in pick(i, l) }
            seen += 1
            out[i] = tok
        }
        return k
    }

    /// Draft token i from the draft's logits (into `tok`; q_i kept when sampling).
    private func pick(_ i: Int, _ logits: UnsafeBufferPointer<Float>) {
        if let q {
            let qi = q + i * vocab
            sampler.distribution(logits, into: qi)
            tok = sampler.draw(qi) ?? Sampler.argmax(logits)
        } else {
            tok = Sampler.argmax(logits)
        }
    }

    func distribution(_ i: Int) -> UnsafePointer<Float>? { q.map { UnsafePointer($0 + i * vocab) } }

    func verified(context: [Int32], drafted: Int, accepted: Int) throws {
        // The cache holds the current token (position n - 1) and drafts 1 ..< drafted; drafts
        // 1 ... accepted are now context.
        let keep = Swift.min(seen, context.count + accepted)
        try lm.model.cache.truncate(to: keep)
        seen = keep
    }
}

/// The verification passes of speculative decoding, for a `DecodeSession`: the target model runs
/// the current token and up to k drafted tokens as one batched forward (the prefill path: a
/// streamed layer is read once for all of them; in the server, rows of a step's batched pass),
/// and keeps the longest prefix of drafts that plain decoding would have produced, plus the
/// token the target chooses after it.
///
/// Greedy: draft i is kept while it equals the argmax of the target's logits at the position
/// before it; then the argmax itself follows. The output is plain greedy decoding's, token for
/// token (the batched product reuses the single-token kernels' arithmetic per row).
///
/// Sampling (Leviathan et al. 2023, Chen et al. 2023): with p the target's distribution (what
/// `Sampler` draws from, after temperature / top-k / top-p) and q the draft's, draft d is kept
/// with probability min(1, p(d) / q(d)); the first rejected one is replaced by a draw from
/// max(0, p - q), normalized; after k kept drafts one more token is drawn from p. Every token is
/// then distributed exactly as p given what precedes it. For lookup drafts q is a point mass on
/// d: d is kept with probability p(d), and a rejection draws from p without d, normalized:
/// P(x) = p(d)·[x = d] + (1 - p(d)) · p(x)[x ≠ d] / (1 - p(d)) = p(x).
final class SpeculativeDecoder {
    let model: LanguageModel
    let sampler: Sampler
    let drafter: Drafter
    let options: SpeculativeOptions
    let vocab: Int
    private(set) var stats: SpeculativeStats
    /// The prompt and every token emitted so far (the last is the current one).
    private var context: [Int32]
    private var policy: DraftPolicy
    /// The current pass: drafts proposed (m of them), kept so far, the token decided after them.
    let drafts: UnsafeMutablePointer<Int32>
    private var m = 0, accepted = 0, final: Int32 = -1, draftClass = 0
    private let p: UnsafeMutablePointer<Float>
    private var batch: [Int32]

    init(model: LanguageModel, sampler: Sampler, drafter: Drafter, options: SpeculativeOptions, prompt: [Int32]) {
        self.model = model; self.sampler = sampler; self.drafter = drafter; self.options = options
        vocab = model.shape.vocabSize
        let k = max(1, options.draftLength)
        stats = SpeculativeStats(kind: options.kind.rawValue, draftLength: k)
        policy = DraftPolicy(maxK: k, classes: drafter.classes)
        context = prompt
        context.reserveCapacity(prompt.count + 1024)
        batch = []
        batch.reserveCapacity(k + 1)
        drafts = .allocate(capacity: k)
        p = .allocate(capacity: vocab)
    }

    deinit { drafts.deallocate(); p.deallocate() }

    /// A token was emitted: it is context now (the last one emitted is the pass's current token).
    func emitted(_ id: Int32) { context.append(id) }

    /// Starts a pass: up to `limit` drafts (fewer as the policy picks; none when limit < 1) into
    /// `drafts`; returns how many.
    func propose(limit: Int) throws -> Int {
        m = 0; accepted = 0; final = -1
        let k = min(policy.maxK, limit)
        if k >= 1 {
            if drafter.proposesFreely {
                m = try drafter.propose(context, max: k, into: drafts)
                if options.adaptive && m > 0 { m = min(m, policy.next(class: drafter.draftClass)) }
            } else {
                let n = options.adaptive ? min(k, policy.next(class: 0)) : k
                if n >= 1 { m = try drafter.propose(context, max: n, into: drafts) }
            }
        }
        draftClass = drafter.draftClass
        return m
    }

    /// `body` with the pass's tokens: the current one, then the drafts.
    func withPass(current: Int32, drafted: Int, _ body: ([Int32]) throws -> Void) rethrows {
        batch.removeAll(keepingCapacity: true)
        batch.append(current)
        for i in 0 ..< drafted { batch.append(drafts[i]) }
        try body(batch)
    }

    /// The target's logits at row i of the pass (0: the current token, i: draft i).
    func verify(row i: Int, _ logits: UnsafeBufferPointer<Float>) {
        guard final < 0 else { return }
        if sampler.config.temperature <= 0 {
            let g = Sampler.argmax(logits)
            if i < m && g == drafts[i] { accepted += 1 } else { final = g }
            return
        }
        sampler.distribution(logits, into: p)
        guard i < m else { final = sampler.draw(p) ?? Sampler.argmax(logits); return }
        let d = Int(drafts[i])
        if let q = drafter.distribution(i) {
            if sampler.uniform() * q[d] < p[d] { accepted += 1; return }
            for x in 0 ..< vocab { p[x] = max(0, p[x] - q[x]) }
        } else {
            if sampler.uniform() < p[d] { accepted += 1; return }
            p[d] = 0
        }
        final = sampler.draw(p) ?? Sampler.argmax(logits)
    }

    /// Ends the pass that ran the current token at `pos`: the cache keeps it and the accepted
    /// drafts; returns drafted, accepted and the token decided after them. `record`: the pass's
    /// `seconds` go into the policy's cost line.
    func commit(pos: Int, seconds: Double, record: Bool) throws -> (drafted: Int, accepted: Int, final: Int32) {
        precondition(final >= 0, "the verification pass decided no token")
        if m > 0 { try model.cache.truncate(to: pos + accepted + 1) }
        try drafter.verified(context: context, drafted: m, accepted: accepted)
        stats.passes += 1; stats.drafted += m; stats.accepted += accepted
        if record { policy.record(class: draftClass, drafted: m, accepted: accepted, seconds: seconds) }
        return (m, accepted, final)
    }
}
