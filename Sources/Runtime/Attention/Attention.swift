import CKernels
import Foundation
import Quant

/// Multi-head attention with grouped-query heads, shared by every architecture and every
/// attention pattern: for one query at absolute position `pos`, each head h attends over the
/// keys the cache shows for that position (its KV head h / (nHead / nKVHead)), softmaxed
/// across all runs together. The cache decides what is visible; the KV type is a kernel
/// parameter.
///
/// Positions of rotary models. Keys are stored rotated at their absolute position, queries
/// arrive rotated at theirs. With `PositionMode.cache` (StreamingLLM re-indexing) the visible
/// keys are numbered 0, 1, ..., n-1 in position order and the query is number n-1 (it is the
/// last visible key itself); a rotary score depends only on the difference of the two
/// rotations, so the query is re-rotated per run by (its cache index - the key's cache index)
/// - (pos - key position): zero for the window (contiguous, ending at pos), non-zero for sinks
/// and for every-K-th keys once the window has moved on. The positions a layer sees are then
/// 0 ..< n ≤ S + W (+ n/K for strided), never past the trained context for banded layers.
package final class Attention {
    /// Which elements of a head a rotary model rotates together: (2i, 2i+1) (llama.cpp's
    /// "normal" rope, Llama GGUFs) or (i, i + head_dim/2) (NeoX order: Gemma).
    package enum RotaryPairs: Sendable { case adjacent, halves }

    package let nHead: Int
    package let nKVHead: Int
    package let headDim: Int
    let scale: Float
    /// Gemma 2's soft cap of the scaled scores: cap · tanh(score / cap) before the softmax (nil: none).
    let softcap: Float?
    /// Rotary frequency of pair i (nil: not a rotary model, or absolute positions).
    let ropeFreq: [Float]?
    let rotaryPairs: RotaryPairs
    /// Scratch: runs (runsCapacity each: the caller's, then one per thread for batched queries),
    /// and per thread the re-rotated query (headDim floats) and the scores (scoresCapacity floats).
    private var runs: UnsafeMutablePointer<KVRun>
    private var runsCapacity: Int
    private let threads: Int
    private let qr: UnsafeMutablePointer<Float>
    private var scoresScratch: UnsafeMutablePointer<Float>
    private var scoresCapacity = 0
    private let pool: OpaquePointer?
    /// The arguments of the call in flight, read by the pool's threads (allocated once).
    private final class Job {
        var layer = 0, startPos = 0, nRuns = 0, qIndex = 0, perQuery = 0
        var q: UnsafePointer<Float>?
        var qStride = 0, outStride = 0
        var out: UnsafeMutablePointer<Float>?
        var cache: KVCache?
        unowned(unsafe) var owner: Attention?
    }
    private let job = Job()

    /// Queries are split across `compute`'s threads when their work (heads × visible keys ×
    /// head_dim multiply-adds, summed over the queries of the call) is at least this large; below
    /// it one thread is faster than a pool dispatch (stories260K: 8 heads × ≤ 512 keys × 8 dims
    /// stays on one thread).
    static let parallelWork = 1 << 16
    /// For the optional time accounting (`Compute.timing`).
    private let compute: Compute?
    /// Query heads per KV head, and whether they are attended a group at a time (not with
    /// re-indexed rotary positions, where each head's query is rotated per run).
    private let group: Int
    private let grouped: Bool

    /// `scale` multiplies every score (default 1/√head_dim); `softcap` then bends it.
    package init(_ sh: ModelShape, scale: Float? = nil, softcap: Float? = nil, reindexRotary ropeFreq: [Float]? = nil, rotaryPairs: RotaryPairs = .adjacent,
                 compute: Compute? = nil) {
        nHead = sh.nHead
        nKVHead = sh.nKVHead
        headDim = sh.headDim
        self.scale = scale ?? 1 / Float(sh.headDim).squareRoot()
        self.softcap = softcap
        self.ropeFreq = ropeFreq
        group = max(1, sh.nHead / max(1, sh.nKVHead))
        grouped = ropeFreq == nil && group > 1
        self.rotaryPairs = rotaryPairs
        threads = compute?.threads ?? 1
        runsCapacity = 4
        runs = .allocate(capacity: runsCapacity * (threads + 1))
        pool = compute?.pool
        self.compute = compute
        qr = .allocate(capacity: sh.headDim * threads)
        scoresScratch = .allocate(capacity: 1)
        job.owner = self
    }

    deinit {
        runs.deallocate()
        qr.deallocate()
        scoresScratch.deallocate()
    }

    /// qr = q rotated by `delta` positions (pairs as `rotaryPairs` says: Llama.rope / Gemma3.rope).
    @inline(__always)
    private func rotate(_ q: UnsafePointer<Float>, by delta: Int, freq: UnsafeBufferPointer<Float>,
                        into qr: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        if delta == 0 { return q }
        switch rotaryPairs {
        case .adjacent:
            var i = 0
            while i < headDim {
                let angle = Float(delta) * freq[i / 2]
                let c = cosf(angle), s = sinf(angle)
                let a = q[i], b = q[i + 1]
                qr[i] = a * c - b * s
                qr[i + 1] = a * s + b * c
                i += 2
            }
        case .halves:
            let half = headDim / 2
            for i in 0 ..< half {
                let angle = Float(delta) * freq[i]
                let c = cosf(angle), s = sinf(angle)
                let a = q[i], b = q[i + half]
                qr[i] = a * c - b * s
                qr[i + half] = a * s + b * c
            }
        }
        return UnsafePointer(qr)
    }

    /// n scores soft-capped in place (when the model caps them).
    @inline(__always)
    private func cap(_ scores: UnsafeMutablePointer<Float>, _ n: Int) {
        guard let c = softcap else { return }
        for i in 0 ..< n { scores[i] = c * tanhf(scores[i] / c) }
    }

    /// q: nHead × headDim floats; out: the same; scores: scratch of at least cache.maxVisible
    /// floats (used when the call runs on this thread alone).
    package func attend(layer: Int, pos: Int, q: UnsafePointer<Float>, cache: KVCache,
                       out: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>) {
        attend(layer: layer, startPos: pos, T: 1, q: q, qStride: nHead * headDim, cache: cache, out: out,
               outStride: nHead * headDim, scores: scores)
    }

    /// The queries of the T positions startPos ..< startPos + T (row t at q + t * qStride, its
    /// output at out + t * outStride), each over what the cache shows for its position. With
    /// T > 1 the caller has stored every key and value these queries see, and nothing one of
    /// them sees was overwritten by a later position of the batch (`KVCache.keepsEveryPosition`,
    /// which also promises that `visibleRuns` may be called from several threads at once).
    /// Every (query, head) is computed exactly as on its own, so the results do not depend on T
    /// or on the threads. The (query, head) items are handed out one at a time from a counter,
    /// so a pool thread the OS has not scheduled yet does not hold the caller up.
    package func attend(layer: Int, startPos: Int, T: Int, q: UnsafePointer<Float>, qStride: Int, cache: KVCache,
                       out: UnsafeMutablePointer<Float>, outStride: Int, scores: UnsafeMutablePointer<Float>) {
        let timed = compute?.timing ?? false
        let t0 = timed ? Compute.clock() : 0
        defer { if timed { compute!.attentionNanos &+= Compute.clock() &- t0 } }
        if cache.maxRuns > runsCapacity {   // once per cache, not per token
            runs.deallocate()
            runsCapacity = cache.maxRuns
            runs = .allocate(capacity: runsCapacity * (threads + 1))
        }
        // One query: its runs are found here, once, and shared by the heads (read-only).
        var nRuns = 0, qIndex = 0
        if T == 1 {
            nRuns = cache.visibleRuns(layer: layer, pos: startPos, into: runs)
            for r in 0 ..< nRuns { qIndex += runs[r].count }
            qIndex -= 1
        }
        if scoresCapacity < group * cache.maxVisible {   // once per cache
            scoresScratch.deallocate()
            scoresCapacity = group * cache.maxVisible
            scoresScratch = .allocate(capacity: scoresCapacity * threads)
        }
        let visible = T == 1 ? qIndex + 1 : min(cache.maxVisible, startPos + T)   // most keys a query sees
        if pool == nil || threads == 1 || nHead * T < 2 || nHead * headDim * T * visible < Self.parallelWork {
            if T == 1 {
                attendHeads(0 ..< nHead, layer: layer, pos: startPos, runs: runs, nRuns: nRuns, qIndex: qIndex, q: q,
                            cache: cache, out: out, scores: grouped ? scoresScratch : scores, qr: qr)
                return
            }
            for t in 0 ..< T {
                attendQuery(heads: 0 ..< nHead, layer: layer, pos: startPos + t, q: q + t * qStride, cache: cache,
                            out: out + t * outStride, scores: grouped ? scoresScratch : scores, runs: runs, qr: qr)
            }
            return
        }
        // Items: heads of the one query (T == 1: at most nHead pieces, balanced one head at a
        // time), else (query, KV head) pairs, all heads of the group at once.
        let perQuery = T == 1 || !grouped ? nHead : nKVHead
        job.layer = layer; job.startPos = startPos; job.nRuns = T == 1 ? nRuns : -1; job.qIndex = qIndex
        job.q = q; job.qStride = qStride; job.out = out; job.outStride = outStride; job.cache = cache
        job.perQuery = perQuery
        qlm_pool_for_ith(pool, 1, Int64(perQuery * T), 1, { ctx, ith, lo, hi in
            let job = Unmanaged<Job>.fromOpaque(ctx!).takeUnretainedValue()
            let a = job.owner!, i = Int(ith), per = job.perQuery, heads = a.nHead / per
            let scores = a.scoresScratch + i * a.scoresCapacity, qr = a.qr + i * a.headDim
            var item = Int(lo)
            while item < Int(hi) {   // item = t * per + p: heads p * heads ..< (p + 1) * heads of query t
                let t = item / per, p0 = item % per
                let p1 = min(per, p0 + Int(hi) - item)
                if job.nRuns >= 0 {   // one query, runs shared
                    a.attendHeads(p0 * heads ..< p1 * heads, layer: job.layer, pos: job.startPos, runs: a.runs, nRuns: job.nRuns,
                                  qIndex: job.qIndex, q: job.q!, cache: job.cache!, out: job.out!, scores: scores, qr: qr)
                } else {
                    a.attendQuery(heads: p0 * heads ..< p1 * heads, layer: job.layer, pos: job.startPos + t, q: job.q! + t * job.qStride,
                                  cache: job.cache!, out: job.out! + t * job.outStride, scores: scores,
                                  runs: a.runs + (1 + i) * a.runsCapacity, qr: qr)
                }
                item += p1 - p0
            }
        }, Unmanaged.passUnretained(job).toOpaque())
        job.cache = nil
    }

    /// Heads `heads` of the query at `pos`, its runs found into `runs`.
    private func attendQuery(heads: Range<Int>, layer: Int, pos: Int, q: UnsafePointer<Float>, cache: KVCache,
                             out: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>,
                             runs: UnsafeMutablePointer<KVRun>, qr: UnsafeMutablePointer<Float>) {
        let nRuns = cache.visibleRuns(layer: layer, pos: pos, into: runs)
        var total = 0
        for r in 0 ..< nRuns { total += runs[r].count }
        attendHeads(heads, layer: layer, pos: pos, runs: runs, nRuns: nRuns, qIndex: total - 1, q: q, cache: cache,
                    out: out, scores: scores, qr: qr)
    }

    /// Heads `heads` of one query over the runs already in `runs`: a whole group of heads
    /// sharing a KV head at a time when `grouped` (scores and accumulation read each key and
    /// value row once for the group; the same numbers as head by head), else head by head.
    /// scores: `scoresCapacity` floats (grouped: this thread's part of `scoresScratch`), else at
    /// least the query's visible keys.
    private func attendHeads(_ heads: Range<Int>, layer: Int, pos: Int, runs: UnsafeMutablePointer<KVRun>, nRuns: Int,
                             qIndex: Int, q: UnsafePointer<Float>,
                             cache: KVCache, out: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>,
                             qr: UnsafeMutablePointer<Float>) {
        let hd = Int64(headDim), stride = Int64(cache.rowBytes)
        let t = cache.kvType.code
        let headBytes = cache.kvType.headBytes(headDim)
        var h = heads.lowerBound
        while grouped && h % group == 0 && h + group <= heads.upperBound {
            let kvOff = (h / group) * headBytes, ss = scoresCapacity / group
            var n = 0
            for r in 0 ..< nRuns {
                qlm_attn_scores_heads(t, q + h * headDim, Int64(group), runs[r].k + kvOff, stride, Int64(runs[r].count), hd, scale,
                                      scores + n, Int64(ss))
                n += runs[r].count
            }
            for g in 0 ..< group { cap(scores + g * ss, n); qlm_softmax(scores + g * ss, Int64(n)) }
            let oh = out + h * headDim
            oh.update(repeating: 0, count: group * headDim)
            n = 0
            for r in 0 ..< nRuns {
                qlm_attn_accum_heads(t, scores + n, Int64(ss), Int64(group), runs[r].v + kvOff, stride, Int64(runs[r].count), hd, oh)
                n += runs[r].count
            }
            h += group
        }
        for h in h ..< heads.upperBound {
            let qh = q + h * headDim
            let kvOff = (h / group) * headBytes
            var n = 0
            for r in 0 ..< nRuns {
                let run = runs[r]
                if let ropeFreq {
                    ropeFreq.withUnsafeBufferPointer { freq in
                        if run.posStep == 1 {
                            // Key i of the run: position firstPos + i, cache index n + i.
                            let delta = (qIndex - n) - (pos - run.firstPos)
                            qlm_attn_scores(t, rotate(qh, by: delta, freq: freq, into: qr), run.k + kvOff, stride, Int64(run.count), hd, scale, scores + n)
                        } else {
                            for i in 0 ..< run.count {
                                let delta = (qIndex - (n + i)) - (pos - (run.firstPos + i * run.posStep))
                                qlm_attn_scores(t, rotate(qh, by: delta, freq: freq, into: qr), run.k + i * cache.rowBytes + kvOff, stride, 1, hd, scale, scores + n + i)
                            }
                        }
                    }
                } else {
                    qlm_attn_scores(t, qh, run.k + kvOff, stride, Int64(run.count), hd, scale, scores + n)
                }
                n += run.count
            }
            cap(scores, n)
            qlm_softmax(scores, Int64(n))
            let oh = out + h * headDim
            oh.update(repeating: 0, count: headDim)
            n = 0
            for r in 0 ..< nRuns {
                let run = runs[r]
                qlm_attn_accum(t, scores + n, run.v + kvOff, stride, Int64(run.count), hd, oh)
                n += run.count
            }
        }
    }
}
