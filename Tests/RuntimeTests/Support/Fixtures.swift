import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

/// Shared, lazily built test inputs: converted stories260K files, a synthetic GPT-2
/// checkpoint in Hugging Face layout, and access to the numpy oracles in Tests/reference.
enum Fixtures {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static var tempRoot: URL { TestFiles.tempRoot }

    static var referenceDir: URL { SharedData.packageRoot.appendingPathComponent("Tests/reference") }

    /// Runs a Tests/reference script with python3 and returns its stdout; throws with stderr on failure.
    static func python(_ script: String, _ args: [String]) throws -> String {
        var env = ProcessInfo.processInfo.environment
        env["QUANTLM_SHARED"] = try SharedData.root().path
        let r = try Executables.run(url: URL(fileURLWithPath: "/usr/bin/env"), ["python3", referenceDir.appendingPathComponent(script).path] + args,
                                    environment: env)
        guard r.status == 0 else {
            throw Failure(description: "python3 \(script) \(args.joined(separator: " ")) failed (\(r.status)): \(r.stderr)")
        }
        return r.stdout
    }

    static func json(_ s: String) throws -> [String: Any] {
        let line = s.split(separator: "\n").last.map(String.init) ?? ""
        guard let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw Failure(description: "not a JSON object: \(s.prefix(200))")
        }
        return obj
    }

    static func readF32(_ url: URL) throws -> [Float] {
        let d = try Data(contentsOf: url)
        return d.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    private static let lock = NSLock()
    private static var converted: [String: URL] = [:]

    /// stories260K converted to `type` (cached for the test process).
    static func stories(_ type: QuantType, zstd: Int? = nil) throws -> URL { try Stories.cached(type, zstd: zstd) }

    static let gpt2Dims = (layers: 2, embd: 64, heads: 4, ctx: 128)

    /// A synthetic GPT-2 checkpoint in HF layout (vocab 50257, fixed seed), written by the oracle's script.
    static func gpt2Checkpoint() throws -> URL {
        lock.lock(); defer { lock.unlock() }
        let dir = tempRoot.appendingPathComponent("gpt2-ckpt")
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("config.json").path) { return dir }
        _ = try python("make_gpt2_checkpoint.py", ["--out", dir.path, "--n-layer", "\(gpt2Dims.layers)", "--n-embd", "\(gpt2Dims.embd)",
                                                   "--n-head", "\(gpt2Dims.heads)", "--n-ctx", "\(gpt2Dims.ctx)", "--seed", "0",
                                                   "--prefix", "transformer."])
        return dir
    }

    static func gpt2(_ type: QuantType) throws -> URL {
        let dir = try gpt2Checkpoint()
        let key = "gpt2-\(type.name)"
        lock.lock(); defer { lock.unlock() }
        if let u = converted[key] { return u }
        let ckpt = try Checkpoint.open(dir)
        let payload = try TokenizerPayloads.make(ckpt.tokenizer!, vocabSize: ckpt.hparams.vocabSize)
        let out = tempRoot.appendingPathComponent("\(key).qlm")
        _ = try Converter.convert(ckpt, tokenizer: payload, options: ConvertOptions(policy: QuantPolicy(defaultType: type)), to: out)
        converted[key] = out
        return out
    }

    /// Loads with an f32 KV cache unless told otherwise: these tests compare the model's
    /// arithmetic with f32/f64 references (the runtime's default cache is f16; AttentionTests
    /// bound what f16 and q8_0 caches change).
    static func load(_ url: URL, threads: Int = 2, maxBatch: Int = 64, kvType: KVType = .f32) throws -> LoadedModel {
        try LoadedModel(path: url.path, options: LoadOptions(threads: threads, maxBatch: maxBatch, attention: AttentionConfig(kvType: kvType)))
    }

    /// n greedy tokens after `prompt`: the prompt in one forward, then one token per call.
    static func greedy(_ lm: LoadedModel, _ prompt: [Int32], _ n: Int) throws -> [Int32] {
        var out: [Int32] = [], last: [Float] = []
        try lm.model.forward(prompt, startPos: 0, logitRows: prompt.count - 1 ..< prompt.count) { _, l in last = Array(l) }
        for i in 0 ..< n {
            let next = Int32(last.indices.max { last[$0] < last[$1] }!)
            out.append(next)
            if i < n - 1 { try lm.model.forward([next], startPos: prompt.count + i, logitRows: 0 ..< 1) { _, l in last = Array(l) } }
        }
        return out
    }

    /// Logits of every position, [T][vocab].
    static func logits(_ lm: LoadedModel, _ ids: [Int32]) throws -> [[Float]] {
        var rows: [[Float]] = []
        try lm.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, l in rows.append(Array(l)) }
        return rows
    }
}
