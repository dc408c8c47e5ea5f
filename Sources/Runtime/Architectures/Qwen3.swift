import Foundation
import Quant

/// Qwen 3 (dense): Llama's decoder with a per-head RMSNorm of q and k before the rotation
/// (weights [head_dim]), rotary on halves, head_dim independent of d_model / n_head.
package final class Qwen3: DecoderLM, Architecture {
    package static let name = "qwen3"
    package static let positionEncoding = PositionEncoding.rotary
    package static let tensorNames = DecoderLM.ggufTensorNames
    static let recipe = DecoderRecipe { $0.qkNorm = .perHead; $0.rotaryPairs = .halves }
    package static let formats = DecoderLM.formats(name, recipe, gguf: GGUFMapping(architecture: "qwen3", extraKeys: [("attention.key_length", "head_dim")]),
                                                   hfTypes: ["qwen3"]) { cfg in
        try cfg.require(activation: ["silu"])
        if try cfg.bool("use_sliding_window", default: false) {
            throw QuantError(cfg.file, "config.json use_sliding_window true is not supported for qwen3")
        }
        return try cfg.decoderHParams()
    }

    package init(config: DecoderConfig, context: ModelContext) throws {
        try super.init(config: config, recipe: Self.recipe, names: Self.tensorNames, context: context)
    }
}
