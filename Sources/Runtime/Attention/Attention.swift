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
    package let nHead: Int
    package let nKVHead: Int
    package let headDim: Int
    let scale: Float
    /// Rotary frequency of pair i (nil: not a rotary model, or absolute positions).
    let ropeFreq: [Float]?
    private var runs: UnsafeMutablePointer<KVRun>
    private var runsCapacity: Int
    /// Per-thread scratch: re-rotated query (headDim floats) and scores (scoresCapacity floats).
    private let threads: Int
    private let qr: UnsafeMutablePointer<Float>
    private var scoresScratch: UnsafeMutablePointer<Float>
    private var scoresCapacity = 0
    private let pool: OpaquePointer?
    /// The arguments of the call in flight, read by the pool's threads (allocated once).
    private final class Job {
        var layer = 0, pos = 0, nRuns = 0, qIndex = 0
        var q: UnsafePointer<Float>?
        var out: UnsafeMutablePointer<Float>?
        var cache: KVCache?
        unowned(unsafe) var owner: Attention?
    }
    private let job = Job()

    /// Heads are split across `compute`'s threads when a query's work (heads × visible keys ×
    /// head_dim multiply-adds) is at least this large; below it one thread is faster than a
    /// pool dispatch (stories260K: 8 heads × ≤ 512 keys × 8 dims stays on one thread).
    static let parallelWork = 1 << 16
    /// For the optional time accounting (`Compute.timing`).
    private let compute: Compute?

    /// `scale` multiplies every score (default 1/√head_dim).
    package init(_ sh: ModelShape, scale: Float? = nil, reindexRotary ropeFreq: [Float]? = nil, compute: Compute? = nil) {
        nHead = sh.nHead
        nKVHead = sh.nKVHead
        headDim = sh.headDim
        self.scale = scale ?? 1 / Float(sh.headDim).squareRoot()
        self.ropeFreq = ropeFreq
        runsCapacity = 4
        runs = .allocate(capacity: runsCapacity)
        threads = compute?.threads ?? 1
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

    /// qr = q rotated by `delta` positions (adjacent pairs, as Llama.rope).
    @inline(__always)
    private func rotate(_ q: UnsafePointer<Float>, by delta: Int, freq: UnsafeBufferPointer<Float>,
                        into qr: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        if delta == 0 { return q }
        var i = 0
        while i < headDim {
            let angle = Float(delta) * freq[i / 2]
            let c = cosf(angle), s = sinf(angle)
            let a = q[i], b = q[i + 1]
            qr[i] = a * c - b * s
            qr[i + 1] = a * s + b * c
            i += 2
        }
        return UnsafePointer(qr)
    }

    /// q: nHead × headDim floats; out: the same; scores: scratch of at least cache.maxVisible
    /// floats (thread 0's; other threads use their own).
    package func attend(layer: Int, pos: Int, q: UnsafePointer<Float>, cache: KVCache,
                       out: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>) {
        let timed = compute?.timing ?? false
        let t0 = timed ? Compute.clock() : 0
        defer { if timed { compute!.attentionNanos &+= Compute.clock() &- t0 } }
        if cache.maxRuns > runsCapacity {   // once per cache, not per token
            runs.deallocate()
            runsCapacity = cache.maxRuns
            runs = .allocate(capacity: runsCapacity)
        }
        let nRuns = cache.visibleRuns(layer: layer, pos: pos, into: runs)
        var total = 0
        for r in 0 ..< nRuns { total += runs[r].count }
        if pool == nil || threads == 1 || nHead < 2 || nHead * total * headDim < Self.parallelWork {
            attendHeads(0 ..< nHead, layer: layer, pos: pos, nRuns: nRuns, qIndex: total - 1, q: q, cache: cache,
                        out: out, scores: scores, qr: qr)
            return
        }
        if scoresCapacity < cache.maxVisible {   // once per cache
            scoresScratch.deallocate()
            scoresCapacity = cache.maxVisible
            scoresScratch = .allocate(capacity: scoresCapacity * threads)
        }
        job.layer = layer; job.pos = pos; job.nRuns = nRuns; job.qIndex = total - 1
        job.q = q; job.out = out; job.cache = cache
        qlm_pool_run(pool, { ctx, ith, nth in
            let job = Unmanaged<Job>.fromOpaque(ctx!).takeUnretainedValue()
            let a = job.owner!
            let lo = a.nHead * Int(ith) / Int(nth), hi = a.nHead * Int(ith + 1) / Int(nth)
            guard lo < hi else { return }
            a.attendHeads(lo ..< hi, layer: job.layer, pos: job.pos, nRuns: job.nRuns, qIndex: job.qIndex, q: job.q!,
                          cache: job.cache!, out: job.out!, scores: a.scoresScratch + Int(ith) * a.scoresCapacity,
                          qr: a.qr + Int(ith) * a.headDim)
        }, Unmanaged.passUnretained(job).toOpaque())
        job.cache = nil
    }

    /// Heads `heads` of one query over the runs already in `runs`.
    private func attendHeads(_ heads: Range<Int>, layer: Int, pos: Int, nRuns: Int, qIndex: Int, q: UnsafePointer<Float>,
                             cache: KVCache, out: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>,
                             qr: UnsafeMutablePointer<Float>) {
        let group = nHead / nKVHead
        let hd = Int64(headDim), stride = Int64(cache.rowBytes)
        let t = cache.kvType.code
        let headBytes = cache.kvType.headBytes(headDim)
        for h in heads {
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
