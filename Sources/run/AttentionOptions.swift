import ArgumentParser
import Foundation
import Runtime

/// --attention, --attention-layers, --sinks, --kv-type, --positions: shared by generate,
/// logits, perplexity and compare. Validated against the model at load (clear one-line errors).
struct AttentionOptions: ParsableArguments {
    @Option(name: .long, help: "Attention for every layer: dense, banded:W, strided:W,K, or alternating:W (even layers dense, odd banded:W). Default: the model's own pattern (dense for GPT-2 and Llama).")
    var attention: String?

    @Option(name: .long, help: "One pattern per layer, comma-separated (exactly n_layer entries), e.g. dense,banded:128,strided:64,16.")
    var attentionLayers: String?

    @Option(name: .long, help: "Keep the first S tokens visible in every banded/strided layer (attention sinks; S < W).")
    var sinks: Int = 0

    @Option(name: .long, help: "KV cache element type: f16 (default; half of f32's bytes, perplexity within 0.01%), f32 (exact), or q8_0 (one scale per head vector).")
    var kvType: String = "f16"

    @Option(name: .long, help: "Rotary positions: absolute, or cache (StreamingLLM re-indexing inside the window; default for rotary models whose every layer is banded).")
    var positions: String?

    func validate() throws {
        guard sinks >= 0 else { throw ValidationError("--sinks must be ≥ 0, got \(sinks)") }
        guard KVType(rawValue: kvType.lowercased()) != nil else { throw ValidationError("--kv-type must be f32, f16 or q8_0, got '\(kvType)'") }
        if let p = positions, PositionMode(rawValue: p) == nil {
            throw ValidationError("--positions must be absolute or cache, got '\(p)'")
        }
    }

    var config: AttentionConfig {
        AttentionConfig(attention: attention, layerList: attentionLayers.map(AttentionConfig.splitLayerList), sinks: sinks,
                        kvType: KVType(rawValue: kvType.lowercased()) ?? .f16, positions: positions.flatMap(PositionMode.init(rawValue:)))
    }
}
