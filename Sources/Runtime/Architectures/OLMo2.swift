import Foundation
import Quant

/// OLMo 2: Llama's decoder with its norms after the sub-layers instead of before (the
/// attention's and the MLP's outputs are RMS-normed, then added), and an RMSNorm over the whole
/// q and k rows (weights [n_head × head_dim] and [n_kv_head × head_dim]) before the rotation;
/// rotary on halves.
package final class OLMo2: DecoderLM, Architecture {
    package static let name = "olmo2"
    package static let positionEncoding = PositionEncoding.rotary
    package static let tensorNames = DecoderLM.ggufTensorNames
    static let recipe = DecoderRecipe { $0.norms = .post; $0.qkNorm = .whole; $0.rotaryPairs = .halves }
    package static let formats = DecoderLM.formats(name, recipe, gguf: GGUFMapping(architecture: "olmo2"), hfTypes: ["olmo2"], hparams: { cfg in
        try cfg.require(activation: ["silu"])
        return try cfg.decoderHParams(epsDefault: 1e-5)
    }, rename: [.postAttnNorm: "post_attention_layernorm", .postFFNNorm: "post_feedforward_layernorm"])

    package init(config: DecoderConfig, context: ModelContext) throws {
        try super.init(config: config, recipe: Self.recipe, names: Self.tensorNames, context: context)
    }
}
