import Foundation
import Quant

/// Mistral: Llama's decoder whose every layer attends to a sliding window (`sliding_window`
/// keys, itself included: a ring KV cache per layer). llama.cpp's converter writes a Mistral
/// as a GGUF "llama" without the window (llama.cpp runs it dense); that file loads as `llama`.
package final class Mistral: DecoderLM, Architecture {
    package static let name = "mistral"
    package static let positionEncoding = PositionEncoding.rotary
    package static let tensorNames = DecoderLM.ggufTensorNames
    /// Adjacent pairs: q and k rows are reordered from transformers' halves when read.
    static let recipe = DecoderRecipe()
    package static let formats = DecoderLM.formats(name, recipe, gguf: nil, hfTypes: ["mistral"], hparams: { cfg in
        try cfg.require(activation: ["silu"])
        var hp = try cfg.decoderHParams()
        if let w = try cfg.intIfPresent("sliding_window") { hp.extra["sliding_window"] = Double(w) }
        return hp
    }, adjust: { key, hp in key.role == .attnQ || key.role == .attnK ? .halvesToPairs(headDim: hp.headDim) : .none })

    package static func defaultAttention(_ config: DecoderConfig) -> [AttentionPattern]? { config.attentionPattern(recipe) }

    package init(config: DecoderConfig, context: ModelContext) throws {
        try super.init(config: config, recipe: Self.recipe, names: Self.tensorNames, context: context)
    }
}
