import Foundation

/// The role of a tensor in a transformer, in GGUF's tensor vocabulary (llama.cpp's names without
/// the `blk.N.` prefix and the `.weight` / `.bias` suffix): an open set, so an architecture that
/// needs a new role (Gemma's post-norms, say) declares it next to its model.
public struct TensorRole: Hashable, Sendable, RawRepresentable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }

    public static let tokenEmbedding: TensorRole = "token_embd"
    public static let positionEmbedding: TensorRole = "position_embd"
    public static let outputNorm: TensorRole = "output_norm"
    public static let output: TensorRole = "output"
    public static let attnNorm: TensorRole = "attn_norm"
    public static let attnQKV: TensorRole = "attn_qkv"
    public static let attnQ: TensorRole = "attn_q"
    public static let attnK: TensorRole = "attn_k"
    public static let attnV: TensorRole = "attn_v"
    public static let attnOutput: TensorRole = "attn_output"
    public static let ffnNorm: TensorRole = "ffn_norm"
    public static let ffnUp: TensorRole = "ffn_up"
    public static let ffnGate: TensorRole = "ffn_gate"
    public static let ffnDown: TensorRole = "ffn_down"
}

/// One tensor of a model: its role, its block (nil outside the blocks) and weight or bias.
public struct TensorKey: Hashable, Sendable, CustomStringConvertible {
    public var role: TensorRole
    public var layer: Int?
    public var bias: Bool

    public init(_ role: TensorRole, layer: Int? = nil, bias: Bool = false) {
        self.role = role; self.layer = layer; self.bias = bias
    }

    /// GGUF's name for it ("blk.3.attn_q.weight"): the name a tensor has before an architecture names it.
    public var description: String {
        (layer.map { "blk.\($0)." } ?? "") + role.rawValue + (bias ? ".bias" : ".weight")
    }
}

/// How an architecture names its tensors in a .qlm file: the one table readers (through the
/// converter), the model, the memory planner and the layer streamer share. Names are
/// `prefix + N + "." + base + ".weight|.bias"` inside block N, `base + ".weight|.bias"` outside.
public struct TensorNames: Sendable {
    /// Inside the blocks: "h." (GPT-2), "layers." (Llama).
    public let layerPrefix: String
    public let global: [TensorRole: String]
    public let perLayer: [TensorRole: String]

    public init(layerPrefix: String, global: [TensorRole: String], perLayer: [TensorRole: String]) {
        self.layerPrefix = layerPrefix; self.global = global; self.perLayer = perLayer
    }

    /// The canonical name of `key`, or nil if the architecture has no such role.
    public func name(_ key: TensorKey) -> String? {
        let suffix = key.bias ? ".bias" : ".weight"
        if let l = key.layer {
            guard let base = perLayer[key.role] else { return nil }
            return "\(layerPrefix)\(l).\(base)\(suffix)"
        }
        return global[key.role].map { $0 + suffix }
    }

    /// `name(key)` for a role the architecture must have (a programming error otherwise).
    public func callAsFunction(_ role: TensorRole, layer: Int? = nil, bias: Bool = false) -> String {
        guard let n = name(TensorKey(role, layer: layer, bias: bias)) else {
            preconditionFailure("architecture names no tensor \(TensorKey(role, layer: layer, bias: bias))")
        }
        return n
    }

    /// The block index of a canonical tensor name, or nil outside the blocks.
    public func layerIndex(_ name: String) -> Int? {
        guard name.hasPrefix(layerPrefix) else { return nil }
        let rest = name.dropFirst(layerPrefix.count)
        guard let dot = rest.firstIndex(of: "."), let l = Int(rest[..<dot]), l >= 0 else { return nil }
        return l
    }

    /// The classifier's tensor: the token embedding when tied.
    public func output(tied: Bool) -> String { tied ? self(.tokenEmbedding) : self(.output) }
}
