import Foundation

/// One tensor a model of some hyper-parameters has: what it is and its canonical [out, in] shape.
package struct TensorSpec: Sendable, Equatable {
    package var key: TensorKey
    package var shape: [Int]
    package init(_ key: TensorKey, _ shape: [Int]) { self.key = key; self.shape = shape }
    package init(_ role: TensorRole, layer: Int? = nil, bias: Bool = false, _ shape: [Int]) {
        self.init(TensorKey(role, layer: layer, bias: bias), shape)
    }
}

/// How one architecture appears in the checkpoint formats QuantLM reads. The readers live in
/// `Quant` and cannot see the models (in `Runtime`): each model file declares its mapping as one
/// of these, the registry (`Architectures.all`) collects them, and `Checkpoint.read(_:formats:)`
/// hands them to the readers. A reader holds no per-architecture table.
package struct ArchitectureFormats: Sendable {
    /// The .qlm `architecture` name.
    package let name: String
    /// Every tensor a model of these hyper-parameters reads (the classifier only when untied).
    package let tensors: @Sendable (HParams) -> [TensorSpec]
    /// How llama.cpp's GGUF writes it (nil: not read from GGUF).
    package let gguf: GGUFMapping?
    /// How a Hugging Face directory describes it (nil: not read from Hugging Face).
    package let hf: HFMapping?

    package init(name: String, tensors: @escaping @Sendable (HParams) -> [TensorSpec], gguf: GGUFMapping? = nil, hf: HFMapping? = nil) {
        self.name = name; self.tensors = tensors; self.gguf = gguf; self.hf = hf
    }
}

/// An architecture in GGUF: its `general.architecture`, and which `<arch>.*` keys beyond the
/// common ones (block_count, embedding_length, heads, feed_forward_length, context_length,
/// layer_norm_rms_epsilon, rope.freq_base) it carries into `HParams.extra`. Tensors are named by
/// their roles (`TensorKey.description`: "blk.3.attn_q.weight").
package struct GGUFMapping: Sendable {
    package let architecture: String
    /// (key after "<arch>.", `hparams` key): numbers copied into `HParams.extra` when present.
    package let extraKeys: [(String, String)]
    /// Tensors read when the file has them (llama.cpp's rope_freqs: Llama 3's rotary divisors).
    package let optionalTensors: @Sendable (HParams) -> [TensorSpec]
    package init(architecture: String, extraKeys: [(String, String)] = [],
                 optionalTensors: @escaping @Sendable (HParams) -> [TensorSpec] = { _ in [] }) {
        self.architecture = architecture; self.extraKeys = extraKeys; self.optionalTensors = optionalTensors
    }
}

/// How a stored tensor's numbers become the model's: as stored, transposed (GPT-2's Conv1D
/// keeps [in, out]), with 1 added (Gemma's norms are stored as w - 1), or with the rows of each
/// head reordered from rotate-halves order (i, i + d/2) to adjacent pairs (2i, 2i + 1), which is
/// what llama.cpp's converter does to Llama's q and k (QuantLM's Llama rotates adjacent pairs).
package enum SourceAdjust: Sendable, Equatable {
    case none
    case transposed
    case addOne
    case halvesToPairs(headDim: Int)
}

/// An architecture in a Hugging Face directory: the `model_type`s it answers to, its config.json
/// mapping, and its tensor names.
package struct HFMapping: Sendable {
    package let modelTypes: [String]
    /// config.json → HParams (what the model's Config decodes later from the .qlm).
    package let hparams: @Sendable (HFConfig) throws -> HParams
    /// The Hugging Face name of a tensor, without the ".weight" / ".bias" suffix.
    package let name: @Sendable (TensorKey) -> String?
    /// What to do to a tensor's stored numbers (default: nothing).
    package let adjust: @Sendable (TensorKey, HParams) -> SourceAdjust
    /// Stored names that carry nothing the model reads (buffers, a tied classifier's copy).
    package let ignored: @Sendable (String, HParams) -> Bool
    /// Prefixes some writers put before every name ("transformer." in GPT-2 checkpoints).
    package let stripPrefixes: [String]

    package init(modelTypes: [String], hparams: @escaping @Sendable (HFConfig) throws -> HParams,
                name: @escaping @Sendable (TensorKey) -> String?,
                adjust: @escaping @Sendable (TensorKey, HParams) -> SourceAdjust = { _, _ in .none },
                ignored: @escaping @Sendable (String, HParams) -> Bool = HFMapping.defaultIgnored,
                stripPrefixes: [String] = []) {
        self.modelTypes = modelTypes; self.hparams = hparams; self.name = name; self.adjust = adjust
        self.ignored = ignored; self.stripPrefixes = stripPrefixes
    }

    /// Rotary tables some checkpoints save, and a tied classifier's copy of the embedding.
    package static let defaultIgnored: @Sendable (String, HParams) -> Bool = { name, hp in
        name.hasSuffix(".rotary_emb.inv_freq") || (hp.tiedEmbeddings && name == "lm_head.weight")
    }

    /// The usual layout of a decoder in transformers: `model.embed_tokens`, `model.norm`,
    /// `lm_head`, and `model.layers.N.<name>` for the per-layer roles in `perLayer`.
    package static func decoderNames(_ perLayer: [TensorRole: String], global: [TensorRole: String] = [:])
        -> @Sendable (TensorKey) -> String? {
        let g: [TensorRole: String] = [.tokenEmbedding: "model.embed_tokens", .outputNorm: "model.norm", .output: "lm_head"]
            .merging(global) { $1 }
        return { key in
            if let l = key.layer { return perLayer[key.role].map { "model.layers.\(l).\($0)" } }
            return g[key.role]
        }
    }
}

/// A config.json, read with errors that name the file and the key.
package struct HFConfig {
    package let file: String
    package let json: [String: Any]
    package init(file: String, json: [String: Any]) { self.file = file; self.json = json }

    package var modelType: String? { json["model_type"] as? String }

    private func number(_ keys: [String]) throws -> NSNumber? {
        for k in keys {
            guard let v = json[k], !(v is NSNull) else { continue }
            guard let n = v as? NSNumber else { throw QuantError(file, "config.json \(k) must be a number") }
            return n
        }
        return nil
    }

    /// The first present key of `keys` as an integer (`default` if none; an error if none and no default).
    package func int(_ keys: String..., default def: Int? = nil) throws -> Int {
        if let n = try number(keys) {
            let d = n.doubleValue
            guard d.rounded() == d, abs(d) < 1e12 else { throw QuantError(file, "config.json \(keys[0]) must be an integer, not \(n)") }
            return Int(d)
        }
        if let def { return def }
        throw QuantError(file, "config.json lacks \(keys.joined(separator: " / "))")
    }

    package func intIfPresent(_ keys: String...) throws -> Int? {
        guard let n = try number(keys) else { return nil }
        let d = n.doubleValue
        guard d.rounded() == d, abs(d) < 1e12 else { throw QuantError(file, "config.json \(keys[0]) must be an integer, not \(n)") }
        return Int(d)
    }

    package func double(_ keys: String..., default def: Double? = nil) throws -> Double {
        if let n = try number(keys) { return n.doubleValue }
        if let def { return def }
        throw QuantError(file, "config.json lacks \(keys.joined(separator: " / "))")
    }

    package func doubleIfPresent(_ keys: String...) throws -> Double? { try number(keys)?.doubleValue }

    package func bool(_ key: String, default def: Bool) throws -> Bool {
        guard let v = json[key], !(v is NSNull) else { return def }
        guard let b = v as? Bool else { throw QuantError(file, "config.json \(key) must be true or false") }
        return b
    }

    package func string(_ key: String) throws -> String? {
        guard let v = json[key], !(v is NSNull) else { return nil }
        guard let s = v as? String else { throw QuantError(file, "config.json \(key) must be a string") }
        return s
    }
}

extension TensorSpec {
    /// A decoder's tensors in file order: token_embd [vocab, d], `perLayer` for every block,
    /// output_norm [d], and output [vocab, d] unless the classifier is tied to the embedding.
    package static func decoder(_ hp: HParams, perLayer: [(TensorRole, [Int])]) -> [TensorSpec] {
        var l = [TensorSpec(.tokenEmbedding, [hp.vocabSize, hp.dModel])]
        for i in 0 ..< hp.nLayer { for (role, shape) in perLayer { l.append(TensorSpec(role, layer: i, shape)) } }
        l.append(TensorSpec(.outputNorm, [hp.dModel]))
        if !hp.tiedEmbeddings { l.append(TensorSpec(.output, [hp.vocabSize, hp.dModel])) }
        return l
    }
}

extension HFConfig {
    /// The rotary settings of the layers of `layerType` (nil: the only ones), in either spelling:
    /// transformers 5's `rope_parameters` (one object, or one per layer type:
    /// "full_attention", "sliding_attention") or the older `rope_theta` + `rope_scaling`.
    /// type is "default" when nothing scales the frequencies.
    package func rope(_ layerType: String? = nil, defaultTheta: Double) throws -> (theta: Double, type: String, params: [String: Any]) {
        var params: [String: Any] = [:]
        if let p = json["rope_parameters"], !(p is NSNull) {
            guard let obj = p as? [String: Any] else { throw QuantError(file, "config.json rope_parameters must be an object") }
            if let layerType, let per = obj[layerType] {
                guard let o = per as? [String: Any] else { throw QuantError(file, "config.json rope_parameters.\(layerType) must be an object") }
                params = o
            } else if obj["rope_theta"] != nil || obj["rope_type"] != nil {
                params = obj
            } else if let layerType {
                throw QuantError(file, "config.json rope_parameters has no \(layerType) entry")
            }
        } else {
            if let s = json["rope_scaling"], !(s is NSNull) {
                guard let o = s as? [String: Any] else { throw QuantError(file, "config.json rope_scaling must be an object") }
                params = o
            }
            if let t = json["rope_theta"] { params["rope_theta"] = t }
        }
        let theta: Double
        if let t = params["rope_theta"] {
            guard let n = t as? NSNumber, n.doubleValue > 0, n.doubleValue.isFinite else {
                throw QuantError(file, "config.json rope_theta must be a positive number")
            }
            theta = n.doubleValue
        } else { theta = defaultTheta }
        let type = (params["rope_type"] as? String) ?? (params["type"] as? String) ?? "default"
        return (theta, type, params)
    }

    /// The keys a Llama-like decoder's config.json shares (LlamaConfig's names): layers, heads,
    /// KV heads, hidden and intermediate sizes, positions, vocabulary, RMSNorm epsilon, rotary
    /// base, tied classifier (default `tiedDefault`), and head_dim when it is not hidden / heads.
    package func decoderHParams(epsDefault: Double = 1e-6, tiedDefault: Bool = false, thetaDefault: Double = 10000,
                                layerType: String? = nil) throws -> HParams {
        let d = try int("hidden_size"), nHead = try int("num_attention_heads")
        guard d > 0, nHead > 0 else { throw QuantError(file, "bad hyper-parameters: hidden_size \(d), num_attention_heads \(nHead)") }
        var extra: [String: Double] = [:]
        if let hd = try intIfPresent("head_dim"), nHead > 0, hd != d / nHead { extra["head_dim"] = Double(hd) }
        let rope = try rope(layerType, defaultTheta: thetaDefault)
        return HParams(nLayer: try int("num_hidden_layers"), nHead: nHead, nKVHead: try int("num_key_value_heads", default: nHead),
                       dModel: d, dFF: try int("intermediate_size"), nCtx: try int("max_position_embeddings"),
                       vocabSize: try int("vocab_size"), normEps: Float(try double("rms_norm_eps", default: epsDefault)),
                       ropeTheta: Float(rope.theta), tiedEmbeddings: try bool("tie_word_embeddings", default: tiedDefault), extra: extra)
    }

    /// Refuses what the mapping does not read: an activation other than `act`, a rotary scaling
    /// other than default, biases on the attention or MLP products.
    package func require(activation act: [String], key: String = "hidden_act", layerType: String? = nil,
                         ropeTypes: [String] = ["default"]) throws {
        if let a = try string(key), !act.contains(a) {
            throw QuantError(file, "config.json \(key) '\(a)' is not supported (\(act.joined(separator: ", ")))")
        }
        let r = try rope(layerType, defaultTheta: 1)
        if !ropeTypes.contains(r.type) {
            throw QuantError(file, "config.json rope type '\(r.type)' is not supported for \(modelType ?? "this model")")
        }
        for k in ["attention_bias", "mlp_bias"] where try bool(k, default: false) {
            throw QuantError(file, "config.json \(k) true is not supported for \(modelType ?? "this model")")
        }
    }
}
