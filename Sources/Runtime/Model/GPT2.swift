import CKernels
import Foundation
import Quant

/// GPT-2: token + learned position embeddings, pre-LayerNorm blocks of masked multi-head
/// self-attention and a GELU (tanh form) MLP, a final LayerNorm, and logits from the token
/// embedding (tied). Matrices are stored [out, in] (the converter transposed HF's Conv1D).
public final class GPT2: LanguageModel {
    struct Layer {
        let ln1w, ln1b: UnsafePointer<Float>
        let attnW: Matrix          // c_attn [3d, d]: q, k, v stacked
        let attnB: UnsafePointer<Float>
        let projW: Matrix          // c_proj [d, d]
        let projB: UnsafePointer<Float>
        let ln2w, ln2b: UnsafePointer<Float>
        let fcW: Matrix            // c_fc [d_ff, d]
        let fcB: UnsafePointer<Float>
        let fcProjW: Matrix        // mlp.c_proj [d, d_ff]
        let fcProjB: UnsafePointer<Float>
    }

    public let hparams: HParams
    public let compute: Compute
    public let cache: KVCache
    public let maxBatch: Int
    /// Learned absolute positions: nothing past n_ctx (positions ≥ n_ctx are an error, never
    /// wrapped or clamped), and no re-indexing (a window keeps absolute positions).
    public var positionLimit: Int { min(hparams.nCtx, cache.capacity) }
    let weights: WeightStore
    /// The token embedding and the tied classifier (the same tensor; either may stream).
    let wte: EmbeddingTable
    let output: OutputMatrix
    let wpe: Matrix
    let layers: [Layer]
    let lnfW, lnfB: UnsafePointer<Float>
    let attention: Attention
    let state: RunState

    public init(weights: WeightStore, compute: Compute, cache: KVCache, maxBatch: Int) throws {
        let hp = weights.file.metadata.hparams
        guard hp.nKVHead == hp.nHead else { throw QuantError(weights.file.path, "GPT-2 needs n_kv_head == n_head") }
        self.hparams = hp
        self.weights = weights
        self.compute = compute
        self.cache = cache
        self.maxBatch = maxBatch
        let d = hp.dModel, f = hp.dFF
        wte = try weights.embeddingTable("wte.weight", rows: hp.vocabSize, cols: d)
        output = try weights.outputMatrix("wte.weight", rows: hp.vocabSize, cols: d, shared: wte)
        wpe = try weights.matrix("wpe.weight", rows: hp.nCtx, cols: d)
        layers = try (0 ..< hp.nLayer).map { i in
            let p = "h.\(i)."
            return Layer(
                ln1w: try weights.vector(p + "ln_1.weight", count: d), ln1b: try weights.vector(p + "ln_1.bias", count: d),
                attnW: try weights.matrix(p + "attn.c_attn.weight", rows: 3 * d, cols: d),
                attnB: try weights.vector(p + "attn.c_attn.bias", count: 3 * d),
                projW: try weights.matrix(p + "attn.c_proj.weight", rows: d, cols: d),
                projB: try weights.vector(p + "attn.c_proj.bias", count: d),
                ln2w: try weights.vector(p + "ln_2.weight", count: d), ln2b: try weights.vector(p + "ln_2.bias", count: d),
                fcW: try weights.matrix(p + "mlp.c_fc.weight", rows: f, cols: d),
                fcB: try weights.vector(p + "mlp.c_fc.bias", count: f),
                fcProjW: try weights.matrix(p + "mlp.c_proj.weight", rows: d, cols: f),
                fcProjB: try weights.vector(p + "mlp.c_proj.bias", count: d))
        }
        lnfW = try weights.vector("ln_f.weight", count: d)
        lnfB = try weights.vector("ln_f.bias", count: d)
        attention = Attention(hp, compute: compute)
        state = RunState(hp, maxBatch: maxBatch, logitChunk: 16, maxVisible: cache.maxVisible)
    }

    public var matrices: [Matrix] { layers.flatMap { [$0.attnW, $0.projW, $0.fcW, $0.fcProjW] } + output.matrices }

    public func forwardBatch(_ tokens: UnsafeBufferPointer<Int32>, startPos: Int, logitRows: Range<Int>,
                             onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        let T = tokens.count, d = hparams.dModel, f = hparams.dFF, eps = hparams.normEps
        guard startPos + T <= hparams.nCtx else {
            throw ModelError("GPT-2 has learned positions up to \(hparams.nCtx); positions \(startPos)..<\(startPos + T) do not fit")
        }
        let s = state, c = compute
        // Embeddings: token + position.
        for t in 0 ..< T {
            try c.embedding(wte, row: Int(tokens[t]), into: s.x + t * d)
            c.embedding(wpe, row: startPos + t, into: s.proj)
            qlm_add_f32(s.x + t * d, s.proj, Int64(d))
        }
        for (l, L) in layers.enumerated() {
            try weights.acquire(layer: l)      // streamed layers: wait until L's matrices are in their buffer
            defer { weights.release(layer: l) }
            // Attention sub-layer.
            for t in 0 ..< T { qlm_layernorm(s.xb + t * d, s.x + t * d, L.ln1w, L.ln1b, Int64(d), eps) }
            c.linear(L.attnW, s.xb, T: T, out: s.qkv, bias: L.attnB)
            // Store then attend, token by token: a ring cache may overwrite a row a later query
            // of this batch no longer sees but an earlier one still does.
            for t in 0 ..< T {
                let row = s.qkv + t * 3 * d
                cache.store(layer: l, pos: startPos + t, k: row + d, v: row + 2 * d)
                attention.attend(layer: l, pos: startPos + t, q: s.qkv + t * 3 * d, cache: cache, out: s.att + t * d, scores: s.scores)
            }
            c.linear(L.projW, s.att, T: T, out: s.proj, bias: L.projB)
            qlm_add_f32(s.x, s.proj, Int64(T * d))
            // MLP sub-layer.
            for t in 0 ..< T { qlm_layernorm(s.xb + t * d, s.x + t * d, L.ln2w, L.ln2b, Int64(d), eps) }
            c.linear(L.fcW, s.xb, T: T, out: s.hb, bias: L.fcB)
            qlm_gelu_tanh(s.hb, Int64(T * f))
            c.linear(L.fcProjW, s.hb, T: T, out: s.proj, bias: L.fcProjB)
            qlm_add_f32(s.x, s.proj, Int64(T * d))
        }
        // Final LayerNorm and tied classifier, for the requested rows only.
        for t in logitRows { qlm_layernorm(s.xb + t * d, s.x + t * d, lnfW, lnfB, Int64(d), eps) }
        try emitLogits(state: s, output: output, weights: weights, rows: logitRows, onLogits: onLogits)
    }
}

extension LanguageModel {
    /// logits = output · xb[t] for t in rows, `state.logitChunk` rows per product. A streamed
    /// classifier is multiplied chunk by chunk (rows r0..<r1 of the logits from rows r0..<r1 of
    /// the matrix: the kernels compute every output row on its own, so the logits are the same
    /// bits as one product over the whole matrix).
    func emitLogits(state s: RunState, output: OutputMatrix, weights: WeightStore, rows: Range<Int>,
                    onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        let d = hparams.dModel, vocab = hparams.vocabSize
        var t0 = rows.lowerBound
        while t0 < rows.upperBound {
            let n = min(s.logitChunk, rows.upperBound - t0)
            if output.streamed {
                for k in output.chunks.indices {
                    try weights.acquireOutput(chunk: k)
                    defer { weights.releaseOutput(chunk: k) }
                    let chunk = output.chunks[k]
                    compute.linear(chunk.matrix, s.xb + t0 * d, T: n, out: s.logits + chunk.rows.lowerBound, ldOut: vocab)
                }
            } else {
                compute.linear(output.chunks[0].matrix, s.xb + t0 * d, T: n, out: s.logits, ldOut: vocab)
            }
            for i in 0 ..< n { onLogits(t0 + i, UnsafeBufferPointer(start: s.logits + i * vocab, count: vocab)) }
            t0 += n
        }
    }
}
