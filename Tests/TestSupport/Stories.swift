import Foundation
import Quant
import Runtime

/// stories260K (the no-download real model in ../shared): its paths, and the one helper every
/// test target uses to convert it with the library API.
package enum Stories {
    package static func model() throws -> URL { try SharedData.path("models/stories260K/stories260K.bin") }
    package static func tokenizer() throws -> URL { try SharedData.path("models/stories260K/tok512.bin") }
    package static let sha256 = "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696"

    /// The tokenizer payload exactly as `convert` builds it (tokenizer.bin verbatim, BOS 1, EOS 2).
    package static func payload(_ tok: URL) throws -> TokenizerPayload {
        let ckpt = try Checkpoint.open(try model(), tokenizer: tok)
        return try TokenizerPayloads.make(ckpt.tokenizer!, vocabSize: ckpt.hparams.vocabSize)
    }

    /// Converts stories260K to `out`.
    @discardableResult
    package static func convert(to out: URL, type: QuantType, zstd: Int? = nil, chunkBytes: Int = ZstdChunks.defaultChunkBytes,
                                threads: Int = 2) throws -> ConvertSummary {
        let tok = try tokenizer()
        let ckpt = try Checkpoint.open(try model(), tokenizer: tok)
        let payload = try TokenizerPayloads.make(ckpt.tokenizer!, vocabSize: ckpt.hparams.vocabSize)
        let opts = ConvertOptions(policy: QuantPolicy(defaultType: type), zstdLevel: zstd, chunkBytes: chunkBytes, threads: threads)
        return try Converter.convert(ckpt, tokenizer: payload, options: opts, to: out)
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var made: [String: URL] = [:]

    /// Converted once per test process (in `TestFiles.tempRoot`) and shared.
    package static func cached(_ type: QuantType, zstd: Int? = nil, chunkBytes: Int = ZstdChunks.defaultChunkBytes) throws -> URL {
        let key = "stories-\(type.name)-z\(zstd ?? 0)-c\(chunkBytes)"
        lock.lock(); defer { lock.unlock() }
        if let u = made[key] { return u }
        let out = TestFiles.tempRoot.appendingPathComponent("\(key).qlm")
        try convert(to: out, type: type, zstd: zstd, chunkBytes: chunkBytes)
        made[key] = out
        return out
    }
}

package enum TestFiles {
    /// One scratch folder per test process (a suite's conversions come to ~2.4 GB), removed when
    /// the process exits; folders left by test processes that died (killed, crashed) are removed
    /// by the next one.
    package static let tempRoot: URL = {
        let fm = FileManager.default, tmp = fm.temporaryDirectory
        for name in (try? fm.contentsOfDirectory(atPath: tmp.path)) ?? [] where name.hasPrefix("quantlm-tests-") {
            guard let pid = Int32(name.dropFirst("quantlm-tests-".count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { try? fm.removeItem(at: tmp.appendingPathComponent(name)) }
        }
        let u = tmp.appendingPathComponent("quantlm-tests-\(getpid())")
        try? fm.createDirectory(at: u, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: TestFiles.tempRoot) }
        return u
    }()
}
