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

    package init(config: DecoderConfig, context: ModelContext) throws {
        try super.init(config: config, recipe: Self.recipe, names: Self.tensorNames, context: context)
    }
}
