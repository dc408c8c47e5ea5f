// libFuzzer harness: the Hugging Face directory readers (issue 26's fuzz test of the config /
// index / tokenizer.json readers). The first byte picks which file the rest is; the other files
// of the directory are real ones, symlinked from the committed tiny checkpoints of every
// architecture (Tests/Fixtures/arch, FUZZ_HF_FIXTURES) and two shards of the llama3 one
// (FUZZ_HF_SHARDS, made by seeds.py):
//   0  config.json (the second byte picks the fixture whose tensors and tokenizer sit beside it):
//      Checkpoint.open, i.e. the model_type's config mapping, its validation, every tensor's
//      name and shape against the config, the tokenizer
//   1  model.safetensors.index.json beside the two shards: the weight map, the shards it names
//      and what they hold
//   2  tokenizer.json alone: HFTokenizerJSON.read; if it reads, the tokenizer is built from it,
//      serialized, loaded back and used on a fixed text
//   3  tokenizer_config.json, then after the first 0xFF generation_config.json, beside a real
//      tokenizer.json
// Every error must be one line naming a file of the directory (Fuzz.expectOneLineError).
import Foundation
import Quant
import Runtime

private let env = ProcessInfo.processInfo.environment
private let fixtures: [URL] = {
    guard let root = env["FUZZ_HF_FIXTURES"] else { fatalError("set FUZZ_HF_FIXTURES to Tests/Fixtures/arch") }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
    let dirs = names.sorted().map { URL(fileURLWithPath: root).appendingPathComponent($0) }
        .filter { FileManager.default.fileExists(atPath: $0.appendingPathComponent("config.json").path) }
    guard !dirs.isEmpty else { fatalError("no fixture directories in \(root)") }
    return dirs
}()
private let shards: URL = {
    guard let s = env["FUZZ_HF_SHARDS"] else { fatalError("set FUZZ_HF_SHARDS (seeds.py hf-shards DIR)") }
    return URL(fileURLWithPath: s)
}()
private let llama = fixtures.first { $0.lastPathComponent == "llama3" } ?? fixtures[0]

/// A scratch directory per mode (and fixture) whose files are symlinks except the fuzzed ones.
private func directory(_ name: String, linking files: [(URL, String)]) -> URL {
    let dir = URL(fileURLWithPath: Fuzz.scratch("hf-\(name)"))
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    for (src, dst) in files {
        let d = dir.appendingPathComponent(dst)
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: d.path)) == nil {
            try? FileManager.default.createSymbolicLink(at: d, withDestinationURL: src)
        }
    }
    return dir
}

private func links(_ fixture: URL, except: Set<String>) -> [(URL, String)] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: fixture.path)) ?? []
    return names.filter { !except.contains($0) && !$0.hasSuffix(".gguf") }.map { (fixture.appendingPathComponent($0), $0) }
}

private let configDirs = fixtures.map { directory("config-\($0.lastPathComponent)", linking: links($0, except: ["config.json"])) }
private let indexDir = directory("index", linking: links(llama, except: ["model.safetensors"]) + ["model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors"].map { (shards.appendingPathComponent($0), $0) })
private let tokenizerDir = directory("tokenizer", linking: [])
private let tokenizerConfigDir = directory("tokenizer-config", linking: [(llama.appendingPathComponent("tokenizer.json"), "tokenizer.json")])

private func put(_ bytes: ArraySlice<UInt8>, _ dir: URL, _ name: String) {
    bytes.withUnsafeBytes { Fuzz.write($0, to: dir.appendingPathComponent(name).path) }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> CInt {
    _ = (configDirs, indexDir, tokenizerDir, tokenizerConfigDir)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let b = UnsafeBufferPointer(start: data, count: size)
    switch b[0] % 4 {
    case 0:
        let dir = configDirs[Int(b[1]) % configDirs.count]
        put(ArraySlice(b[2...]), dir, "config.json")
        Fuzz.expectOneLineError(naming: dir.path) { _ = try Checkpoint.open(dir) }
    case 1:
        put(ArraySlice(b[1...]), indexDir, "model.safetensors.index.json")
        Fuzz.expectOneLineError(naming: indexDir.path) { _ = try Checkpoint.open(indexDir) }
    case 2:
        put(ArraySlice(b[1...]), tokenizerDir, "tokenizer.json")
        Fuzz.expectOneLineError(naming: tokenizerDir.path) {
            let d = try HFTokenizerJSON.read(directory: tokenizerDir).data
            let p = try TokenizerPayloads.make(.data(d), vocabSize: d.tokens.count)
            let t = try TokenizerPayloads.load(kind: p.kind, blob: p.blob, vocabSize: d.tokens.count, source: tokenizerDir.path,
                                               file: tokenizerDir.path)
            _ = t.decode(t.encode("Once upon a time, \u{1F600} 123 <s>\n\t"))
        }
    default:
        let rest = b[1...]
        let cut = rest.firstIndex(of: 0xFF) ?? rest.endIndex
        put(ArraySlice(rest[..<cut]), tokenizerConfigDir, "tokenizer_config.json")
        if cut < rest.endIndex {
            put(ArraySlice(rest[(cut + 1)...]), tokenizerConfigDir, "generation_config.json")
        } else {
            unlink(tokenizerConfigDir.appendingPathComponent("generation_config.json").path)
        }
        Fuzz.expectOneLineError(naming: tokenizerConfigDir.path) { _ = try HFTokenizerJSON.read(directory: tokenizerConfigDir) }
    }
    return 0
}
