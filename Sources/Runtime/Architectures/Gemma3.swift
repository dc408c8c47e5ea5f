import CKernels
import Foundation
import Quant

/// Gemma 3 (text), as llama.cpp's src/models/gemma3.cpp runs a GGUF of it: embeddings scaled
/// by √d; per block RMSNorm → q, k, v → per-head RMSNorm of q and k → RoPE on halves (NeoX
/// order; base 10,000 on local layers, the metadata's 1,000,000 on global ones) → attention with
/// scores scaled by 1/√query_pre_attn_scalar → out product → RMSNorm → residual; RMSNorm →
/// GeGLU MLP down(gelu_tanh(gate x) · up x) → RMSNorm → residual; final RMSNorm; classifier
/// tied to the embedding. Norm weights are used as stored: llama.cpp's converter has already
/// added Gemma's "+1" (conversion/gemma.py, Gemma3Model.norm_shift).
///
/// Local layers attend to a sliding window (`sliding_window`, 512) and are declared `banded`
/// (a ring KV cache); every `sliding_window_pattern`-th layer (6: layers 5, 11, 17, llama.cpp's
/// `il % 6 == 5`) is global and dense.
package final class Gemma3: Architecture {
    package static let name = "gemma3"
    package static let positionEncoding = PositionEncoding.rotary
    /// GGUF's own names (the tensor roles), so a .qlm reads like the GGUF it came from.
    package static let tensorNames = TensorNames(
        layerPrefix: "blk.",
        global: [.tokenEmbedding: "token_embd", .outputNorm: "output_norm", .output: "output"],
        perLayer: [.attnNorm: "attn_norm", .attnQ: "attn_q", .attnK: "attn_k", .attnV: "attn_v",
                   .attnQNorm: "attn_q_norm", .attnKNorm: "attn_k_norm", .attnOutput: "attn_output",
                   .postAttnNorm: "post_attention_norm", .ffnNorm: "ffn_norm", .ffnGate: "ffn_gate",
                   .ffnUp: "ffn_up", .ffnDown: "ffn_down", .postFFNNorm: "post_ffw_norm"])

    /// llama.cpp's Gemma 3 tensors (src/models/gemma3.cpp): norms before and after attention and
    /// the MLP, per-head q/k norms; its extra GGUF keys (local layers by the pattern's period,
    /// default 6 there).
    package static let formats = ArchitectureFormats(name: name, tensors: { hp in
        let d = hp.dModel, q = hp.qDim, kv = hp.kvDim, f = hp.dFF, hd = hp.headDim
        return TensorSpec.decoder(hp, perLayer: [
            (.attnNorm, [d]), (.attnQ, [q, d]), (.attnK, [kv, d]), (.attnV, [kv, d]), (.attnQNorm, [hd]), (.attnKNorm, [hd]),
            (.attnOutput, [d, q]), (.postAttnNorm, [d]), (.ffnNorm, [d]), (.ffnGate, [f, d]), (.ffnUp, [f, d]), (.ffnDown, [d, f]),
            (.postFFNNorm, [d])])
    }, gguf: GGUFMapping(architecture: "gemma3", extraKeys: [
        ("attention.key_length", "head_dim"), ("attention.sliding_window", "sliding_window"),
        ("attention.sliding_window_pattern", "sliding_window_pattern"), ("rope.freq_base_swa", "rope_local_theta"),
        ("final_logit_softcapping", "final_logit_softcap"),
    ]), hf: HFMapping(modelTypes: ["gemma3_text"], hparams: hfHParams, name: HFMapping.decoderNames([
        .attnNorm: "input_layernorm", .attnQ: "self_attn.q_proj", .attnK: "self_attn.k_proj", .attnV: "self_attn.v_proj",
        .attnQNorm: "self_attn.q_norm", .attnKNorm: "self_attn.k_norm", .attnOutput: "self_attn.o_proj",
        .postAttnNorm: "post_attention_layernorm", .ffnNorm: "pre_feedforward_layernorm", .ffnGate: "mlp.gate_proj",
        .ffnUp: "mlp.up_proj", .ffnDown: "mlp.down_proj", .postFFNNorm: "post_feedforward_layernorm"]),
        // transformers' Gemma RMSNorm scales by (1 + w); llama.cpp's converter stores 1 + w, as this model reads it.
        adjust: { key, _ in
            [.attnNorm, .attnQNorm, .attnKNorm, .postAttnNorm, .ffnNorm, .postFFNNorm, .outputNorm].contains(key.role) ? .addOne : .none
        }))

    /// Gemma3TextConfig: layer_types (or the older sliding_window_pattern) gives the period of
    /// the global layers; rope_parameters per layer type (or rope_theta + rope_local_base_freq).
    @Sendable static func hfHParams(_ cfg: HFConfig) throws -> HParams {
        for k in ["final_logit_softcapping", "attn_logit_softcapping"] where try cfg.doubleIfPresent(k) != nil {
            throw QuantError(cfg.file, "config.json \(k) is set: soft-capping is not supported by gemma3")
        }
        try cfg.require(activation: ["gelu_pytorch_tanh"], key: "hidden_activation", layerType: "full_attention")
        try cfg.require(activation: ["gelu_pytorch_tanh"], key: "hidden_activation", layerType: "sliding_attention")
        var hp = try cfg.decoderHParams(tiedDefault: true, thetaDefault: 1_000_000, layerType: "full_attention")
        let local = try cfg.rope("sliding_attention", defaultTheta: try cfg.double("rope_local_base_freq", default: 10_000))
        hp.extra["rope_local_theta"] = local.theta
        hp.extra["head_dim"] = Double(try cfg.int("head_dim", default: hp.dModel / hp.nHead))
        if let w = try cfg.intIfPresent("sliding_window") { hp.extra["sliding_window"] = Double(w) }
        hp.extra["query_pre_attn_scalar"] = try cfg.double("query_pre_attn_scalar", default: Double(hp.headDim))
        if let types = cfg.json["layer_types"] as? [String] {
            guard types.count == hp.nLayer, let first = types.firstIndex(of: "full_attention") else {
                throw QuantError(cfg.file, "config.json layer_types must list \(hp.nLayer) layers with a full_attention one")
            }
            let period = first + 1
            for (l, t) in types.enumerated() where (t == "full_attention") != (l % period == period - 1) {
                throw QuantError(cfg.file, "config.json layer_types: layer \(l) is \(t), not every \(period)th layer global (not supported)")
            }
            hp.extra["sliding_window_pattern"] = Double(period)
        } else if let p = try cfg.intIfPresent("sliding_window_pattern") {
            hp.extra["sliding_window_pattern"] = Double(p)
        }
        return hp
    }

    package struct Config: ModelConfig {
        package let shape: ModelShape
        package var normEps: Float
        /// RoPE base of the global layers (gemma3.rope.freq_base) and of the local ones
        /// (gemma3.rope.freq_base_swa; llama.cpp's default 10,000 when absent).
        package var ropeTheta, ropeLocalTheta: Float
        /// Sliding window of the local layers; nil: every layer global.
        package var slidingWindow: Int?
        /// Every this-many-th layer is global (the last of each period).
        package var slidingWindowPattern: Int
        /// Scores are scaled by 1/√queryPreAttnScalar.
        package var queryPreAttnScalar: Float
        package var tiedEmbeddings: Bool

        enum CodingKeys: String, CodingKey {
            case normEps = "norm_eps", ropeTheta = "rope_theta"
            case ropeLocalTheta = "rope_local_theta", slidingWindow = "sliding_window"
            case slidingWindowPattern = "sliding_window_pattern", queryPreAttnScalar = "query_pre_attn_scalar"
            case finalLogitSoftcap = "final_logit_softcap", tiedEmbeddings = "tied_embeddings"
        }

        package init(from decoder: Decoder) throws {
            shape = try ModelShape(decoding: decoder)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            normEps = try c.decodeIfPresent(Float.self, forKey: .normEps) ?? 1e-6
            ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? 1_000_000
            ropeLocalTheta = try c.decodeIfPresent(Float.self, forKey: .ropeLocalTheta) ?? 10_000
            slidingWindow = try c.decodeIfPresent(Int.self, forKey: .slidingWindow).flatMap { $0 > 0 ? $0 : nil }
            slidingWindowPattern = try c.decodeIfPresent(Int.self, forKey: .slidingWindowPattern) ?? 6
            // llama.cpp (gemma3.cpp, after gemma_pytorch's config): 1/√head_dim, except the 27B
            // (62 layers) which uses 1/√(d / n_head); GGUF files do not store the scalar.
            queryPreAttnScalar = try c.decodeIfPresent(Float.self, forKey: .queryPreAttnScalar)
                ?? Float(shape.nLayer == 62 ? shape.dModel / shape.nHead : shape.headDim)
            tiedEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? true
            if let cap = try c.decodeIfPresent(Float.self, forKey: .finalLogitSoftcap), cap > 0 {
                throw DecodingError.dataCorruptedError(forKey: .finalLogitSoftcap, in: c,
                    debugDescription: "final logit soft-capping (\(cap)) is not supported")
            }
            guard shape.headDim % 2 == 0, slidingWindowPattern >= 1 else {
                throw DecodingError.dataCorruptedError(forKey: .slidingWindowPattern, in: c,
                    debugDescription: "head_dim \(shape.headDim) must be even and sliding_window_pattern \(slidingWindowPattern) ≥ 1")
            }
        }

        /// Whether layer l attends globally (llama.cpp's set_swa_pattern: local iff l % P < P - 1).
        package func isGlobal(_ l: Int) -> Bool {
            slidingWindow == nil || l % slidingWindowPattern == slidingWindowPattern - 1
        }
    }

    /// Local layers banded over the sliding window (a ring cache), global layers dense.
    package static func defaultAttention(_ config: Config) -> [AttentionPattern]? {
        guard let w = config.slidingWindow else { return nil }
        return (0 ..< config.nLayer).map { config.isGlobal($0) ? .dense : .banded(window: min(w, config.nCtx)) }
    }

    struct Layer {
        let attnNorm, qNorm, kNorm, postAttnNorm, ffnNorm, postFFNNorm: UnsafePointer<Float>
        let wq, wk, wv, wo, gate, up, down: Matrix
        let global: Bool
    }

    package let config: Config
    package let core: ModelCore
    let embed: EmbeddingTable
    let layers: [Layer]
    let norm: UnsafePointer<Float>
    let output: OutputMatrix
    /// Rotary frequencies of pair i (elements i and i + head_dim/2): θ^(-2i/head_dim), local and global θ.
    let localFreq, globalFreq: [Float]
    /// Re-indexing attention per base (the same object when positions are absolute).
    let localAttention, globalAttention: Attention
    /// cos / sin of every pair at the batch's positions, local then global: [maxBatch, 4 × head_dim/2].
    private let rot: UnsafeMutablePointer<Float>
    let embedScale: Float

    package init(config: Config, context ctx: ModelContext) throws {
        let weights = ctx.weights, sh = config.shape, N = Self.tensorNames
        self.config = config
        let d = sh.dModel, q = sh.qDim, kv = sh.kvDim, f = sh.dFF, hd = sh.headDim
        embed = try weights.embeddingTable(N(.tokenEmbedding), rows: sh.vocabSize, cols: d)
        layers = try (0 ..< sh.nLayer).map { i in
            Layer(
                attnNorm: try weights.vector(N(.attnNorm, layer: i), count: d),
                qNorm: try weights.vector(N(.attnQNorm, layer: i), count: hd),
                kNorm: try weights.vector(N(.attnKNorm, layer: i), count: hd),
                postAttnNorm: try weights.vector(N(.postAttnNorm, layer: i), count: d),
                ffnNorm: try weights.vector(N(.ffnNorm, layer: i), count: d),
                postFFNNorm: try weights.vector(N(.postFFNNorm, layer: i), count: d),
                wq: try weights.matrix(N(.attnQ, layer: i), rows: q, cols: d),
                wk: try weights.matrix(N(.attnK, layer: i), rows: kv, cols: d),
                wv: try weights.matrix(N(.attnV, layer: i), rows: kv, cols: d),
                wo: try weights.matrix(N(.attnOutput, layer: i), rows: d, cols: q),
                gate: try weights.matrix(N(.ffnGate, layer: i), rows: f, cols: d),
                up: try weights.matrix(N(.ffnUp, layer: i), rows: f, cols: d),
                down: try weights.matrix(N(.ffnDown, layer: i), rows: d, cols: f),
                global: config.isGlobal(i))
        }
        norm = try weights.vector(N(.outputNorm), count: d)
        output = try weights.outputMatrix(N.output(tied: config.tiedEmbeddings), rows: sh.vocabSize, cols: d, shared: embed)
        func freqs(_ theta: Float) -> [Float] { (0 ..< hd / 2).map { i in 1 / powf(theta, Float(2 * i) / Float(hd)) } }
        localFreq = freqs(config.ropeLocalTheta)
        globalFreq = freqs(config.ropeTheta)
        let scale = 1 / config.queryPreAttnScalar.squareRoot()
        let reindex = ctx.positions == .cache
        globalAttention = Attention(sh, scale: scale, reindexRotary: reindex ? globalFreq : nil, rotaryPairs: .halves, compute: ctx.compute)
        localAttention = reindex
            ? Attention(sh, scale: scale, reindexRotary: localFreq, rotaryPairs: .halves, compute: ctx.compute) : globalAttention
        core = try ModelCore(sh, context: ctx, encoding: Self.positionEncoding, eps: config.normEps, attention: globalAttention)
        rot = .allocate(capacity: ctx.maxBatch * 2 * hd)
        embedScale = Float(d).squareRoot()
    }

    deinit { rot.deallocate() }

    package var matrices: [Matrix] { layers.flatMap { [$0.wq, $0.wk, $0.wv, $0.wo, $0.gate, $0.up, $0.down] } + output.matrices }

    /// Rotates pairs (i, i + head_dim/2) of each of `heads` heads at v by the angles whose
    /// cosines and sines are `cs` (head_dim/2 each).
    @inline(__always)
    func rope(_ v: UnsafeMutablePointer<Float>, heads: Int, cs: UnsafePointer<Float>) {
        let half = config.headDim / 2, sn = cs + half
        for h in 0 ..< heads {
            let x = v + h * config.headDim
            for i in 0 ..< half {
                let a = x[i], b = x[i + half]
                x[i] = a * cs[i] - b * sn[i]
                x[i + half] = a * sn[i] + b * cs[i]
            }
        }
    }

    package func forward(_ tokens: UnsafeBufferPointer<Int32>, rows: Rows, logitRows: Range<Int>,
                 onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        let T = tokens.count, sh = config.shape, d = sh.dModel, qd = sh.qDim, kv = sh.kvDim, hd = sh.headDim
        let half = hd / 2, eps = config.normEps
        let b = blocks, s = blocks.state, c = compute
        let q = s.qkv, k = s.qkv + T * qd, v = s.qkv + T * (qd + kv)   // [T, qDim], [T, kvDim], [T, kvDim]
        try b.embed(embed, tokens, into: s.x)
        for i in 0 ..< T * d { s.x[i] *= embedScale }
        // cos / sin per position, once for all layers: row t = [cos_local, sin_local, cos_global, sin_global].
        for t in 0 ..< T {
            let r = rot + t * 2 * hd, pos = Float(rows.pos(t))
            for i in 0 ..< half {
                let al = pos * localFreq[i], ag = pos * globalFreq[i]
                r[i] = cosf(al); r[half + i] = sinf(al); r[hd + i] = cosf(ag); r[hd + half + i] = sinf(ag)
            }
        }
        for (l, L) in layers.enumerated() {
            try weights.acquire(layer: l)      // streamed layers: wait until L's matrices are in their buffer
            defer { weights.release(layer: l) }
            // Attention sub-layer.
            b.qkv(.rms(L.attnNorm), L.wq, L.wk, L.wv, T: T, q: q, k: k, v: v)
            for t in 0 ..< T {
                for h in 0 ..< sh.nHead { let p = q + t * qd + h * hd; qlm_rmsnorm(p, p, L.qNorm, Int64(hd), eps) }
                for h in 0 ..< sh.nKVHead { let p = k + t * kv + h * hd; qlm_rmsnorm(p, p, L.kNorm, Int64(hd), eps) }
                let cs = rot + t * 2 * hd + (L.global ? hd : 0)
                rope(q + t * qd, heads: sh.nHead, cs: cs)
                rope(k + t * kv, heads: sh.nKVHead, cs: cs)
            }
            b.attend(layer: l, rows: rows, T: T, q: q, qStride: qd, k: k, kStride: kv, v: v, vStride: kv, out: s.att,
                     with: L.global ? globalAttention : localAttention)
            c.linear(L.wo, s.att, T: T, out: s.proj)
            b.norm(.rms(L.postAttnNorm), rows: 0 ..< T, from: s.proj, into: s.proj)
            b.residual(T)
            // GeGLU MLP sub-layer: down(gelu_tanh(gate x) * up x), normed before the residual add.
            b.gatedMLP(.rms(L.ffnNorm), gate: L.gate, up: L.up, down: L.down, activation: .geluTanh,
                       post: .rms(L.postFFNNorm), T: T)
        }
        b.norm(.rms(norm), rows: logitRows, from: s.x, into: s.xb)
        try b.logits(output, rows: logitRows, onLogits: onLogits)
    }
}

extension TensorRole {
    /// Gemma's per-head query and key norms and its norms after attention and after the MLP.
    package static let attnQNorm: TensorRole = "attn_q_norm"
    package static let attnKNorm: TensorRole = "attn_k_norm"
    package static let postAttnNorm: TensorRole = "post_attention_norm"
    package static let postFFNNorm: TensorRole = "post_ffw_norm"
}
