import CKernels
import Foundation
import Quant

/// GPT-Neo (the GPT-3 recipe): token + learned position embeddings; pre-LayerNorm blocks whose
/// attention alternates global (every earlier position) and local (the last `window_size`
/// positions, itself included: a ring KV cache), as config.json's attention_layers lists them;
/// q, k, v without biases and scores NOT scaled by 1/√head_dim (transformers' GPTNeoSelfAttention
/// multiplies q and k as they are); out projection and the GELU (tanh) MLP with biases; a final
/// LayerNorm; logits from the token embedding (tied).
package final class GPTNeo: Architecture {
    package static let name = "gpt_neo"
    package static let positionEncoding = PositionEncoding.learned
    package static let tensorNames = TensorNames(
        layerPrefix: "h.",
        global: [.tokenEmbedding: "wte", .positionEmbedding: "wpe", .outputNorm: "ln_f"],
        perLayer: [.attnNorm: "ln_1", .attnQ: "attn.q_proj", .attnK: "attn.k_proj", .attnV: "attn.v_proj",
                   .attnOutput: "attn.out_proj", .ffnNorm: "ln_2", .ffnUp: "mlp.c_fc", .ffnDown: "mlp.c_proj"])

    /// Its tensors (LayerNorms and the out / MLP products with biases; q, k, v without; the
    /// classifier is the embedding), and a Hugging Face GPT-Neo directory (nn.Linear: stored
    /// [out, in]; `transformer.` stripped; attention under attn.attention).
    package static let formats = ArchitectureFormats(name: name, tensors: { hp in
        let d = hp.dModel, f = hp.dFF
        var l = [TensorSpec(.tokenEmbedding, [hp.vocabSize, d]), TensorSpec(.positionEmbedding, [hp.nCtx, d])]
        for i in 0 ..< hp.nLayer {
            l += [TensorSpec(.attnNorm, layer: i, [d]), TensorSpec(.attnNorm, layer: i, bias: true, [d])]
            l += [TensorSpec(.attnQ, layer: i, [d, d]), TensorSpec(.attnK, layer: i, [d, d]), TensorSpec(.attnV, layer: i, [d, d])]
            for (role, shape) in [(TensorRole.attnOutput, [d, d]), (.ffnNorm, [d]), (.ffnUp, [f, d]), (.ffnDown, [d, f])] {
                l += [TensorSpec(role, layer: i, shape), TensorSpec(role, layer: i, bias: true, [shape[0]])]
            }
        }
        return l + [TensorSpec(.outputNorm, [d]), TensorSpec(.outputNorm, bias: true, [d])]
    }, hf: HFMapping(modelTypes: ["gpt_neo"], hparams: hfHParams, name: { key in
        tensorNames.base(key).map { $0.replacingOccurrences(of: ".attn.", with: ".attn.attention.") }
    }, stripPrefixes: ["transformer."]))

    /// GPTNeoConfig: attention_layers ("global" / "local" per layer) becomes local_layers_mask.
    @Sendable static func hfHParams(_ cfg: HFConfig) throws -> HParams {
        let d = try cfg.int("hidden_size"), nHead = try cfg.int("num_heads"), nLayer = try cfg.int("num_layers")
        if let act = try cfg.string("activation_function"), act != "gelu_new" {
            throw QuantError(cfg.file, "activation_function '\(act)' is not supported (GPT-Neo uses gelu_new)")
        }
        guard let types = cfg.json["attention_layers"] as? [String], types.count == nLayer,
              types.allSatisfy({ $0 == "global" || $0 == "local" }) else {
            throw QuantError(cfg.file, "config.json attention_layers must list \(nLayer) layers, each global or local")
        }
        let mask = types.enumerated().reduce(0) { $0 | ($1.element == "local" ? 1 << $1.offset : 0) }
        return HParams(nLayer: nLayer, nHead: nHead, nKVHead: nHead, dModel: d, dFF: try cfg.int("intermediate_size", default: 4 * d),
                       nCtx: try cfg.int("max_position_embeddings"), vocabSize: try cfg.int("vocab_size"),
                       normEps: Float(try cfg.double("layer_norm_epsilon", default: 1e-5)), tiedEmbeddings: true,
                       extra: ["window_size": Double(try cfg.int("window_size", default: 256)), "local_layers_mask": Double(mask)])
    }

    package struct Config: ModelConfig {
        /// n_head heads of d_model / n_head; d_ff 4 × d_model unless stored.
        package let shape: ModelShape
        package var normEps: Float
        /// The local layers' window.
        package var windowSize: Int
        /// Bit l set: layer l is local (config.json attention_layers; default: odd layers, the
        /// recipe's [global, local] × n).
        package var localLayers: [Bool]

        enum CodingKeys: String, CodingKey { case normEps = "norm_eps", windowSize = "window_size", localMask = "local_layers_mask" }

        package init(from decoder: Decoder) throws {
            var sh = try ModelShape(decoding: decoder, defaultFF: { 4 * $0 })
            sh.nKVHead = sh.nHead; sh.headDim = sh.dModel / sh.nHead
            shape = sh
            let c = try decoder.container(keyedBy: CodingKeys.self)
            normEps = try c.decodeIfPresent(Float.self, forKey: .normEps) ?? 1e-5
            windowSize = try c.decodeIfPresent(Int.self, forKey: .windowSize) ?? 256
            let mask = try c.decodeIfPresent(Int.self, forKey: .localMask)
            localLayers = (0 ..< sh.nLayer).map { l in mask.map { $0 >> l & 1 == 1 } ?? (l % 2 == 1) }
            guard windowSize > 0 else {
                throw DecodingError.dataCorruptedError(forKey: .windowSize, in: c, debugDescription: "window_size \(windowSize) must be positive")
            }
        }
    }

    package static func defaultAttention(_ config: Config) -> [AttentionPattern]? {
        config.localLayers.map { $0 ? .banded(window: min(config.windowSize, config.nCtx)) : .dense }
    }

    struct Layer {
        let ln1w, ln1b, ln2w, ln2b: UnsafePointer<Float>
        let wq, wk, wv, wo, fc, proj: Matrix
        let woB, fcB, projB: UnsafePointer<Float>
    }

    package let config: Config
    package let core: ModelCore
    let wte: EmbeddingTable
    let output: OutputMatrix
    let wpe: Matrix
    let layers: [Layer]
    let lnfW, lnfB: UnsafePointer<Float>

    package init(config: Config, context ctx: ModelContext) throws {
        let weights = ctx.weights, sh = config.shape, N = Self.tensorNames
        self.config = config
        let d = sh.dModel, f = sh.dFF
        func vec(_ r: TensorRole, _ l: Int, _ n: Int, bias: Bool = false) throws -> UnsafePointer<Float> {
            try weights.vector(N(r, layer: l, bias: bias), count: n)
        }
        wte = try weights.embeddingTable(N(.tokenEmbedding), rows: sh.vocabSize, cols: d)
        output = try weights.outputMatrix(N(.tokenEmbedding), rows: sh.vocabSize, cols: d, shared: wte)
        wpe = try weights.matrix(N(.positionEmbedding), rows: sh.nCtx, cols: d)
        layers = try (0 ..< sh.nLayer).map { i in
            Layer(ln1w: try vec(.attnNorm, i, d), ln1b: try vec(.attnNorm, i, d, bias: true),
                  ln2w: try vec(.ffnNorm, i, d), ln2b: try vec(.ffnNorm, i, d, bias: true),
                  wq: try weights.matrix(N(.attnQ, layer: i), rows: d, cols: d),
                  wk: try weights.matrix(N(.attnK, layer: i), rows: d, cols: d),
                  wv: try weights.matrix(N(.attnV, layer: i), rows: d, cols: d),
                  wo: try weights.matrix(N(.attnOutput, layer: i), rows: d, cols: d),
                  fc: try weights.matrix(N(.ffnUp, layer: i), rows: f, cols: d),
                  proj: try weights.matrix(N(.ffnDown, layer: i), rows: d, cols: f),
                  woB: try vec(.attnOutput, i, d, bias: true), fcB: try vec(.ffnUp, i, f, bias: true),
                  projB: try vec(.ffnDown, i, d, bias: true))
        }
        lnfW = try weights.vector(N(.outputNorm), count: d)
        lnfB = try weights.vector(N(.outputNorm, bias: true), count: d)
        core = try ModelCore(sh, context: ctx, encoding: Self.positionEncoding, eps: config.normEps,
                             attention: Attention(sh, scale: 1, compute: ctx.compute))
    }

    package var matrices: [Matrix] { layers.flatMap { [$0.wq, $0.wk, $0.wv, $0.wo, $0.fc, $0.proj] } + output.matrices }

    package func forward(_ tokens: UnsafeBufferPointer<Int32>, rows: Rows, logitRows: Range<Int>,
                         onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        let T = tokens.count, d = config.dModel
        let b = blocks, s = blocks.state, c = compute
        let q = s.qkv, k = s.qkv + d, v = s.qkv + 2 * d   // row t of each at t * 3d
        try b.embedWithPositions(wte, positions: wpe, tokens, rows: rows, model: "GPT-Neo")
        for (l, L) in layers.enumerated() {
            try weights.acquire(layer: l)      // streamed layers: wait until L's matrices are in their buffer
            defer { weights.release(layer: l) }
            b.qkv(.layer(L.ln1w, bias: L.ln1b), L.wq, L.wk, L.wv, T: T, q: q, k: k, v: v, ldOut: 3 * d)
            b.attend(layer: l, rows: rows, T: T, q: q, qStride: 3 * d, k: k, kStride: 3 * d, v: v, vStride: 3 * d, out: s.att)
            c.linear(L.wo, s.att, T: T, out: s.proj, bias: L.woB)
            b.residual(T)
            b.geluMLP(.layer(L.ln2w, bias: L.ln2b), up: L.fc, upBias: L.fcB, down: L.proj, downBias: L.projB, T: T)
        }
        b.norm(.layer(lnfW, bias: lnfB), rows: logitRows, from: s.x, into: s.xb)
        try b.logits(output, rows: logitRows, onLogits: onLogits)
    }
}
