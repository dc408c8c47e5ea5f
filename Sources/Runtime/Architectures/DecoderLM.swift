import CKernels
import Foundation
import Quant

/// What differs between the Llama-like decoders (Qwen 2/3, Mistral, Phi-3, Gemma 2, OLMo 2):
/// each model file states its recipe, `DecoderLM` runs it. Everything a recipe leaves at its
/// default is Llama's choice.
package struct DecoderRecipe: Sendable {
    /// Per-head RMSNorm of q and k (Qwen 3, weights [head_dim]) or over the whole q / k row
    /// (OLMo 2, weights [n_head × head_dim] / [n_kv_head × head_dim]), before the rotation.
    package enum QKNorm: Sendable { case none, perHead, whole }
    /// Where the RMSNorms sit: before each sub-layer (Llama), before and after (Gemma 2: the
    /// sub-layer's output is normed before the residual add), or only after (OLMo 2).
    package enum Norms: Sendable { case pre, prePost, post }
    package enum Activation: Sendable { case silu, geluTanh }

    package var qkvBias = false
    package var qkNorm = QKNorm.none
    /// q, k, v as one [q + 2 kv, d] matrix (Phi-3's qkv_proj, llama.cpp's attn_qkv).
    package var fusedQKV = false
    /// gate and up as one [2 d_ff, d] matrix, gate first (Phi-3's gate_up_proj, llama.cpp's ffn_up).
    package var fusedGateUp = false
    package var norms = Norms.pre
    package var activation = Activation.silu
    /// Adjacent pairs (llama.cpp's "normal" rope: Llama and Mistral, whose q / k rows the
    /// converters reorder) or halves (NeoX order: Qwen, Phi-3, Gemma, OLMo as stored).
    package var rotaryPairs = Attention.RotaryPairs.adjacent
    /// Token embeddings times √d_model (Gemma).
    package var embedScaled = false
    /// With a sliding window, every this-many-th layer is global when the hparams store no
    /// sliding_window_pattern (Gemma 2: 2, llama.cpp's set_swa_pattern(2); nil: every layer slides).
    package var windowPeriod: Int? = nil

    package init(_ build: (inout DecoderRecipe) -> Void = { _ in }) { build(&self) }
}

/// The hyper-parameters every Llama-like decoder reads from its `hparams`: the shared shape
/// keys, and norm_eps, rope_theta, tied_embeddings, sliding_window (+ sliding_window_pattern P:
/// layer l is global iff l % P == P - 1; absent: every layer slides), query_pre_attn_scalar,
/// attn_softcap / final_softcap and the llama3 rope scaling (rope_llama3_factor,
/// rope_llama3_low_freq_factor, rope_llama3_high_freq_factor, rope_llama3_original_context).
package struct DecoderConfig: ModelConfig {
    package let shape: ModelShape
    package var normEps: Float
    package var ropeTheta: Float
    package var tiedEmbeddings: Bool
    package var slidingWindow: Int?
    package var slidingWindowPattern: Int?
    /// Scores are scaled by 1/√queryPreAttnScalar (default head_dim).
    package var queryPreAttnScalar: Float
    package var attnSoftcap: Float?
    package var finalSoftcap: Float?
    package var llama3: RopeScaling.Llama3?

    enum CodingKeys: String, CodingKey {
        case normEps = "norm_eps", ropeTheta = "rope_theta", tiedEmbeddings = "tied_embeddings"
        case slidingWindow = "sliding_window", slidingWindowPattern = "sliding_window_pattern"
        case queryPreAttnScalar = "query_pre_attn_scalar", attnSoftcap = "attn_softcap", finalSoftcap = "final_softcap"
    }

    package init(from decoder: Decoder) throws {
        shape = try ModelShape(decoding: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        normEps = try c.decodeIfPresent(Float.self, forKey: .normEps) ?? 1e-6
        ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? 10000
        tiedEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? false
        slidingWindow = try c.decodeIfPresent(Int.self, forKey: .slidingWindow).flatMap { $0 > 0 ? $0 : nil }
        slidingWindowPattern = try c.decodeIfPresent(Int.self, forKey: .slidingWindowPattern).flatMap { $0 > 0 ? $0 : nil }
        queryPreAttnScalar = try c.decodeIfPresent(Float.self, forKey: .queryPreAttnScalar) ?? Float(shape.headDim)
        attnSoftcap = try c.decodeIfPresent(Float.self, forKey: .attnSoftcap).flatMap { $0 > 0 ? $0 : nil }
        finalSoftcap = try c.decodeIfPresent(Float.self, forKey: .finalSoftcap).flatMap { $0 > 0 ? $0 : nil }
        llama3 = try RopeScaling.Llama3.decode(decoder)
        guard shape.headDim % 2 == 0, queryPreAttnScalar > 0 else {
            throw DecodingError.dataCorruptedError(forKey: .queryPreAttnScalar, in: c,
                debugDescription: "head_dim \(shape.headDim) must be even and query_pre_attn_scalar \(queryPreAttnScalar) positive")
        }
    }

    /// Whether layer l attends to every earlier position (no window, or the last layer of
    /// each period: the stored sliding_window_pattern, else the recipe's).
    package func isGlobal(_ l: Int, _ recipe: DecoderRecipe) -> Bool {
        guard slidingWindow != nil else { return true }
        guard let p = slidingWindowPattern ?? recipe.windowPeriod else { return false }
        return l % p == p - 1
    }

    /// Sliding layers banded over the window (a ring cache), global ones dense; nil without a window.
    package func attentionPattern(_ recipe: DecoderRecipe) -> [AttentionPattern]? {
        guard let w = slidingWindow else { return nil }
        return (0 ..< shape.nLayer).map { isGlobal($0, recipe) ? .dense : .banded(window: min(w, shape.nCtx)) }
    }
}

/// Rotary frequency scalings.
package enum RopeScaling {
    /// Llama 3.1's: wavelengths below original / high are kept, above original / low divided by
    /// `factor`, in between interpolated (transformers' `_compute_llama3_parameters`, llama.cpp's
    /// rope_freqs factors).
    package struct Llama3: Sendable, Equatable {
        package var factor, lowFreqFactor, highFreqFactor, originalContext: Double

        enum Keys: String, CodingKey {
            case factor = "rope_llama3_factor", low = "rope_llama3_low_freq_factor", high = "rope_llama3_high_freq_factor"
            case original = "rope_llama3_original_context"
        }

        /// From an hparams object: present iff rope_llama3_factor is.
        static func decode(_ decoder: Decoder) throws -> Llama3? {
            let c = try decoder.container(keyedBy: Keys.self)
            guard let f = try c.decodeIfPresent(Double.self, forKey: .factor) else { return nil }
            return Llama3(factor: f, lowFreqFactor: try c.decodeIfPresent(Double.self, forKey: .low) ?? 1,
                          highFreqFactor: try c.decodeIfPresent(Double.self, forKey: .high) ?? 4,
                          originalContext: try c.decodeIfPresent(Double.self, forKey: .original) ?? 8192)
        }

        /// The divisor of each rotary frequency.
        package func divisors(_ freq: [Float]) -> [Float] {
            let lowWavelen = originalContext / lowFreqFactor, highWavelen = originalContext / highFreqFactor
            return freq.map { f in
                let wavelen = 2 * Double.pi / Double(f)
                if wavelen < highWavelen { return 1 }
                if wavelen > lowWavelen { return Float(factor) }
                let smooth = (originalContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
                return Float(1 / ((1 - smooth) / factor + smooth))
            }
        }
    }

    /// `freq` divided by the file's rope_freqs tensor when it has one (llama.cpp's converter
    /// stores Llama 3's divisors so; its GGUF keeps no parameters), else by the config's llama3
    /// divisors (the same f32 numbers: both are the double formula rounded once).
    static func scaled(_ freq: [Float], llama3: Llama3?, tensor: String?, weights: WeightStore) throws -> [Float] {
        if let tensor, weights.file.has(tensor) {
            let div = try weights.vector(tensor, count: freq.count)
            return (0 ..< freq.count).map { freq[$0] / div[$0] }
        }
        guard let llama3 else { return freq }
        return zip(freq, llama3.divisors(freq)).map { $0 / $1 }
    }

    /// θ^(-2i/d) for the d/2 pairs of a head of d.
    package static func frequencies(theta: Float, headDim hd: Int) -> [Float] {
        (0 ..< hd / 2).map { i in 1 / powf(theta, Float(2 * i) / Float(hd)) }
    }
}

/// A Llama-like decoder run by its recipe: embed → [norm → q, k, v (+ biases) → q/k norm →
/// rotary → store + attend (window per layer, soft-capped scores) → out product (→ norm) →
/// residual → norm → gated MLP (→ norm) → residual] × n_layer → norm → classifier (→ soft cap).
/// Tensors carry llama.cpp's GGUF names (`DecoderLM.ggufTensorNames`); a model file subclasses this
/// with its name, recipe and checkpoint mappings.
package class DecoderLM: LanguageModel {
    /// GGUF's own names (the tensor roles), so a .qlm reads like the GGUF it came from.
    package static let ggufTensorNames = TensorNames(
        layerPrefix: "blk.",
        global: [.tokenEmbedding: "token_embd", .outputNorm: "output_norm", .output: "output", .ropeFreqs: "rope_freqs"],
        perLayer: [.attnNorm: "attn_norm", .attnQ: "attn_q", .attnK: "attn_k", .attnV: "attn_v", .attnQKV: "attn_qkv",
                   .attnQNorm: "attn_q_norm", .attnKNorm: "attn_k_norm", .attnOutput: "attn_output",
                   .postAttnNorm: "post_attention_norm", .ffnNorm: "ffn_norm", .ffnGate: "ffn_gate",
                   .ffnUp: "ffn_up", .ffnDown: "ffn_down", .postFFNNorm: "post_ffw_norm"])

    /// transformers' names of a Llama-like decoder's per-layer tensors (Llama's
    /// post_attention_layernorm is the norm before the MLP; Gemma 2 and OLMo 2 rename theirs).
    package static let hfLayerNames: [TensorRole: String] = [
        .attnNorm: "input_layernorm", .attnQ: "self_attn.q_proj", .attnK: "self_attn.k_proj", .attnV: "self_attn.v_proj",
        .attnQNorm: "self_attn.q_norm", .attnKNorm: "self_attn.k_norm", .attnOutput: "self_attn.o_proj",
        .ffnNorm: "post_attention_layernorm", .ffnGate: "mlp.gate_proj", .ffnUp: "mlp.up_proj", .ffnDown: "mlp.down_proj"]

    /// A recipe's checkpoint mappings: its tensors, its GGUF architecture (nil: none) and its
    /// Hugging Face model_type, config.json mapping and tensor names (`hfLayerNames` with
    /// `rename` over them).
    package static func formats(_ name: String, _ recipe: DecoderRecipe, gguf: GGUFMapping?, hfTypes: [String],
                                hparams: @escaping @Sendable (HFConfig) throws -> HParams, rename: [TensorRole: String] = [:],
                                adjust: @escaping @Sendable (TensorKey, HParams) -> SourceAdjust = { _, _ in .none }) -> ArchitectureFormats {
        ArchitectureFormats(name: name, tensors: { recipe.tensors($0) }, gguf: gguf,
                            hf: HFMapping(modelTypes: hfTypes, hparams: hparams,
                                          name: HFMapping.decoderNames(hfLayerNames.merging(rename) { $1 }), adjust: adjust))
    }

    struct Layer {
        let attnNorm, postAttnNorm, ffnNorm, postFFNNorm: UnsafePointer<Float>?
        let qNorm, kNorm: UnsafePointer<Float>?
        let qBias, kBias, vBias: UnsafePointer<Float>?
        let wq, wk, wv, wo, gate, up, down: Matrix
    }

    package let config: DecoderConfig
    package let recipe: DecoderRecipe
    package let core: ModelCore
    package var shape: ModelShape { config.shape }
    package var compute: Compute { core.compute }
    package var cache: KVCache { core.cache }
    package var maxBatch: Int { core.maxBatch }
    package var positionMode: PositionMode { core.positionMode }
    package var positionLimit: Int { positionMode == .cache ? cache.capacity : min(config.nCtx, cache.capacity) }
    var weights: WeightStore { core.weights }
    var blocks: Blocks { core.blocks }
    let embed: EmbeddingTable
    let layers: [Layer]
    let norm: UnsafePointer<Float>
    let output: OutputMatrix
    /// Rotary frequency of each pair (llama3-scaled when the config says so).
    let ropeFreq: [Float]
    /// cos and sin of every pair at the batch's positions: [maxBatch, head_dim] (cos then sin per row).
    private let rot: UnsafeMutablePointer<Float>
    let embedScale: Float

    package init(config: DecoderConfig, recipe r: DecoderRecipe, names N: TensorNames, context ctx: ModelContext) throws {
        let weights = ctx.weights, sh = config.shape
        self.config = config
        recipe = r
        let d = sh.dModel, q = sh.qDim, kv = sh.kvDim, f = sh.dFF, hd = sh.headDim
        embed = try weights.embeddingTable(N(.tokenEmbedding), rows: sh.vocabSize, cols: d)
        func vec(_ role: TensorRole, _ l: Int, _ n: Int, bias: Bool = false) throws -> UnsafePointer<Float> {
            try weights.vector(N(role, layer: l, bias: bias), count: n)
        }
        let (qn, kn) = r.qkNorm == .perHead ? (hd, hd) : (q, kv)
        layers = try (0 ..< sh.nLayer).map { i in
            var wq, wk, wv, gate, up: Matrix
            if r.fusedQKV {
                let m = try weights.matrix(N(.attnQKV, layer: i), rows: q + 2 * kv, cols: d)
                (wq, wk, wv) = (try m.rows(0 ..< q), try m.rows(q ..< q + kv), try m.rows(q + kv ..< q + 2 * kv))
            } else {
                wq = try weights.matrix(N(.attnQ, layer: i), rows: q, cols: d)
                wk = try weights.matrix(N(.attnK, layer: i), rows: kv, cols: d)
                wv = try weights.matrix(N(.attnV, layer: i), rows: kv, cols: d)
            }
            if r.fusedGateUp {
                let m = try weights.matrix(N(.ffnUp, layer: i), rows: 2 * f, cols: d)
                (gate, up) = (try m.rows(0 ..< f), try m.rows(f ..< 2 * f))
            } else {
                gate = try weights.matrix(N(.ffnGate, layer: i), rows: f, cols: d)
                up = try weights.matrix(N(.ffnUp, layer: i), rows: f, cols: d)
            }
            return Layer(
                attnNorm: r.norms == .post ? nil : try vec(.attnNorm, i, d),
                postAttnNorm: r.norms == .pre ? nil : try vec(.postAttnNorm, i, d),
                ffnNorm: r.norms == .post ? nil : try vec(.ffnNorm, i, d),
                postFFNNorm: r.norms == .pre ? nil : try vec(.postFFNNorm, i, d),
                qNorm: r.qkNorm == .none ? nil : try vec(.attnQNorm, i, qn),
                kNorm: r.qkNorm == .none ? nil : try vec(.attnKNorm, i, kn),
                qBias: r.qkvBias ? try vec(.attnQ, i, q, bias: true) : nil,
                kBias: r.qkvBias ? try vec(.attnK, i, kv, bias: true) : nil,
                vBias: r.qkvBias ? try vec(.attnV, i, kv, bias: true) : nil,
                wq: wq, wk: wk, wv: wv, wo: try weights.matrix(N(.attnOutput, layer: i), rows: d, cols: q),
                gate: gate, up: up, down: try weights.matrix(N(.ffnDown, layer: i), rows: d, cols: f))
        }
        norm = try weights.vector(N(.outputNorm), count: d)
        output = try weights.outputMatrix(N.output(tied: config.tiedEmbeddings), rows: sh.vocabSize, cols: d, shared: embed)
        let freq = try RopeScaling.scaled(RopeScaling.frequencies(theta: config.ropeTheta, headDim: hd), llama3: config.llama3,
                                          tensor: N.name(TensorKey(.ropeFreqs)), weights: weights)
        ropeFreq = freq
        let attention = Attention(sh, scale: 1 / config.queryPreAttnScalar.squareRoot(), softcap: config.attnSoftcap,
                                  reindexRotary: ctx.positions == .cache ? freq : nil, rotaryPairs: r.rotaryPairs, compute: ctx.compute)
        core = try ModelCore(sh, context: ctx, encoding: .rotary, eps: config.normEps, attention: attention)
        rot = .allocate(capacity: max(1, ctx.maxBatch) * hd)
        embedScale = r.embedScaled ? Float(d).squareRoot() : 1
    }

    deinit { rot.deallocate() }

    package var matrices: [Matrix] { layers.flatMap { [$0.wq, $0.wk, $0.wv, $0.wo, $0.gate, $0.up, $0.down] } + output.matrices }

    /// Rotates every head of `v` (`heads` heads) by the angles of `cs` (cos of each pair, then sin).
    @inline(__always)
    private func rope(_ v: UnsafeMutablePointer<Float>, heads: Int, cs: UnsafePointer<Float>) {
        let hd = config.headDim, half = hd / 2, sn = cs + half
        let adjacent = recipe.rotaryPairs == .adjacent
        for h in 0 ..< heads {
            let x = v + h * hd
            for i in 0 ..< half {
                let (ia, ib) = adjacent ? (2 * i, 2 * i + 1) : (i, i + half)
                let a = x[ia], b = x[ib]
                x[ia] = a * cs[i] - b * sn[i]
                x[ib] = a * sn[i] + b * cs[i]
            }
        }
    }

    package func forward(_ tokens: UnsafeBufferPointer<Int32>, rows: Rows, logitRows: Range<Int>,
                         onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        let T = tokens.count, sh = config.shape, d = sh.dModel, qd = sh.qDim, kv = sh.kvDim, hd = sh.headDim
        let half = hd / 2, eps = config.normEps, r = recipe
        let b = blocks, s = blocks.state, c = compute
        let w = qd + 2 * kv   // one row of q, k, v side by side
        let q = s.qkv, k = s.qkv + qd, v = s.qkv + qd + kv
        try b.embed(embed, tokens, into: s.x)
        if embedScale != 1 { for i in 0 ..< T * d { s.x[i] *= embedScale } }
        for t in 0 ..< T {
            let cs = rot + t * hd, pos = Float(rows.pos(t))
            for i in 0 ..< half { let a = pos * ropeFreq[i]; cs[i] = cosf(a); cs[half + i] = sinf(a) }
        }
        for (l, L) in layers.enumerated() {
            try weights.acquire(layer: l)      // streamed layers: wait until L's matrices are in their buffer
            defer { weights.release(layer: l) }
            // Attention sub-layer.
            b.qkv(L.attnNorm.map { .rms($0) }, L.wq, L.wk, L.wv, T: T, q: q, k: k, v: v, ldOut: w,
                  biases: (L.qBias, L.kBias, L.vBias))
            for t in 0 ..< T {
                let qt = q + t * w, kt = k + t * w
                switch r.qkNorm {
                case .none: break
                case .perHead:
                    for h in 0 ..< sh.nHead { qlm_rmsnorm(qt + h * hd, qt + h * hd, L.qNorm!, Int64(hd), eps) }
                    for h in 0 ..< sh.nKVHead { qlm_rmsnorm(kt + h * hd, kt + h * hd, L.kNorm!, Int64(hd), eps) }
                case .whole:
                    qlm_rmsnorm(qt, qt, L.qNorm!, Int64(qd), eps)
                    qlm_rmsnorm(kt, kt, L.kNorm!, Int64(kv), eps)
                }
                rope(qt, heads: sh.nHead, cs: rot + t * hd)
                rope(kt, heads: sh.nKVHead, cs: rot + t * hd)
            }
            b.attend(layer: l, rows: rows, T: T, q: q, qStride: w, k: k, kStride: w, v: v, vStride: w, out: s.att)
            c.linear(L.wo, s.att, T: T, out: s.proj)
            if let n = L.postAttnNorm { b.norm(.rms(n), rows: 0 ..< T, from: s.proj, into: s.proj) }
            b.residual(T)
            // Gated MLP sub-layer: down(act(gate x) * up x).
            b.gatedMLP(L.ffnNorm.map { .rms($0) }, gate: L.gate, up: L.up, down: L.down, activation: r.activation,
                       post: L.postFFNNorm.map { .rms($0) }, T: T)
        }
        b.norm(.rms(norm), rows: logitRows, from: s.x, into: s.xb)
        guard let cap = config.finalSoftcap else { return try b.logits(output, rows: logitRows, onLogits: onLogits) }
        try b.logits(output, rows: logitRows) { t, logits in
            // Gemma 2: cap · tanh(logit / cap) (the buffer is the model's own scratch).
            let m = UnsafeMutablePointer(mutating: logits.baseAddress!)
            for i in 0 ..< logits.count { m[i] = cap * tanhf(m[i] / cap) }
            onLogits(t, logits)
        }
    }
}

extension Matrix {
    /// Rows `range` of a matrix (a fused tensor's part), in place; a row-grouped type splits
    /// only at its group boundaries.
    func rows(_ range: Range<Int>) throws -> Matrix {
        let g = max(1, type.rowGroup)
        guard range.lowerBound % g == 0, range.count % g == 0, range.upperBound <= rows else {
            throw ModelError("tensor \(name): rows \(range) are not a part of its \(rows) rows in groups of \(g) (\(type))")
        }
        return Matrix(name: name, type: type, rows: range.count, cols: cols, data: data + range.lowerBound * rowBytes)
    }
}

extension TensorRole {
    /// llama.cpp's llama3 rotary divisors (one per pair), and a fused q/k/v matrix.
    package static let ropeFreqs: TensorRole = "rope_freqs"
}
extension DecoderRecipe {
    /// Every tensor a decoder of this recipe reads (GGUF roles; llama.cpp's file order): the
    /// embedding, per block its norms, q/k/v (fused or not, biases), q/k norms, out, MLP, the
    /// final norm and the classifier unless tied.
    package func tensors(_ hp: HParams) -> [TensorSpec] {
        let d = hp.dModel, q = hp.qDim, kv = hp.kvDim, f = hp.dFF, hd = hp.headDim
        var l = [TensorSpec(.tokenEmbedding, [hp.vocabSize, d])]
        for i in 0 ..< hp.nLayer {
            func add(_ r: TensorRole, _ s: [Int], bias: Bool = false) { l.append(TensorSpec(r, layer: i, bias: bias, s)) }
            if norms != .post { add(.attnNorm, [d]) }
            if fusedQKV { add(.attnQKV, [q + 2 * kv, d]) } else { add(.attnQ, [q, d]); add(.attnK, [kv, d]); add(.attnV, [kv, d]) }
            if qkvBias { add(.attnQ, [q], bias: true); add(.attnK, [kv], bias: true); add(.attnV, [kv], bias: true) }
            switch qkNorm {
            case .none: break
            case .perHead: add(.attnQNorm, [hd]); add(.attnKNorm, [hd])
            case .whole: add(.attnQNorm, [q]); add(.attnKNorm, [kv])
            }
            add(.attnOutput, [d, q])
            if norms != .pre { add(.postAttnNorm, [d]) }
            if norms != .post { add(.ffnNorm, [d]) }
            if fusedGateUp { add(.ffnUp, [2 * f, d]) } else { add(.ffnGate, [f, d]); add(.ffnUp, [f, d]) }
            add(.ffnDown, [d, f])
            if norms != .pre { add(.postFFNNorm, [d]) }
        }
        l.append(TensorSpec(.outputNorm, [d]))
        if !hp.tiedEmbeddings { l.append(TensorSpec(.output, [hp.vocabSize, d])) }
        return l
    }
}
