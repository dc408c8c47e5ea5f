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
    package static let formats = DecoderLM.formats(name, recipe, gguf: GGUFMapping(architecture: "phi3", extraKeys: [("attention.sliding_window", "sliding_window")]),
                                                   hfTypes: ["phi3"], hparams: { cfg in
        try cfg.require(activation: ["silu"])
        let rope = try cfg.rope(defaultTheta: 10000)
        let stored = try cfg.doubleIfPresent("partial_rotary_factor")
        if let p = (rope.params["partial_rotary_factor"] as? NSNumber)?.doubleValue ?? stored, p != 1 {
            throw QuantError(cfg.file, "config.json partial_rotary_factor \(p) is not supported for phi3 (rotary over the whole head only)")
        }
        var hp = try cfg.decoderHParams(epsDefault: 1e-5)
        if let w = try cfg.intIfPresent("sliding_window") { hp.extra["sliding_window"] = Double(w) }
        return hp
    }, rename: [.attnQKV: "self_attn.qkv_proj", .ffnUp: "mlp.gate_up_proj"])

    package static func defaultAttention(_ config: DecoderConfig) -> [AttentionPattern]? { config.attentionPattern(recipe) }

    package init(config: DecoderConfig, context: ModelContext) throws {
        try super.init(config: config, recipe: Self.recipe, names: Self.tensorNames, context: context)
    }
}
