import Foundation

/// Reads a Hugging Face GPT-2 checkpoint directory: config.json, model.safetensors (or a
/// sharded model.safetensors.index.json), and vocab.json + merges.txt (or OpenAI's
/// encoder.json + vocab.bpe). Handles the real layout: Conv1D weights stored [in, out],
/// keys with or without a `transformer.` prefix, the attn.bias / attn.masked_bias buffers,
/// and an lm_head.weight tied to wte.
package enum HFGPT2Reader: CheckpointReader {
    /// Any directory (its config.json is checked by `read`).
    package static func canRead(_ url: URL) -> Bool { isDirectory(url) }

    package static func read(_ url: URL, tokenizer: URL?) throws -> Checkpoint {
        try read(directory: url, tokenizer: tokenizer)
    }

    static func hparams(_ configURL: URL) throws -> HParams {
        let file = configURL.path
        guard let data = FileManager.default.contents(atPath: file) else { throw QuantError(file, "missing config.json") }
        guard let cfg = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw QuantError(file, "config.json is not a JSON object")
        }
        if let mt = cfg["model_type"] as? String, mt != "gpt2" {
            throw QuantError(file, "model_type '\(mt)' is not supported (expected gpt2)")
        }
        func int(_ keys: [String], default def: Int? = nil) throws -> Int {
            for k in keys {
                guard let any = cfg[k] else { continue }
                guard let v = any as? NSNumber, v.doubleValue == v.doubleValue.rounded(),
                      abs(v.doubleValue) < 1e15 else {
                    throw QuantError(file, "config.json field \(k) must be an integer, got \(QuantError.shown("\(any)"))")
                }
                return v.intValue
            }
            if let def { return def }
            throw QuantError(file, "config.json lacks \(keys[0])")
        }
        let d = try int(["n_embd", "hidden_size"])
        let eps = (cfg["layer_norm_epsilon"] as? NSNumber)?.floatValue ?? 1e-5
        if let act = cfg["activation_function"] as? String, act != "gelu_new", act != "gelu_pytorch_tanh" {
            throw QuantError(file, "activation_function '\(act)' is not supported (GPT-2 uses gelu_new)")
        }
        let inner = (cfg["n_inner"] as? NSNumber)?.intValue ?? 4 * d
        let nHead = try int(["n_head", "num_attention_heads"])
        let hp = HParams(nLayer: try int(["n_layer", "num_hidden_layers"]), nHead: nHead, nKVHead: nHead,
                         dModel: d, dFF: inner, nCtx: try int(["n_positions", "n_ctx"]),
                         vocabSize: try int(["vocab_size"]), normEps: eps, tiedEmbeddings: true)
        try hp.validate(file: file)
        return hp
    }

    /// The tensors a GPT-2 of these hyper-parameters has: Hugging Face key (without the
    /// `transformer.` prefix), what it is, canonical shape, and whether HF stores it transposed (Conv1D).
    static func expected(_ hp: HParams) -> [(String, TensorKey, [Int], Bool)] {
        let d = hp.dModel, f = hp.dFF
        var list: [(String, TensorKey, [Int], Bool)] = [
            ("wte.weight", TensorKey(.tokenEmbedding), [hp.vocabSize, d], false),
            ("wpe.weight", TensorKey(.positionEmbedding), [hp.nCtx, d], false),
        ]
        for i in 0 ..< hp.nLayer {
            let p = "h.\(i)."
            // (HF module, role, weight shape, Conv1D); each has a weight and a bias.
            let modules: [(String, TensorRole, [Int], Bool)] = [
                ("ln_1", .attnNorm, [d], false), ("attn.c_attn", .attnQKV, [3 * d, d], true),
                ("attn.c_proj", .attnOutput, [d, d], true), ("ln_2", .ffnNorm, [d], false),
                ("mlp.c_fc", .ffnUp, [f, d], true), ("mlp.c_proj", .ffnDown, [d, f], true),
            ]
            for (m, role, shape, conv) in modules {
                list.append((p + m + ".weight", TensorKey(role, layer: i), shape, conv))
                list.append((p + m + ".bias", TensorKey(role, layer: i, bias: true), [shape[0]], false))
            }
        }
        list += [("ln_f.weight", TensorKey(.outputNorm), [d], false), ("ln_f.bias", TensorKey(.outputNorm, bias: true), [d], false)]
        return list
    }

    static func isIgnoredBuffer(_ key: String) -> Bool {
        key.hasSuffix(".attn.bias") || key.hasSuffix(".attn.masked_bias") || key == "lm_head.weight"
    }

    package static func read(directory dir: URL, tokenizer: URL?) throws -> Checkpoint {
        let hp = try hparams(dir.appendingPathComponent("config.json"))
        var files: [SafetensorsFile] = []
        var sources = [dir.appendingPathComponent("config.json")]
        let single = dir.appendingPathComponent("model.safetensors")
        let indexURL = dir.appendingPathComponent("model.safetensors.index.json")
        if FileManager.default.fileExists(atPath: single.path) {
            files.append(try SafetensorsFile(single))
            sources.append(single)
        } else if FileManager.default.fileExists(atPath: indexURL.path) {
            guard let data = FileManager.default.contents(atPath: indexURL.path),
                  let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
                  let map = obj["weight_map"] as? [String: String] else {
                throw QuantError(indexURL, "malformed index: needs a weight_map object")
            }
            for name in Set(map.values).sorted() {
                guard !name.contains("/") else { throw QuantError(indexURL, "shard name '\(name)' must be a file in the same directory") }
                let u = dir.appendingPathComponent(name)
                files.append(try SafetensorsFile(u))
                sources.append(u)
            }
        } else {
            throw QuantError(dir, "no model.safetensors or model.safetensors.index.json in the directory")
        }
        // Gather every key across shards, canonicalized.
        var byName: [String: SafetensorsEntry] = [:]
        for f in files {
            for key in f.order {
                let e = f.entries[key]!
                let canon = key.hasPrefix("transformer.") ? String(key.dropFirst("transformer.".count)) : key
                if isIgnoredBuffer(canon) { continue }
                if byName[canon] != nil { throw QuantError(e.file, "tensor \(key) appears twice") }
                byName[canon] = e
            }
        }
        var tensors: [SourceTensor] = []
        for (name, key, shape, transposed) in expected(hp) {
            guard let e = byName.removeValue(forKey: name) else {
                throw QuantError(dir, "missing tensor \(name) (expected for n_layer \(hp.nLayer))")
            }
            let stored = transposed ? [shape[1], shape[0]] : shape
            guard e.shape == stored else {
                throw QuantError(e.file, "tensor \(e.name): shape \(e.shape), expected \(stored) from config.json")
            }
            tensors.append(SourceTensor(key: key, name: name, shape: shape, dtype: e.dtype, bytes: e.bytes, transposed: transposed,
                                        origin: "\(e.file): \(e.name)"))
        }
        if let extra = byName.keys.sorted().first {
            throw QuantError(byName[extra]!.file, "unknown tensor \(byName[extra]!.name) (not part of a \(hp.nLayer)-layer GPT-2)")
        }
        let tok = try tokenizerFiles(dir, explicit: tokenizer)
        return Checkpoint(architecture: "gpt2", hparams: hp, tensors: tensors, tokenizer: tok,
                          sourceFiles: sources, keepAlive: files)
    }

    static func tokenizerFiles(_ dir: URL, explicit: URL?) throws -> TokenizerSource {
        let base = explicit ?? dir
        let fm = FileManager.default
        for (v, m) in [("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")] {
            let vu = base.appendingPathComponent(v), mu = base.appendingPathComponent(m)
            if fm.fileExists(atPath: vu.path), fm.fileExists(atPath: mu.path) { return .gpt2(vocab: vu, merges: mu) }
        }
        throw QuantError(base, "no GPT-2 tokenizer: expected vocab.json + merges.txt or encoder.json + vocab.bpe (or pass --tokenizer DIR)")
    }
}
