import Foundation

/// The role of a tensor in a transformer, in GGUF's tensor vocabulary (llama.cpp's names without
/// the `blk.N.` prefix and the `.weight` / `.bias` suffix): an open set, so an architecture that
/// needs a new role (Gemma's post-norms, say) declares it next to its model.
package struct TensorRole: Hashable, Sendable, RawRepresentable, ExpressibleByStringLiteral, CustomStringConvertible {
    package let rawValue: String
    package init(rawValue: String) { self.rawValue = rawValue }
    package init(stringLiteral value: String) { rawValue = value }
    package var description: String { rawValue }

    package static let tokenEmbedding: TensorRole = "token_embd"
    package static let positionEmbedding: TensorRole = "position_embd"
    package static let outputNorm: TensorRole = "output_norm"
    package static let output: TensorRole = "output"
    package static let attnNorm: TensorRole = "attn_norm"
    package static let attnQKV: TensorRole = "attn_qkv"
    package static let attnQ: TensorRole = "attn_q"
    package static let attnK: TensorRole = "attn_k"
    package static let attnV: TensorRole = "attn_v"
    package static let attnOutput: TensorRole = "attn_output"
    package static let ffnNorm: TensorRole = "ffn_norm"
    package static let ffnUp: TensorRole = "ffn_up"
    package static let ffnGate: TensorRole = "ffn_gate"
    package static let ffnDown: TensorRole = "ffn_down"
}

/// One tensor of a model: its role, its block (nil outside the blocks) and weight or bias.
package struct TensorKey: Hashable, Sendable, CustomStringConvertible {
    package var role: TensorRole
    package var layer: Int?
    package var bias: Bool

    package init(_ role: TensorRole, layer: Int? = nil, bias: Bool = false) {
        self.role = role; self.layer = layer; self.bias = bias
    }

    /// GGUF's name for it ("blk.3.attn_q.weight"): the name a tensor has before an architecture names it.
    package var description: String {
        (layer.map { "blk.\($0)." } ?? "") + role.rawValue + (bias ? ".bias" : ".weight")
    }
}

/// How an architecture names its tensors in a .qlm file: the one table readers (through the
/// converter), the model, the memory planner and the layer streamer share. Names are
/// `prefix + N + "." + base + ".weight|.bias"` inside block N, `base + ".weight|.bias"` outside.
package struct TensorNames: Sendable {
    /// Inside the blocks: "h." (GPT-2), "layers." (Llama).
    package let layerPrefix: String
    package let global: [TensorRole: String]
    package let perLayer: [TensorRole: String]

    package init(layerPrefix: String, global: [TensorRole: String], perLayer: [TensorRole: String]) {
        self.layerPrefix = layerPrefix; self.global = global; self.perLayer = perLayer
    }

    /// The canonical name of `key`, or nil if the architecture has no such role.
    package func name(_ key: TensorKey) -> String? {
        base(key).map { $0 + (key.bias ? ".bias" : ".weight") }
    }

    /// The name without its ".weight" / ".bias" suffix.
    package func base(_ key: TensorKey) -> String? {
        if let l = key.layer { return perLayer[key.role].map { "\(layerPrefix)\(l).\($0)" } }
        return global[key.role]
    }

    /// `name(key)` for a role the architecture must have (a programming error otherwise).
    package func callAsFunction(_ role: TensorRole, layer: Int? = nil, bias: Bool = false) -> String {
        guard let n = name(TensorKey(role, layer: layer, bias: bias)) else {
            preconditionFailure("architecture names no tensor \(TensorKey(role, layer: layer, bias: bias))")
        }
        return n
    }

    /// The block index of a canonical tensor name, or nil outside the blocks.
    package func layerIndex(_ name: String) -> Int? {
        guard name.hasPrefix(layerPrefix) else { return nil }
        let rest = name.dropFirst(layerPrefix.count)
        guard let dot = rest.firstIndex(of: "."), let l = Int(rest[..<dot]), l >= 0 else { return nil }
        return l
    }

    /// The classifier's tensor: the token embedding when tied.
    package func output(tied: Bool) -> String { tied ? self(.tokenEmbedding) : self(.output) }
}
