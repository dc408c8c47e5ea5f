import Foundation
import Quant

/// Gemma 2: embeddings × √d; RMSNorms before and after both sub-layers (weights as llama.cpp
/// stores them, 1 + w); scores scaled by 1/√query_pre_attn_scalar and soft-capped
/// (attn_softcap · tanh(s / attn_softcap)); a GeGLU MLP; logits soft-capped likewise
/// (final_softcap); layers alternate sliding (even: a ring over `sliding_window`) and global
/// (odd), llama.cpp's set_swa_pattern(2); rotary on halves; classifier tied to the embedding.
package final class Gemma2: DecoderLM, Architecture {
    package static let name = "gemma2"
    package static let positionEncoding = PositionEncoding.rotary
    package static let tensorNames = DecoderLM.ggufTensorNames
    static let recipe = DecoderRecipe {
        $0.norms = .prePost; $0.activation = .geluTanh; $0.rotaryPairs = .halves; $0.embedScaled = true; $0.windowPeriod = 2
    }

    package static func defaultAttention(_ config: DecoderConfig) -> [AttentionPattern]? { config.attentionPattern(recipe) }

    package init(config: DecoderConfig, context: ModelContext) throws {
        try super.init(config: config, recipe: Self.recipe, names: Self.tensorNames, context: context)
    }
}
