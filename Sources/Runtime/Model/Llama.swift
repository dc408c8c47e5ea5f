import CKernels
import Foundation
import Quant

/// Llama as llama2.c runs it: RMSNorm, rotary position embeddings on adjacent pairs,
/// grouped-query attention, a SwiGLU MLP, and a classifier shared with the embedding
/// unless the checkpoint has its own.
public final class Llama: LanguageModel {
    struct Layer {
        let attnNorm: UnsafePointer<Float>
        let wq, wk, wv, wo: Matrix
        let ffnNorm: UnsafePointer<Float>
        let w1, w2, w3: Matrix
    }

    public let hparams: HParams
    public let compute: Compute
    public let cache: KVCache
    public let maxBatch: Int
    let weights: WeightStore
    let embed: EmbeddingTable
    let layers: [Layer]
    let norm: UnsafePointer<Float>
    let output: OutputMatrix
    let attention: Attention
    let state: RunState
    /// Rotary frequencies per pair: theta^(-(2i mod headDim)/headDim), as run.c computes them.
    let ropeFreq: [Float]

    /// Position policy: `PositionMode.absolute` (rotated at absolute positions, up to n_ctx) or
    /// `.cache` (StreamingLLM re-indexing inside the visible window; see `Attention`).
    public let positionMode: PositionMode
    public var positionLimit: Int { positionMode == .cache ? cache.capacity : min(hparams.nCtx, cache.capacity) }

    public init(weights: WeightStore, compute: Compute, cache: KVCache, maxBatch: Int, positions: PositionMode = .absolute) throws {
        let hp = weights.file.metadata.hparams
        self.hparams = hp
        self.weights = weights
        self.compute = compute
        self.cache = cache
        self.maxBatch = maxBatch
        let d = hp.dModel, kv = hp.kvDim, f = hp.dFF
        embed = try weights.embeddingTable("tok_embeddings.weight", rows: hp.vocabSize, cols: d)
        layers = try (0 ..< hp.nLayer).map { i in
            let p = "layers.\(i)."
            return Layer(
                attnNorm: try weights.vector(p + "attention_norm.weight", count: d),
                wq: try weights.matrix(p + "attention.wq.weight", rows: d, cols: d),
                wk: try weights.matrix(p + "attention.wk.weight", rows: kv, cols: d),
                wv: try weights.matrix(p + "attention.wv.weight", rows: kv, cols: d),
                wo: try weights.matrix(p + "attention.wo.weight", rows: d, cols: d),
                ffnNorm: try weights.vector(p + "ffn_norm.weight", count: d),
                w1: try weights.matrix(p + "feed_forward.w1.weight", rows: f, cols: d),
                w2: try weights.matrix(p + "feed_forward.w2.weight", rows: d, cols: f),
                w3: try weights.matrix(p + "feed_forward.w3.weight", rows: f, cols: d))
        }
        norm = try weights.vector("norm.weight", count: d)
        output = try weights.outputMatrix(hp.tiedEmbeddings ? "tok_embeddings.weight" : "output.weight",
                                          rows: hp.vocabSize, cols: d, shared: embed)
        state = RunState(hp, maxBatch: maxBatch, logitChunk: 16, maxVisible: cache.maxVisible)
        let hd = hp.headDim, theta = hp.ropeTheta ?? 10000
        ropeFreq = (0 ..< hd / 2).map { i in 1 / powf(theta, Float(2 * i) / Float(hd)) }
        positionMode = positions
        attention = Attention(hp, reindexRotary: positions == .cache ? ropeFreq : nil, compute: compute)
    }

    public var matrices: [Matrix] { layers.flatMap { [$0.wq, $0.wk, $0.wv, $0.wo, $0.w1, $0.w2, $0.w3] } + output.matrices }

    /// Rotates adjacent pairs (2i, 2i+1) of every head of `v` (n floats) by pos · freq[i].
    @inline(__always)
    func rope(_ v: UnsafeMutablePointer<Float>, count n: Int, pos: Int) {
        let hd = hparams.headDim
        ropeFreq.withUnsafeBufferPointer { freq in
            var i = 0
            while i < n {
                let angle = Float(pos) * freq[(i % hd) / 2]
                let c = cosf(angle), s = sinf(angle)
                let a = v[i], b = v[i + 1]
                v[i] = a * c - b * s
                v[i + 1] = a * s + b * c
                i += 2
            }
        }
    }

    public func forwardBatch(_ tokens: UnsafeBufferPointer<Int32>, startPos: Int, logitRows: Range<Int>,
                             onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        let T = tokens.count, d = hparams.dModel, kv = hparams.kvDim, f = hparams.dFF, eps = hparams.normEps
        let s = state, c = compute
        let q = s.qkv, k = s.qkv + T * d, v = s.qkv + T * (d + kv)   // [T, d], [T, kv], [T, kv]
        for t in 0 ..< T { try c.embedding(embed, row: Int(tokens[t]), into: s.x + t * d) }
        for (l, L) in layers.enumerated() {
            try weights.acquire(layer: l)      // streamed layers: wait until L's matrices are in their buffer
            defer { weights.release(layer: l) }
            // Attention sub-layer.
            for t in 0 ..< T { qlm_rmsnorm(s.xb + t * d, s.x + t * d, L.attnNorm, Int64(d), eps) }
            c.linear(L.wq, s.xb, T: T, out: q)
            c.linear(L.wk, s.xb, T: T, out: k)
            c.linear(L.wv, s.xb, T: T, out: v)
            for t in 0 ..< T {
                rope(q + t * d, count: d, pos: startPos + t)
                rope(k + t * kv, count: kv, pos: startPos + t)
                // Store then attend, token by token (a ring cache reuses rows).
                cache.store(layer: l, pos: startPos + t, k: k + t * kv, v: v + t * kv)
                attention.attend(layer: l, pos: startPos + t, q: q + t * d, cache: cache, out: s.att + t * d, scores: s.scores)
            }
            c.linear(L.wo, s.att, T: T, out: s.proj)
            qlm_add_f32(s.x, s.proj, Int64(T * d))
            // SwiGLU MLP sub-layer: w2(silu(w1 x) * w3 x).
            for t in 0 ..< T { qlm_rmsnorm(s.xb + t * d, s.x + t * d, L.ffnNorm, Int64(d), eps) }
            c.linear(L.w1, s.xb, T: T, out: s.hb)
            c.linear(L.w3, s.xb, T: T, out: s.hb2)
            qlm_silu_mul(s.hb, s.hb2, Int64(T * f))
            c.linear(L.w2, s.hb, T: T, out: s.proj)
            qlm_add_f32(s.x, s.proj, Int64(T * d))
        }
        for t in logitRows { qlm_rmsnorm(s.xb + t * d, s.x + t * d, norm, Int64(d), eps) }
        try emitLogits(state: s, output: output, weights: weights, rows: logitRows, onLogits: onLogits)
    }
}
