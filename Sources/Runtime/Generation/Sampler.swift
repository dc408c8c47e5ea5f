import CKernels
import Foundation

package struct SamplingConfig: Sendable {
    /// 0 = greedy (argmax).
    package var temperature: Float
    /// 0 = no top-k cut.
    package var topK: Int
    /// 1 = no nucleus cut.
    package var topP: Float
    package var seed: UInt64

    package init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 42) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.seed = seed
    }
}

/// Picks the next token from logits: greedy, or temperature sampling with optional top-k
/// and top-p, from a seeded xorshift generator (same seed, same tokens). Buffers are
/// allocated once; sampling a token allocates nothing.
package final class Sampler {
    package let config: SamplingConfig
    let vocab: Int
    private var rng: UInt64
    private let probs: UnsafeMutablePointer<Float>
    private let idx: UnsafeMutablePointer<Int32>

    package init(vocab: Int, config: SamplingConfig) {
        self.vocab = vocab
        self.config = config
        rng = config.seed == 0 ? 0x9E37_79B9_7F4A_7C15 : config.seed
        probs = .allocate(capacity: vocab)
        idx = .allocate(capacity: vocab)
    }

    deinit {
        probs.deallocate()
        idx.deallocate()
    }

    @inline(__always) func nextFloat() -> Float {
        rng ^= rng >> 12
        rng ^= rng << 25
        rng ^= rng >> 27
        let u = UInt32(truncatingIfNeeded: (rng &* 0x2545_F491_4F6C_DD1D) >> 32)
        return Float(u >> 8) / 16_777_216.0
    }

    /// The first index of the largest logit (NaNs never chosen), as a scalar `>` scan finds it.
    package static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        Int32(qlm_argmax_f32(logits.baseAddress!, Int64(logits.count)))
    }

    package func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        precondition(logits.count == vocab)
        if config.temperature <= 0 { return Self.argmax(logits) }
        let (keep, total, indexed) = candidates(logits)
        return sampleFrom(count: keep, total: total, indexed: indexed)
    }

    /// The distribution `sample` draws from, over the whole vocabulary: dist[i] is token i's
    /// probability after temperature, top-k and top-p (0 outside the kept set; the kept
    /// probabilities divided by their sum). Temperature 0: a point mass on the argmax.
    package func distribution(_ logits: UnsafeBufferPointer<Float>, into dist: UnsafeMutablePointer<Float>) {
        precondition(logits.count == vocab)
        if config.temperature <= 0 {
            dist.update(repeating: 0, count: vocab)
            dist[Int(Self.argmax(logits))] = 1
            return
        }
        let (keep, total, indexed) = candidates(logits)
        let inv = 1 / total
        if !indexed {
            for i in 0 ..< vocab { dist[i] = probs[i] * inv }
            return
        }
        dist.update(repeating: 0, count: vocab)
        for j in 0 ..< keep { let i = Int(idx[j]); dist[i] = probs[i] * inv }
    }

    /// A token drawn from weights[0 ..< vocab] (non-negative, not necessarily normalized) with
    /// this sampler's generator; the last token with positive weight if rounding leaves the draw
    /// past the end. nil when every weight is 0.
    package func draw(_ weights: UnsafePointer<Float>) -> Int32? {
        var total: Float = 0
        for i in 0 ..< vocab { total += weights[i] }
        guard total > 0 else { return nil }
        let r = nextFloat() * total
        var cdf: Float = 0, last = -1
        for i in 0 ..< vocab where weights[i] > 0 {
            cdf += weights[i]
            last = i
            if r < cdf { return Int32(i) }
        }
        return Int32(last)
    }

    /// A uniform draw in [0, 1) from this sampler's generator (24 bits).
    package func uniform() -> Float { nextFloat() }

    /// Softmax of logits / T into probs, then the kept candidates: all tokens (indexed false), or
    /// the first `keep` ids of idx, most probable first; `total` is their probability sum.
    private func candidates(_ logits: UnsafeBufferPointer<Float>) -> (keep: Int, total: Float, indexed: Bool) {
        let inv = 1 / config.temperature
        for i in 0 ..< vocab { probs[i] = logits[i] * inv }
        qlm_softmax(probs, Int64(vocab))
        let k = config.topK > 0 ? min(config.topK, vocab) : vocab
        let cutP = config.topP > 0 && config.topP < 1
        if k == vocab && !cutP { return (vocab, 1, false) }
        // Candidates: the k most probable tokens (or, for top-p alone, those above llama2.c's
        // cutoff (1 - p) / (V - 1), which cannot be in the nucleus otherwise), sorted.
        var n = 0
        if k < vocab {
            n = selectTopK(k)
        } else {
            let cutoff = (1 - config.topP) / Float(vocab - 1)
            for i in 0 ..< vocab where probs[i] >= cutoff { idx[n] = Int32(i); n += 1 }
        }
        sortByProbDescending(n)
        var total: Float = 0
        var keep = n
        for j in 0 ..< n {
            total += probs[Int(idx[j])]
            if cutP && total >= config.topP { keep = j + 1; break }
        }
        if !cutP { total = (0 ..< keep).reduce(0) { $0 + probs[Int(idx[$1])] } }
        return (keep, total, true)
    }

    private func sampleFrom(count: Int, total: Float, indexed: Bool) -> Int32 {
        let r = nextFloat() * total
        var cdf: Float = 0
        for j in 0 ..< count {
            let i = indexed ? Int(idx[j]) : j
            cdf += probs[i]
            if r < cdf { return Int32(i) }
        }
        return indexed ? idx[count - 1] : Int32(count - 1)
    }

    /// Puts the k most probable ids in idx[0..<k] (a min-heap on probability while scanning).
    private func selectTopK(_ k: Int) -> Int {
        func less(_ a: Int32, _ b: Int32) -> Bool { probs[Int(a)] < probs[Int(b)] || (probs[Int(a)] == probs[Int(b)] && a > b) }
        for i in 0 ..< k { idx[i] = Int32(i) }
        for i in stride(from: k / 2 - 1, through: 0, by: -1) { siftDown(i, k, above: less) }
        for i in k ..< vocab where less(idx[0], Int32(i)) {
            idx[0] = Int32(i)
            siftDown(0, k, above: less)
        }
        return k
    }

    /// In-place heapsort of idx[0..<n], most probable first (ties: lower id first).
    private func sortByProbDescending(_ n: Int) {
        func before(_ a: Int32, _ b: Int32) -> Bool { probs[Int(a)] > probs[Int(b)] || (probs[Int(a)] == probs[Int(b)] && a < b) }
        // A heap with the last in "before" order on top, so the tail fills with the last elements first.
        func after(_ a: Int32, _ b: Int32) -> Bool { before(b, a) }
        guard n > 1 else { return }
        for i in stride(from: n / 2 - 1, through: 0, by: -1) { siftDown(i, n, above: after) }
        for end in stride(from: n - 1, to: 0, by: -1) {
            idx.swapAt(0, end)
            siftDown(0, end, above: after)
        }
    }

    /// Moves idx[start] down the heap idx[0 ..< n] until no child is `above` its parent (one sift for
    /// the top-k min-heap and the heapsort).
    @inline(__always) private func siftDown(_ start: Int, _ n: Int, above: (Int32, Int32) -> Bool) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n && above(idx[l], idx[m]) { m = l }
            if r < n && above(idx[r], idx[m]) { m = r }
            if m == i { return }
            idx.swapAt(i, m)
            i = m
        }
    }
}

extension UnsafeMutablePointer {
    @inline(__always) func swapAt(_ i: Int, _ j: Int) {
        let t = self[i]
        self[i] = self[j]
        self[j] = t
    }
}
