import Foundation
import Quant

/// Qwen 2 / 2.5: Llama's decoder with biases on q, k and v, rotary on halves (NeoX order, as
/// transformers and llama.cpp's converter leave q and k), every layer dense.
package final class Qwen2: DecoderLM, Architecture {
    package static let name = "qwen2"
    package static let positionEncoding = PositionEncoding.rotary
    package static let tensorNames = DecoderLM.ggufTensorNames
    static let recipe = DecoderRecipe { $0.qkvBias = true; $0.rotaryPairs = .halves }

    package init(config: DecoderConfig, context: ModelContext) throws {
        try super.init(config: config, recipe: Self.recipe, names: Self.tensorNames, context: context)
    }
}
