import CKernels
import Foundation
import Quant

/// Causal multi-head attention with grouped-query heads, shared by every architecture:
/// for one query at absolute position `pos`, each head h attends over the cached keys of
/// positions 0...pos of its KV head h / (nHead / nKVHead).
public struct Attention {
    public let nHead: Int
    public let nKVHead: Int
    public let headDim: Int
    let scale: Float

    public init(_ hp: HParams) {
        nHead = hp.nHead
        nKVHead = hp.nKVHead
        headDim = hp.headDim
        scale = 1 / Float(hp.headDim).squareRoot()
    }

    /// q: nHead × headDim floats; out: the same; scores: scratch of at least pos + 1 floats.
    public func attend(layer: Int, pos: Int, q: UnsafePointer<Float>, cache: KVCache,
                       out: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>) {
        let group = nHead / nKVHead
        let hd = Int64(headDim), stride = Int64(nKVHead * headDim)
        for h in 0 ..< nHead {
            let qh = q + h * headDim
            let kvOff = (h / group) * headDim
            var n = 0
            cache.visibleRuns(layer: layer, pos: pos) { k, _, count in
                qlm_attn_scores_f32(qh, k + kvOff, stride, Int64(count), hd, scale, scores + n)
                n += count
            }
            qlm_softmax(scores, Int64(n))
            let oh = out + h * headDim
            oh.update(repeating: 0, count: headDim)
            n = 0
            cache.visibleRuns(layer: layer, pos: pos) { _, v, count in
                qlm_attn_accum_f32(scores + n, v + kvOff, stride, Int64(count), hd, oh)
                n += count
            }
        }
    }
}
