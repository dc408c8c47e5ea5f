import Foundation

/// Reads a Hugging Face checkpoint directory of any architecture whose model file declares an
/// `HFMapping`: config.json (its `model_type` picks the mapping, which turns the config into
/// HParams and names the tensors), model.safetensors or a sharded model.safetensors.index.json
/// (f32, f16, bf16), and the tokenizer (tokenizer.json, or GPT-2's vocab.json + merges.txt /
/// encoder.json + vocab.bpe). Every tensor the architecture has must be there with the shape
/// the config gives; a tensor it does not have is an error, not ignored (except what the
/// mapping says carries nothing: rotary tables, a tied classifier's copy, GPT-2's mask buffers).
package enum HFReader: CheckpointReader {
    /// Any directory (its config.json is checked by `read`).
    package static func canRead(_ url: URL) -> Bool { isDirectory(url) }

    package static func read(_ url: URL, tokenizer: URL?, formats: [ArchitectureFormats]) throws -> Checkpoint {
        let configURL = url.appendingPathComponent("config.json")
        let config = try readConfig(configURL)
        let supported = formats.filter { $0.hf != nil }
        guard let mt = config.modelType else {
            throw QuantError(configURL, "config.json lacks model_type (supported: \(supported.flatMap { $0.hf!.modelTypes }.joined(separator: ", ")))")
        }
        guard let arch = supported.first(where: { $0.hf!.modelTypes.contains(mt) }), let hf = arch.hf else {
            throw QuantError(configURL, "model_type '\(mt)' is not supported (supported: \(supported.flatMap { $0.hf!.modelTypes }.joined(separator: ", ")))")
        }
        let hp = try hf.hparams(config)
        try hp.validate(file: configURL.path)
        let (files, shardURLs) = try safetensors(url)
        // Hash config.json and the shards while the tensors are checked and tokenizer.json is parsed.
        let hashing = SourceHasher([configURL] + shardURLs, maps: files.map(\.map))
        // Every stored tensor, under its name without the writer's prefix.
        var byName: [String: SafetensorsEntry] = [:]
        for f in files {
            for key in f.order {
                let e = f.entries[key]!
                var canon = key
                for p in hf.stripPrefixes where canon.hasPrefix(p) { canon = String(canon.dropFirst(p.count)); break }
                if hf.ignored(canon, hp) { continue }
                if let other = byName[canon] { throw QuantError(e.file, "tensor \(key) appears twice (also in \(other.file))") }
                byName[canon] = e
            }
        }
        var tensors: [SourceTensor] = []
        for spec in arch.tensors(hp) {
            guard let base = hf.name(spec.key) else {
                throw QuantError(url, "internal: \(arch.name) names no Hugging Face tensor for \(spec.key)")
            }
            let name = base + (spec.key.bias ? ".bias" : ".weight")
            guard let e = byName.removeValue(forKey: name) else {
                throw QuantError(url, "missing tensor \(name) (expected for a \(hp.nLayer)-layer \(mt))")
            }
            let adjust = hf.adjust(spec.key, hp)
            let stored = adjust == .transposed ? spec.shape.reversed() : spec.shape
            guard e.shape == stored else {
                throw QuantError(e.file, "tensor \(e.name): shape \(e.shape), expected \(stored) from config.json")
            }
            tensors.append(SourceTensor(key: spec.key, name: name, shape: spec.shape, payload: .floats(e.dtype), bytes: e.bytes,
                                        adjust: adjust, origin: "\(e.file): \(e.name)"))
        }
        if let extra = byName.keys.sorted().first {
            throw QuantError(byName[extra]!.file, "unknown tensor \(byName[extra]!.name) (not part of a \(hp.nLayer)-layer \(mt))")
        }
        let tok = try tokenizerSource(url, explicit: tokenizer)
        var ckpt = Checkpoint(architecture: arch.name, hparams: hp, tensors: tensors, tokenizer: tok.source,
                              sourceFiles: [configURL] + shardURLs + tok.files, keepAlive: files)
        ckpt.hashing = hashing
        return ckpt
    }

    static func readConfig(_ url: URL) throws -> HFConfig {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw QuantError(url, "missing config.json (a Hugging Face checkpoint directory has one)")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw QuantError(url, "config.json is not a JSON object")
        }
        return HFConfig(file: url.path, json: json)
    }

    /// model.safetensors, or the shards a model.safetensors.index.json names (each checked to
    /// hold the tensors the index says it does).
    static func safetensors(_ dir: URL) throws -> ([SafetensorsFile], [URL]) {
        let single = dir.appendingPathComponent("model.safetensors")
        let indexURL = dir.appendingPathComponent("model.safetensors.index.json")
        let fm = FileManager.default
        if fm.fileExists(atPath: single.path) { return ([try SafetensorsFile(single)], [single]) }
        guard fm.fileExists(atPath: indexURL.path) else {
            throw QuantError(dir, "no model.safetensors or model.safetensors.index.json in the directory")
        }
        guard let data = fm.contents(atPath: indexURL.path),
              let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let rawMap = obj["weight_map"] as? [String: Any] else {
            throw QuantError(indexURL, "malformed index: needs a weight_map object")
        }
        var map: [String: String] = [:]
        for (k, v) in rawMap {
            guard let s = v as? String else { throw QuantError(indexURL, "weight_map entry \(k) must name a shard file") }
            map[k] = s
        }
        var files: [SafetensorsFile] = [], urls: [URL] = []
        for name in Set(map.values).sorted() {
            guard !name.contains("/"), name != "..", !name.isEmpty else {
                throw QuantError(indexURL, "shard name '\(name)' must be a file in the same directory")
            }
            let u = dir.appendingPathComponent(name)
            guard fm.fileExists(atPath: u.path) else {
                throw QuantError(indexURL, "names shard \(name), which is not in the directory")
            }
            let f = try SafetensorsFile(u)
            for (tensor, shard) in map where shard == name && f.entries[tensor] == nil {
                throw QuantError(indexURL, "says tensor \(tensor) is in \(name), which lacks it")
            }
            files.append(f)
            urls.append(u)
        }
        guard !files.isEmpty else { throw QuantError(indexURL, "weight_map names no shards") }
        return (files, urls)
    }

    /// The tokenizer of a directory (or of `explicit`, a directory given with --tokenizer).
    static func tokenizerSource(_ dir: URL, explicit: URL?) throws -> (source: TokenizerSource, files: [URL]) {
        let base = explicit ?? dir
        let fm = FileManager.default
        if fm.fileExists(atPath: base.appendingPathComponent("tokenizer.json").path) {
            let t = try HFTokenizerJSON.read(directory: base)
            return (.data(t.data), t.files)
        }
        for (v, m) in [("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")] {
            let vu = base.appendingPathComponent(v), mu = base.appendingPathComponent(m)
            // (the converter records these two through the tokenizer payload)
            if fm.fileExists(atPath: vu.path), fm.fileExists(atPath: mu.path) { return (.gpt2(vocab: vu, merges: mu), []) }
        }
        throw QuantError(base, "no tokenizer: expected tokenizer.json, vocab.json + merges.txt or encoder.json + vocab.bpe (or pass --tokenizer DIR)")
    }
}
