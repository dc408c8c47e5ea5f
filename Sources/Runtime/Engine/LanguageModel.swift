import CKernels
import Foundation
import Quant

/// What every architecture offers the generator, the evaluator and the bench.
package protocol LanguageModel: AnyObject {
    /// The dimensions the architecture's config gives (head_dim, query and KV widths, vocabulary).
    var shape: ModelShape { get }
    /// Absolute positions, or re-indexed inside the cache (rotary models only).
    var positionMode: PositionMode { get }
    var compute: Compute { get }
    var cache: KVCache { get }
    /// The most tokens one forward call processes at once (longer inputs are split).
    var maxBatch: Int { get }
    /// The most positions a sequence may use: n_ctx, or Int.max for a rotary model whose
    /// every layer is a ring (banded) with re-indexed positions.
    var positionLimit: Int { get }

    /// The forward pass, written once per architecture: runs `tokens` at the rows' positions
    /// over the rows' caches (`Rows`: one sequence from a start position, or one row per
    /// sequence), and calls `onLogits(t, logits)` for every t in `logitRows` (indices into
    /// `tokens`), in order. The logits buffer is reused: copy what you keep.
    func forward(_ tokens: UnsafeBufferPointer<Int32>, rows: Rows, logitRows: Range<Int>,
                 onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws

    /// Every matrix a decoded token multiplies by (layers' and the classifier).
    var matrices: [Matrix] { get }
}

extension LanguageModel {
    /// Runs `tokens` at positions startPos ..< startPos + count, filling the KV cache, and
    /// calls `onLogits(t, logits)` for every t in `logitRows` (indices into `tokens`), in order.
    /// At most `maxBatch` tokens (`forward(_:startPos:logitRows:onLogits:)` splits longer inputs).
    package func forwardBatch(_ tokens: UnsafeBufferPointer<Int32>, startPos: Int, logitRows: Range<Int>,
                             onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        try forward(tokens, rows: Rows(startPos: startPos), logitRows: logitRows, onLogits: onLogits)
    }

    /// One token of each of several sequences in one pass (a server's decode step): row t is
    /// `tokens[t]` at `positions[t]` over `caches[t]` (caches built like this model's, e.g. by
    /// `LoadedModel.makeSequence`); `onLogits(t, logits)` for every row.
    package func forwardRows(_ tokens: UnsafeBufferPointer<Int32>, positions: UnsafeBufferPointer<Int>, caches: [KVCache],
                            onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        try forward(tokens, rows: Rows(positions: positions, caches: caches), logitRows: 0 ..< tokens.count, onLogits: onLogits)
    }
}

package struct ModelError: Error, CustomStringConvertible {
    package let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

extension LanguageModel {
    /// Weight bytes one decoded token reads: every matrix once (an embedding lookup reads one row).
    package var weightBytesPerToken: Int { matrices.reduce(0) { $0 + $1.byteCount } }
    /// Parameters in those matrices (2 × this is the multiply-adds' flops per token).
    package var matrixParameters: Int { matrices.reduce(0) { $0 + $1.rows * $1.cols } }

    /// Forward over any number of tokens, split into batches of at most `maxBatch`.
    package func forward(_ tokens: [Int32], startPos: Int, logitRows: Range<Int>,
                        onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        try tokens.withUnsafeBufferPointer { try forward($0, startPos: startPos, logitRows: logitRows, onLogits: onLogits) }
    }

    /// The same over a buffer (a slice of a longer sequence, without copying it).
    package func forward(_ all: UnsafeBufferPointer<Int32>, startPos: Int, logitRows: Range<Int>,
                        onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        guard startPos >= 0, startPos + all.count <= positionLimit else {
            throw ModelError("positions \(startPos)..<\(startPos + all.count) exceed the model's context of \(positionLimit) tokens")
        }
        let vocab = shape.vocabSize
        for id in all where id < 0 || Int(id) >= vocab {
            throw ModelError("token id \(id) is outside the vocabulary (0..<\(vocab))")
        }
        var lo = 0
        while lo < all.count {
            let hi = min(all.count, lo + maxBatch)
            let local = logitRows.localized(to: lo ..< hi)
            try forwardBatch(UnsafeBufferPointer(rebasing: all[lo ..< hi]), startPos: startPos + lo, logitRows: local) { t, l in
                onLogits(lo + t, l)
            }
            lo = hi
        }
    }
}

extension Range where Bound == Int {
    /// The part of self inside `window`, shifted so window.lowerBound is 0 (empty if none).
    func localized(to window: Range<Int>) -> Range<Int> {
        let lo = Swift.max(lowerBound, window.lowerBound), hi = Swift.min(upperBound, window.upperBound)
        return lo < hi ? (lo - window.lowerBound) ..< (hi - window.lowerBound) : 0 ..< 0
    }
}

/// Scratch for one forward call of up to `maxBatch` tokens, allocated once (llama2.c's RunState).
final class RunState {
    let maxBatch: Int
    let logitChunk: Int
    let x: UnsafeMutablePointer<Float>      // [B, d] residual stream
    let xb: UnsafeMutablePointer<Float>     // [B, d] normed input of a sub-layer
    let qkv: UnsafeMutablePointer<Float>    // [B, qDim + 2 kvDim] queries, keys, values
    let att: UnsafeMutablePointer<Float>    // [B, qDim] attention output
    let proj: UnsafeMutablePointer<Float>   // [B, d] sub-layer output
    let hb: UnsafeMutablePointer<Float>     // [B, d_ff]
    let hb2: UnsafeMutablePointer<Float>    // [B, d_ff]
    let scores: UnsafeMutablePointer<Float> // [maxVisible] attention scores
    let logits: UnsafeMutablePointer<Float> // [logitChunk, vocab]
    private let all: UnsafeMutablePointer<Float>

    /// Floats of each buffer; the logits chunk is at most `maxBatch` rows (more are never used).
    /// `maxVisible` is the most keys one query can see (the scores buffer).
    static func sizes(_ sh: ModelShape, maxBatch: Int, logitChunk: Int, maxVisible: Int? = nil) -> [Int] {
        let d = sh.dModel, b = maxBatch
        return [b * d, b * d, b * (sh.qDim + 2 * sh.kvDim), b * sh.qDim, b * d, b * sh.dFF, b * sh.dFF, max(1, maxVisible ?? sh.nCtx),
                min(logitChunk, maxBatch) * sh.vocabSize]
    }

    /// Bytes a RunState of these dimensions allocates (the memory planner counts them).
    static func byteCount(_ sh: ModelShape, maxBatch: Int, logitChunk: Int, maxVisible: Int? = nil) -> Int {
        sizes(sh, maxBatch: maxBatch, logitChunk: logitChunk, maxVisible: maxVisible).reduce(0, +) * MemoryLayout<Float>.size
    }

    init(_ sh: ModelShape, maxBatch: Int, logitChunk: Int, maxVisible: Int) {
        self.maxBatch = maxBatch
        self.logitChunk = min(logitChunk, maxBatch)
        let sizes = RunState.sizes(sh, maxBatch: maxBatch, logitChunk: logitChunk, maxVisible: maxVisible)
        // Not zero-filled: every buffer is written before it is read, and pages never touched
        // (e.g. logits rows beyond the one generation asks for) cost no resident memory.
        all = .allocate(capacity: sizes.reduce(0, +))
        var p = all
        var ptrs: [UnsafeMutablePointer<Float>] = []
        for s in sizes { ptrs.append(p); p += s }
        (x, xb, qkv, att, proj, hb, hb2, scores, logits) = (ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], ptrs[6], ptrs[7], ptrs[8])
    }

    deinit { all.deallocate() }
}
