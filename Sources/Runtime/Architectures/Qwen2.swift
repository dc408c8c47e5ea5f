import Foundation
import Quant

/// Qwen 2 / 2.5: Llama's decoder with biases on q, k and v, rotary on halves (NeoX order, as
/// transformers and llama.cpp's converter leave q and k), every layer dense.
package final class Qwen2: DecoderLM, Architecture {
    package static let name = "qwen2"
    package static let positionEncoding = PositionEncoding.rotary
    package static let tensorNames = DecoderLM.ggufTensorNames
    static let recipe = DecoderRecipe { $0.qkvBias = true; $0.rotaryPairs = .halves }
    package static let formats = DecoderLM.formats(name, recipe, gguf: GGUFMapping(architecture: "qwen2"), hfTypes: ["qwen2"]) { cfg in
        try cfg.require(activation: ["silu"])
        if try cfg.bool("use_sliding_window", default: false) {
            throw QuantError(cfg.file, "config.json use_sliding_window true is not supported for qwen2")
        }
        return try cfg.decoderHParams()
    }

    package init(config: DecoderConfig, context: ModelContext) throws {
        try super.init(config: config, recipe: Self.recipe, names: Self.tensorNames, context: context)
    }
}
