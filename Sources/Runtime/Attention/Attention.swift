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
public final class Attention {
    public let nHead: Int
    public let nKVHead: Int
    public let headDim: Int
    let scale: Float
    /// Rotary frequency of pair i (nil: not a rotary model, or absolute positions).
    let ropeFreq: [Float]?
    private var runs: UnsafeMutablePointer<KVRun>
    private var runsCapacity: Int
    private let qr: UnsafeMutablePointer<Float>

    public init(_ hp: HParams, reindexRotary ropeFreq: [Float]? = nil) {
        nHead = hp.nHead
        nKVHead = hp.nKVHead
        headDim = hp.headDim
        scale = 1 / Float(hp.headDim).squareRoot()
        self.ropeFreq = ropeFreq
        runsCapacity = 4
        runs = .allocate(capacity: runsCapacity)
        qr = .allocate(capacity: hp.headDim)
    }

    deinit {
        runs.deallocate()
        qr.deallocate()
    }

    /// qr = q rotated by `delta` positions (adjacent pairs, as Llama.rope).
    @inline(__always)
    private func rotate(_ q: UnsafePointer<Float>, by delta: Int, freq: UnsafeBufferPointer<Float>) -> UnsafePointer<Float> {
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

    /// q: nHead × headDim floats; out: the same; scores: scratch of at least cache.maxVisible floats.
    public func attend(layer: Int, pos: Int, q: UnsafePointer<Float>, cache: KVCache,
                       out: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>) {
        let group = nHead / nKVHead
        let hd = Int64(headDim), stride = Int64(cache.rowBytes)
        let t = cache.kvType.code
        let headBytes = cache.kvType.headBytes(headDim)
        if cache.maxRuns > runsCapacity {   // once per cache, not per token
            runs.deallocate()
            runsCapacity = cache.maxRuns
            runs = .allocate(capacity: runsCapacity)
        }
        let nRuns = cache.visibleRuns(layer: layer, pos: pos, into: runs)
        var total = 0
        for r in 0 ..< nRuns { total += runs[r].count }
        let qIndex = total - 1
        for h in 0 ..< nHead {
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
                            qlm_attn_scores(t, rotate(qh, by: delta, freq: freq), run.k + kvOff, stride, Int64(run.count), hd, scale, scores + n)
                        } else {
                            for i in 0 ..< run.count {
                                let delta = (qIndex - (n + i)) - (pos - (run.firstPos + i * run.posStep))
                                qlm_attn_scores(t, rotate(qh, by: delta, freq: freq), run.k + i * cache.rowBytes + kvOff, stride, 1, hd, scale, scores + n + i)
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
