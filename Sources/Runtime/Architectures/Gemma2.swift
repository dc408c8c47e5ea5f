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
    /// GGUF: llama.cpp's gemma2 keys; Hugging Face: Gemma2Config (layer_types must alternate
    /// sliding / full as the recipe's period says; the norms' stored w becomes 1 + w, as
    /// llama.cpp's converter writes them).
    package static let formats = DecoderLM.formats(name, recipe, gguf: GGUFMapping(architecture: "gemma2", extraKeys: [
        ("attention.key_length", "head_dim"), ("attention.sliding_window", "sliding_window"),
        ("attn_logit_softcapping", "attn_softcap"), ("final_logit_softcapping", "final_softcap")]),
        hfTypes: ["gemma2"], hparams: hfHParams,
        rename: [.postAttnNorm: "post_attention_layernorm", .ffnNorm: "pre_feedforward_layernorm", .postFFNNorm: "post_feedforward_layernorm"],
        adjust: { key, _ in [.attnNorm, .postAttnNorm, .ffnNorm, .postFFNNorm, .outputNorm].contains(key.role) ? .addOne : .none })

    @Sendable static func hfHParams(_ cfg: HFConfig) throws -> HParams {
        try cfg.require(activation: ["gelu_pytorch_tanh"], key: "hidden_activation")
        var hp = try cfg.decoderHParams(tiedDefault: true)
        hp.extra["head_dim"] = Double(try cfg.int("head_dim", default: hp.dModel / hp.nHead))
        hp.extra["query_pre_attn_scalar"] = try cfg.double("query_pre_attn_scalar", default: hp.extra["head_dim"]!)
        if let w = try cfg.intIfPresent("sliding_window") { hp.extra["sliding_window"] = Double(w) }
        if let c = try cfg.doubleIfPresent("attn_logit_softcapping") { hp.extra["attn_softcap"] = c }
        if let c = try cfg.doubleIfPresent("final_logit_softcapping") { hp.extra["final_softcap"] = c }
        if let raw = cfg.json["layer_types"], !(raw is NSNull) {
            guard let types = raw as? [String] else {
                throw QuantError(cfg.file, "config.json layer_types must be a list of strings (sliding_attention / full_attention)")
            }
            guard types.count == hp.nLayer else {
                throw QuantError(cfg.file, "config.json layer_types has \(types.count) entries for \(hp.nLayer) layers")
            }
            for (l, t) in types.enumerated() where t != (l % 2 == 1 ? "full_attention" : "sliding_attention") {
                throw QuantError(cfg.file, "config.json layer_types: layer \(l) is \(t); gemma2 alternates sliding (even) and full (odd) layers")
            }
        }
        return hp
    }

    package static func defaultAttention(_ config: DecoderConfig) -> [AttentionPattern]? { config.attentionPattern(recipe) }

    package init(config: DecoderConfig, context: ModelContext) throws {
        try super.init(config: config, recipe: Self.recipe, names: Self.tensorNames, context: context)
    }
}
