import CKernels
import Foundation
import Quant

/// Where the rows of one forward pass belong: one sequence (row t at startPos + t, over the
/// model's own cache), or one row per sequence, each at its own position over its own cache
/// (a server's batched decode step: the weights are read once for every sequence).
package struct Rows {
    let startPos: Int
    let positions: UnsafeBufferPointer<Int>?
    let caches: [KVCache]?

    init(startPos: Int) { self.startPos = startPos; positions = nil; caches = nil }
    init(positions: UnsafeBufferPointer<Int>, caches: [KVCache]) {
        startPos = 0; self.positions = positions; self.caches = caches
    }

    @inline(__always) func pos(_ t: Int) -> Int { positions.map { $0[t] } ?? startPos + t }
    /// The highest position any row uses (+1).
    func end(_ T: Int) -> Int { positions.map { ($0.max() ?? -1) + 1 } ?? startPos + T }
}

/// The steps every decoder-only forward pass is made of, written once: embedding rows,
/// a norm over T rows, the attention step (store K/V, attend, token by token), the residual
/// add and the classifier. GPT2.swift and Llama.swift compose them top to bottom.
struct Blocks {
    let shape: ModelShape
    let eps: Float
    let state: RunState
    let compute: Compute
    let cache: KVCache
    let attention: Attention
    let weights: WeightStore

    /// A norm's weights: RMSNorm (Llama) or LayerNorm with bias (GPT-2).
    enum Norm {
        case rms(UnsafePointer<Float>)
        case layer(UnsafePointer<Float>, bias: UnsafePointer<Float>)
    }

    /// out[t] = norm(x[t]) for t in rows (rows of width d_model).
    @inline(__always)
    func norm(_ n: Norm, rows: Range<Int>, from x: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let d = shape.dModel
        switch n {
        case .rms(let w): for t in rows { qlm_rmsnorm(out + t * d, x + t * d, w, Int64(d), eps) }
        case .layer(let w, let b): for t in rows { qlm_layernorm(out + t * d, x + t * d, w, b, Int64(d), eps) }
        }
    }

    /// Token embeddings of T tokens into x.
    @inline(__always)
    func embed(_ table: EmbeddingTable, _ tokens: UnsafeBufferPointer<Int32>, into x: UnsafeMutablePointer<Float>) throws {
        for t in 0 ..< tokens.count { try compute.embedding(table, row: Int(tokens[t]), into: x + t * shape.dModel) }
    }

    /// Token plus learned position embeddings of T tokens into x (GPT-2, GPT-Neo). `model`
    /// names the architecture in the error for a position past the table.
    func embedWithPositions(_ table: EmbeddingTable, positions wpe: Matrix, _ tokens: UnsafeBufferPointer<Int32>,
                            rows: Rows, model: String) throws {
        let T = tokens.count, d = shape.dModel
        guard rows.end(T) <= shape.nCtx else {
            throw ModelError("\(model) has learned positions up to \(shape.nCtx); position \(rows.end(T) - 1) does not fit")
        }
        try embed(table, tokens, into: state.x)
        for t in 0 ..< T {
            compute.embedding(wpe, row: rows.pos(t), into: state.proj)
            qlm_add_f32(state.x + t * d, state.proj, Int64(d))
        }
    }

    /// The attention sub-layer's products over T rows: xb = n(x) (no norm: x as it is), then
    /// q, k, v = Wq / Wk / Wv · xb (+ biases), row t of each `ldOut` floats after row t - 1
    /// (default: the matrix's rows, i.e. packed [T, rows]).
    func qkv(_ n: Norm?, _ wq: Matrix, _ wk: Matrix, _ wv: Matrix, T: Int,
             q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, ldOut: Int? = nil,
             biases: (UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafePointer<Float>?) = (nil, nil, nil)) {
        let s = state
        let x: UnsafeMutablePointer<Float>
        if let n { norm(n, rows: 0 ..< T, from: s.x, into: s.xb); x = s.xb } else { x = s.x }
        compute.linear(wq, x, T: T, out: q, ldOut: ldOut, bias: biases.0)
        compute.linear(wk, x, T: T, out: k, ldOut: ldOut, bias: biases.1)
        compute.linear(wv, x, T: T, out: v, ldOut: ldOut, bias: biases.2)
    }

    /// The GPT MLP sub-layer over T rows: x += down(gelu_tanh(up(LayerNorm(x)) + upBias)) + downBias.
    func geluMLP(_ n: Norm, up: Matrix, upBias: UnsafePointer<Float>, down: Matrix, downBias: UnsafePointer<Float>, T: Int) {
        let s = state
        norm(n, rows: 0 ..< T, from: s.x, into: s.xb)
        compute.linear(up, s.xb, T: T, out: s.hb, bias: upBias)
        qlm_gelu_tanh(s.hb, Int64(T * shape.dFF))
        compute.linear(down, s.hb, T: T, out: s.proj, bias: downBias)
        residual(T)
    }

    /// The gated MLP sub-layer over T rows (Llama's SwiGLU, Gemma's GeGLU):
    /// x += post(down(act(gate · n(x)) * (up · n(x)))). No `norm` reads x as it is (OLMo 2's
    /// post-only norms); `post` norms the product before the residual add (Gemma).
    func gatedMLP(_ n: Norm?, gate: Matrix, up: Matrix, down: Matrix, activation: DecoderRecipe.Activation,
                  post: Norm? = nil, T: Int) {
        let s = state
        let x: UnsafeMutablePointer<Float>
        if let n { norm(n, rows: 0 ..< T, from: s.x, into: s.xb); x = s.xb } else { x = s.x }
        compute.linear(gate, x, T: T, out: s.hb)
        compute.linear(up, x, T: T, out: s.hb2)
        switch activation {
        case .silu: qlm_silu_mul(s.hb, s.hb2, Int64(T * shape.dFF))
        case .geluTanh: qlm_gelu_mul(s.hb, s.hb2, Int64(T * shape.dFF))
        }
        compute.linear(down, s.hb, T: T, out: s.proj)
        if let post { norm(post, rows: 0 ..< T, from: s.proj, into: s.proj) }
        residual(T)
    }

    /// For each of T tokens in order: store its key and value in the cache, then attend with
    /// its query (a ring cache may overwrite a row a later query of this batch no longer sees
    /// but an earlier one still does, so storing all first would be wrong). When the rows are
    /// one sequence and the cache keeps every position of the batch (`KVCache.keepsEveryPosition`),
    /// all T are stored first and the T queries attend in one call, spread over the threads (the
    /// same numbers: each query sees the same keys either way). Row t of q, k, v starts at
    /// q + t * qStride (and so on); out is [T, qDim]. `rows` says each row's position and cache
    /// (one sequence, or one row per sequence). `with` replaces `attention` for this layer
    /// (models whose layers rotate with different bases re-index with their own).
    @inline(__always)
    func attend(layer l: Int, rows: Rows, T: Int, q: UnsafeMutablePointer<Float>, qStride: Int,
                k: UnsafeMutablePointer<Float>, kStride: Int, v: UnsafeMutablePointer<Float>, vStride: Int,
                out: UnsafeMutablePointer<Float>, with layerAttention: Attention? = nil) {
        let attention = layerAttention ?? self.attention
        if T > 1, rows.positions == nil, cache.keepsEveryPosition(layer: l, through: rows.startPos + T - 1) {
            for t in 0 ..< T { cache.store(layer: l, pos: rows.startPos + t, k: k + t * kStride, v: v + t * vStride) }
            attention.attend(layer: l, startPos: rows.startPos, T: T, q: q, qStride: qStride, cache: cache, out: out,
                             outStride: shape.qDim, scores: state.scores)
            return
        }
        for t in 0 ..< T {
            let c = rows.caches?[t] ?? cache, pos = rows.pos(t)
            c.store(layer: l, pos: pos, k: k + t * kStride, v: v + t * vStride)
            attention.attend(layer: l, pos: pos, q: q + t * qStride, cache: c, out: out + t * shape.qDim, scores: state.scores)
        }
    }

    /// x += proj over T rows (the residual connection).
    @inline(__always)
    func residual(_ T: Int) { qlm_add_f32(state.x, state.proj, Int64(T * shape.dModel)) }

    /// logits = output · xb[t] for t in rows, `state.logitChunk` rows per product. A streamed
    /// classifier is multiplied chunk by chunk (rows r0..<r1 of the logits from rows r0..<r1 of
    /// the matrix: the kernels compute every output row on its own, so the logits are the same
    /// bits as one product over the whole matrix).
    func logits(_ output: OutputMatrix, rows: Range<Int>, onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        let s = state, d = shape.dModel, vocab = shape.vocabSize
        var t0 = rows.lowerBound
        if let screen = try weights.screen(for: output) {
            let full = output.chunks[0].matrix
            while t0 < rows.upperBound {
                let n = min(s.logitChunk, rows.upperBound - t0)
                compute.linear(screen.matrix, s.xb + t0 * d, T: n, out: s.logits, ldOut: vocab)
                for i in 0 ..< n {
                    let row = s.logits + i * vocab
                    try screen.rescore(row, x: s.xb + (t0 + i) * d, classifier: full, compute: compute)
                    onLogits(t0 + i, UnsafeBufferPointer(start: row, count: vocab))
                }
                t0 += n
            }
            return
        }
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
