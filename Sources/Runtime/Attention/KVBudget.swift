import Foundation

/// KV-cache sizes from hyper-parameters alone.
package enum KVBudget {
    /// Cache slots (positions held) a layer needs to serve `tokens` positions 0..<tokens:
    ///   dense          tokens
    ///   banded(W)      min(tokens, S + W)                 (S sink slots + a ring of W)
    ///   strided(W, K)  min(tokens, S) + min(W, tokens - S) + #{S ≤ j < tokens : j % K == 0}
    ///                  (sinks + a ring of the last W + every K-th position past the sinks)
    package static func slots(_ p: AttentionPattern, sinks: Int, tokens: Int) -> Int {
        switch p {
        case .dense: return tokens
        case .banded(let w): return min(tokens, sinks + w)
        case .strided(let w, let k):
            let s = min(sinks, tokens)
            return s + min(w, tokens - s) + strideSlots(stride: k, sinks: sinks, tokens: tokens)
        }
    }

    /// #{j : sinks ≤ j < tokens, j % k == 0}.
    package static func strideSlots(stride k: Int, sinks: Int, tokens: Int) -> Int {
        guard tokens > sinks else { return 0 }
        let first = (sinks + k - 1) / k     // index of the first multiple ≥ sinks
        let last = (tokens - 1) / k         // index of the last multiple < tokens
        return max(0, last - first + 1)
    }

    /// Bytes of keys + values for all layers at `tokens` positions.
    package static func bytes(layers: [AttentionPattern], sinks: Int, kvType: KVType, nKVHead: Int, headDim: Int, tokens: Int) -> Int {
        checkedBytes(layers: layers, sinks: sinks, kvType: kvType, nKVHead: nKVHead, headDim: headDim, tokens: tokens) ?? .max
    }

    /// `bytes`, or nil when the total does not fit in an Int (absurd sizes from flags).
    package static func checkedBytes(layers: [AttentionPattern], sinks: Int, kvType: KVType, nKVHead: Int, headDim: Int, tokens: Int) -> Int? {
        var total = 0
        for p in layers {
            let (row, o1) = nKVHead.multipliedReportingOverflow(by: kvType.headBytes(headDim))
            let (layer, o2) = row.multipliedReportingOverflow(by: 2 * slots(p, sinks: sinks, tokens: tokens))
            let (t, o3) = total.addingReportingOverflow(layer)
            if o1 || o2 || o3 { return nil }
            total = t
        }
        return total
    }
}
