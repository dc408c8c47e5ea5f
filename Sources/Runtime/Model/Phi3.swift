import Foundation
import Quant

/// Phi-3 (mini): Llama's decoder with q, k, v fused into one matrix ([q + 2 kv, d], llama.cpp's
/// attn_qkv) and gate and up fused into one ([2 d_ff, d], gate first, llama.cpp's ffn_up);
/// rotary on halves.
package final class Phi3: DecoderLM, Architecture {
    package static let name = "phi3"
    package static let positionEncoding = PositionEncoding.rotary
    package static let tensorNames = DecoderLM.ggufTensorNames
    static let recipe = DecoderRecipe { $0.fusedQKV = true; $0.fusedGateUp = true; $0.rotaryPairs = .halves }

    package static func defaultAttention(_ config: DecoderConfig) -> [AttentionPattern]? { config.attentionPattern(recipe) }

    package init(config: DecoderConfig, context: ModelContext) throws {
        try super.init(config: config, recipe: Self.recipe, names: Self.tensorNames, context: context)
    }
}
