import CKernels
import Foundation
import Quant

/// Llama as llama2.c runs it: RMSNorm, rotary position embeddings on adjacent pairs,
/// grouped-query attention, a SwiGLU MLP, and a classifier shared with the embedding
/// unless the checkpoint has its own.
package final class Llama: Architecture {
    package static let name = "llama"
    package static let positionEncoding = PositionEncoding.rotary
    package static let tensorNames = TensorNames(
        layerPrefix: "layers.",
        global: [.tokenEmbedding: "tok_embeddings", .outputNorm: "norm", .output: "output", .ropeFreqs: "rope_freqs"],
        perLayer: [.attnNorm: "attention_norm", .attnQ: "attention.wq", .attnK: "attention.wk", .attnV: "attention.wv",
                   .attnOutput: "attention.wo", .ffnNorm: "ffn_norm", .ffnGate: "feed_forward.w1",
                   .ffnDown: "feed_forward.w2", .ffnUp: "feed_forward.w3"])

    /// llama2.c's and llama.cpp's tensors: token_embd, per block the norms, q/k/v/o and the
    /// SwiGLU matrices, output_norm, and the classifier unless tied.
    package static let formats = ArchitectureFormats(name: name, tensors: { hp in
        let d = hp.dModel, q = hp.qDim, kv = hp.kvDim, f = hp.dFF
        let perLayer: [(TensorRole, [Int])] = [(.attnNorm, [d]), (.attnQ, [q, d]), (.attnK, [kv, d]), (.attnV, [kv, d]),
                                               (.attnOutput, [d, q]), (.ffnNorm, [d]), (.ffnGate, [f, d]), (.ffnDown, [d, f]), (.ffnUp, [f, d])]
        return TensorSpec.decoder(hp, perLayer: perLayer)
    }, gguf: GGUFMapping(architecture: "llama", extraKeys: [("attention.key_length", "head_dim")],
                         optionalTensors: { hp in [TensorSpec(.ropeFreqs, [hp.headDim / 2])] }),
       hf: HFMapping(modelTypes: ["llama"], hparams: { cfg in
        try cfg.require(activation: ["silu"], ropeTypes: ["default", "llama3"])
        var hp = try cfg.decoderHParams()
        let rope = try cfg.rope(defaultTheta: 10000)
        if rope.type == "llama3" {
            // Llama 3.1's frequency scaling (the Config turns these into per-pair divisors).
            for (k, hk, def) in [("factor", "rope_llama3_factor", 8.0), ("low_freq_factor", "rope_llama3_low_freq_factor", 1.0),
                                 ("high_freq_factor", "rope_llama3_high_freq_factor", 4.0),
                                 ("original_max_position_embeddings", "rope_llama3_original_context", 8192.0)] {
                let v: Any = rope.params[k] ?? cfg.json[k] ?? def
                guard let n = (v as? NSNumber)?.doubleValue, n > 0, n.isFinite else {
                    throw QuantError(cfg.file, "config.json rope scaling \(k) must be a positive number")
                }
                hp.extra[hk] = n
            }
        }
        return hp
    }, name: HFMapping.decoderNames([
        .attnNorm: "input_layernorm", .attnQ: "self_attn.q_proj", .attnK: "self_attn.k_proj", .attnV: "self_attn.v_proj",
        .attnOutput: "self_attn.o_proj", .ffnNorm: "post_attention_layernorm", .ffnGate: "mlp.gate_proj",
        .ffnDown: "mlp.down_proj", .ffnUp: "mlp.up_proj"]),
       // transformers rotates halves (i, i + d/2); this model rotates adjacent pairs, as llama.cpp's
       // converter leaves q and k: their rows are reordered the same way.
       adjust: { key, hp in key.role == .attnQ || key.role == .attnK ? .halvesToPairs(headDim: hp.headDim) : .none }))

    package struct Config: ModelConfig {
        /// head_dim d_model / n_head unless the metadata says otherwise.
        package let shape: ModelShape
        package var normEps: Float
        /// Rotary base θ (llama2.c: 10000).
        package var ropeTheta: Float
        package var tiedEmbeddings: Bool
        /// Llama 3.1's rotary scaling (nil: plain θ^(-2i/d)).
        package var llama3: RopeScaling.Llama3?

        enum CodingKeys: String, CodingKey {
            case normEps = "norm_eps", ropeTheta = "rope_theta", tiedEmbeddings = "tied_embeddings"
        }

        package init(from decoder: Decoder) throws {
            shape = try ModelShape(decoding: decoder)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            normEps = try c.decodeIfPresent(Float.self, forKey: .normEps) ?? 1e-5
            ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? 10000
            tiedEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? true
            llama3 = try RopeScaling.Llama3.decode(decoder)
        }
    }

    struct Layer {
        let attnNorm: UnsafePointer<Float>
        let wq, wk, wv, wo: Matrix
        let ffnNorm: UnsafePointer<Float>
        let w1, w2, w3: Matrix
    }

    package let config: Config
    package let core: ModelCore
    let embed: EmbeddingTable
    let layers: [Layer]
    let norm: UnsafePointer<Float>
    let output: OutputMatrix
    /// Rotary frequencies per pair: theta^(-(2i mod headDim)/headDim), as run.c computes them.
    let ropeFreq: [Float]
    /// cos and sin of pos · freq[i] for the positions of the forward call in flight (maxBatch ×
    /// headDim floats: cos, sin per pair): found once per position, shared by every head and layer.
    let ropeCS: UnsafeMutablePointer<Float>

    package init(config: Config, context ctx: ModelContext) throws {
        let weights = ctx.weights, sh = config.shape, N = Self.tensorNames
        self.config = config
        let d = sh.dModel, q = sh.qDim, kv = sh.kvDim, f = sh.dFF
        embed = try weights.embeddingTable(N(.tokenEmbedding), rows: sh.vocabSize, cols: d)
        layers = try (0 ..< sh.nLayer).map { i in
            Layer(
                attnNorm: try weights.vector(N(.attnNorm, layer: i), count: d),
                wq: try weights.matrix(N(.attnQ, layer: i), rows: q, cols: d),
                wk: try weights.matrix(N(.attnK, layer: i), rows: kv, cols: d),
                wv: try weights.matrix(N(.attnV, layer: i), rows: kv, cols: d),
                wo: try weights.matrix(N(.attnOutput, layer: i), rows: d, cols: q),
                ffnNorm: try weights.vector(N(.ffnNorm, layer: i), count: d),
                w1: try weights.matrix(N(.ffnGate, layer: i), rows: f, cols: d),
                w2: try weights.matrix(N(.ffnDown, layer: i), rows: d, cols: f),
                w3: try weights.matrix(N(.ffnUp, layer: i), rows: f, cols: d))
        }
        norm = try weights.vector(N(.outputNorm), count: d)
        output = try weights.outputMatrix(N.output(tied: config.tiedEmbeddings), rows: sh.vocabSize, cols: d, shared: embed)
        let hd = sh.headDim
        ropeFreq = try RopeScaling.scaled(RopeScaling.frequencies(theta: config.ropeTheta, headDim: hd), llama3: config.llama3,
                                          tensor: N.name(TensorKey(.ropeFreqs)), weights: weights)
        ropeCS = .allocate(capacity: max(1, ctx.maxBatch) * hd)
        core = try ModelCore(sh, context: ctx, encoding: Self.positionEncoding, eps: config.normEps, reindexRotary: ropeFreq)
    }

    package var matrices: [Matrix] { layers.flatMap { [$0.wq, $0.wk, $0.wv, $0.wo, $0.w1, $0.w2, $0.w3] } + output.matrices }

    deinit { ropeCS.deallocate() }

    /// ropeCS row t = cos, sin of rows.pos(t) · freq[i] for every pair i, t in 0 ..< T.
    func ropeAngles(_ rows: Rows, T: Int) {
        let hd = config.headDim
        ropeFreq.withUnsafeBufferPointer { freq in
            for t in 0 ..< T {
                let cs = ropeCS + t * hd
                for i in 0 ..< hd / 2 {
                    let angle = Float(rows.pos(t)) * freq[i]
                    cs[2 * i] = cosf(angle)
                    cs[2 * i + 1] = sinf(angle)
                }
            }
        }
    }

    /// Rotates adjacent pairs (2i, 2i+1) of every head of `v` (n floats) by the angles of ropeCS row t.
    @inline(__always)
    func rope(_ v: UnsafeMutablePointer<Float>, count n: Int, row t: Int) {
        let hd = config.headDim, cs = ropeCS + t * hd
        var h = 0
        while h < n {
            let vh = v + h
            var i = 0
            while i < hd {
                let c = cs[i], s = cs[i + 1]
                let a = vh[i], b = vh[i + 1]
                vh[i] = a * c - b * s
                vh[i + 1] = a * s + b * c
                i += 2
            }
            h += hd
        }
    }

    package func forward(_ tokens: UnsafeBufferPointer<Int32>, rows: Rows, logitRows: Range<Int>,
                 onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        let T = tokens.count, qd = config.shape.qDim, kv = config.shape.kvDim
        let b = blocks, s = blocks.state, c = compute
        let q = s.qkv, k = s.qkv + T * qd, v = s.qkv + T * (qd + kv)   // [T, qDim], [T, kvDim], [T, kvDim]
        try b.embed(embed, tokens, into: s.x)
        ropeAngles(rows, T: T)
        for (l, L) in layers.enumerated() {
            try weights.acquire(layer: l)      // streamed layers: wait until L's matrices are in their buffer
            defer { weights.release(layer: l) }
            // Attention sub-layer.
            b.qkv(.rms(L.attnNorm), L.wq, L.wk, L.wv, T: T, q: q, k: k, v: v)
            for t in 0 ..< T {
                rope(q + t * qd, count: qd, row: t)
                rope(k + t * kv, count: kv, row: t)
            }
            b.attend(layer: l, rows: rows, T: T, q: q, qStride: qd, k: k, kStride: kv, v: v, vStride: kv, out: s.att)
            c.linear(L.wo, s.att, T: T, out: s.proj)
            b.residual(T)
            // SwiGLU MLP sub-layer: w2(silu(w1 x) * w3 x).
            b.gatedMLP(.rms(L.ffnNorm), gate: L.w1, up: L.w3, down: L.w2, activation: .silu, T: T)
        }
        b.norm(.rms(norm), rows: logitRows, from: s.x, into: s.xb)
        try b.logits(output, rows: logitRows, onLogits: onLogits)
    }
}
