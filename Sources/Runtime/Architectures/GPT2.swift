import CKernels
import Foundation
import Quant

/// GPT-2: token + learned position embeddings, pre-LayerNorm blocks of masked multi-head
/// self-attention and a GELU (tanh form) MLP, a final LayerNorm, and logits from the token
/// embedding (tied). Matrices are stored [out, in] (the converter transposed HF's Conv1D).
package final class GPT2: Architecture {
    package static let name = "gpt2"
    package static let positionEncoding = PositionEncoding.learned
    package static let tensorNames = TensorNames(
        layerPrefix: "h.",
        global: [.tokenEmbedding: "wte", .positionEmbedding: "wpe", .outputNorm: "ln_f"],
        perLayer: [.attnNorm: "ln_1", .attnQKV: "attn.c_attn", .attnOutput: "attn.c_proj", .ffnNorm: "ln_2",
                   .ffnUp: "mlp.c_fc", .ffnDown: "mlp.c_proj"])

    /// Its tensors (every norm and product has a bias; the classifier is the embedding), and a
    /// Hugging Face GPT-2 directory: the .qlm names are HF's own, Conv1D matrices stored [in, out],
    /// keys with or without `transformer.`, the attention mask buffers and a tied lm_head ignored.
    package static let formats = ArchitectureFormats(name: name, tensors: { hp in
        let d = hp.dModel, f = hp.dFF
        var l = [TensorSpec(.tokenEmbedding, [hp.vocabSize, d]), TensorSpec(.positionEmbedding, [hp.nCtx, d])]
        for i in 0 ..< hp.nLayer {
            for (role, shape) in [(TensorRole.attnNorm, [d]), (.attnQKV, [3 * d, d]), (.attnOutput, [d, d]), (.ffnNorm, [d]),
                                  (.ffnUp, [f, d]), (.ffnDown, [d, f])] {
                l += [TensorSpec(role, layer: i, shape), TensorSpec(role, layer: i, bias: true, [shape[0]])]
            }
        }
        return l + [TensorSpec(.outputNorm, [d]), TensorSpec(.outputNorm, bias: true, [d])]
    }, hf: HFMapping(modelTypes: ["gpt2"], hparams: hfHParams, name: { tensorNames.base($0) },
                     adjust: { key, _ in !key.bias && [.attnQKV, .attnOutput, .ffnUp, .ffnDown].contains(key.role) ? .transposed : .none },
                     ignored: { n, _ in n.hasSuffix(".attn.bias") || n.hasSuffix(".attn.masked_bias") || n == "lm_head.weight" },
                     stripPrefixes: ["transformer."]))

    /// config.json of transformers' GPT2Config (and older spellings).
    @Sendable static func hfHParams(_ cfg: HFConfig) throws -> HParams {
        let d = try cfg.int("n_embd", "hidden_size")
        if let act = try cfg.string("activation_function"), act != "gelu_new", act != "gelu_pytorch_tanh" {
            throw QuantError(cfg.file, "activation_function '\(act)' is not supported (GPT-2 uses gelu_new)")
        }
        let nHead = try cfg.int("n_head", "num_attention_heads")
        return HParams(nLayer: try cfg.int("n_layer", "num_hidden_layers"), nHead: nHead, nKVHead: nHead,
                       dModel: d, dFF: try cfg.int("n_inner", default: 4 * d), nCtx: try cfg.int("n_positions", "n_ctx"),
                       vocabSize: try cfg.int("vocab_size"), normEps: Float(try cfg.double("layer_norm_epsilon", default: 1e-5)),
                       tiedEmbeddings: true)
    }

    package struct Config: ModelConfig {
        /// Multi-head attention over d_model: n_head heads of d_model / n_head, no grouping;
        /// d_ff 4 × d_model unless stored.
        package let shape: ModelShape
        package var normEps: Float

        enum CodingKeys: String, CodingKey { case normEps = "norm_eps" }

        package init(from decoder: Decoder) throws {
            var sh = try ModelShape(decoding: decoder, defaultFF: { 4 * $0 })
            sh.nKVHead = sh.nHead; sh.headDim = sh.dModel / sh.nHead
            shape = sh
            normEps = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(Float.self, forKey: .normEps) ?? 1e-5
        }
    }

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

    package let config: Config
    package let core: ModelCore
    /// The token embedding and the tied classifier (the same tensor; either may stream).
    let wte: EmbeddingTable
    let output: OutputMatrix
    let wpe: Matrix
    let layers: [Layer]
    let lnfW, lnfB: UnsafePointer<Float>

    package init(config: Config, context ctx: ModelContext) throws {
        let weights = ctx.weights, sh = config.shape, N = Self.tensorNames
        // Learned absolute positions: nothing past n_ctx (positions ≥ n_ctx are an error, never
        // wrapped or clamped), and no re-indexing (ModelCore refuses --positions cache).
        core = try ModelCore(sh, context: ctx, encoding: Self.positionEncoding, eps: config.normEps, model: "GPT-2")
        self.config = config
        let d = sh.dModel, f = sh.dFF
        wte = try weights.embeddingTable(N(.tokenEmbedding), rows: sh.vocabSize, cols: d)
        output = try weights.outputMatrix(N(.tokenEmbedding), rows: sh.vocabSize, cols: d, shared: wte)
        wpe = try weights.matrix(N(.positionEmbedding), rows: sh.nCtx, cols: d)
        layers = try (0 ..< sh.nLayer).map { i in
            Layer(
                ln1w: try weights.vector(N(.attnNorm, layer: i), count: d), ln1b: try weights.vector(N(.attnNorm, layer: i, bias: true), count: d),
                attnW: try weights.matrix(N(.attnQKV, layer: i), rows: 3 * d, cols: d),
                attnB: try weights.vector(N(.attnQKV, layer: i, bias: true), count: 3 * d),
                projW: try weights.matrix(N(.attnOutput, layer: i), rows: d, cols: d),
                projB: try weights.vector(N(.attnOutput, layer: i, bias: true), count: d),
                ln2w: try weights.vector(N(.ffnNorm, layer: i), count: d), ln2b: try weights.vector(N(.ffnNorm, layer: i, bias: true), count: d),
                fcW: try weights.matrix(N(.ffnUp, layer: i), rows: f, cols: d),
                fcB: try weights.vector(N(.ffnUp, layer: i, bias: true), count: f),
                fcProjW: try weights.matrix(N(.ffnDown, layer: i), rows: d, cols: f),
                fcProjB: try weights.vector(N(.ffnDown, layer: i, bias: true), count: d))
        }
        lnfW = try weights.vector(N(.outputNorm), count: d)
        lnfB = try weights.vector(N(.outputNorm, bias: true), count: d)
    }

    package var matrices: [Matrix] { layers.flatMap { [$0.attnW, $0.projW, $0.fcW, $0.fcProjW] } + output.matrices }

    package func forward(_ tokens: UnsafeBufferPointer<Int32>, rows: Rows, logitRows: Range<Int>,
                 onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        let T = tokens.count, d = config.dModel
        let b = blocks, s = blocks.state, c = compute
        // Embeddings: token + position.
        try b.embedWithPositions(wte, positions: wpe, tokens, rows: rows, model: "GPT-2")
        for (l, L) in layers.enumerated() {
            try weights.acquire(layer: l)      // streamed layers: wait until L's matrices are in their buffer
            defer { weights.release(layer: l) }
            // Attention sub-layer: q, k, v are one [T, 3d] product.
            b.norm(.layer(L.ln1w, bias: L.ln1b), rows: 0 ..< T, from: s.x, into: s.xb)
            c.linear(L.attnW, s.xb, T: T, out: s.qkv, bias: L.attnB)
            b.attend(layer: l, rows: rows, T: T, q: s.qkv, qStride: 3 * d, k: s.qkv + d, kStride: 3 * d,
                     v: s.qkv + 2 * d, vStride: 3 * d, out: s.att)
            c.linear(L.projW, s.att, T: T, out: s.proj, bias: L.projB)
            b.residual(T)
            // MLP sub-layer.
            b.geluMLP(.layer(L.ln2w, bias: L.ln2b), up: L.fcW, upBias: L.fcB, down: L.fcProjW, downBias: L.fcProjB, T: T)
        }
        // Final LayerNorm and tied classifier, for the requested rows only.
        b.norm(.layer(lnfW, bias: lnfB), rows: logitRows, from: s.x, into: s.xb)
        try b.logits(output, rows: logitRows, onLogits: onLogits)
    }
}
