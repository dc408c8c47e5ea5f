// libFuzzer harness: a .qlm file as `run` opens it (QLMFile: header, metadata, table; verify
// and load of every tensor; then, for one input in 8, LoadedModel: tokenizer, architecture,
// layer/scale checks, the model's construction). Half of the inputs get their checksums recomputed first (the input's
// last byte is odd), so mutations reach the metadata and table parsers past the CRC checks.
import CKernels
import Foundation
import Quant
import Runtime

private let path = Fuzz.scratch("model.qlm")

private func fixChecksums(_ b: inout [UInt8]) {
    guard b.count >= 64 else { return }
    func rd(_ o: Int, _ n: Int) -> Int? {
        guard o >= 0, o + n <= b.count else { return nil }
        var v: UInt64 = 0
        for i in (0 ..< n).reversed() { v = v << 8 | UInt64(b[o + i]) }
        return v < UInt64(b.count) + 1 ? Int(v) : nil
    }
    func put32(_ o: Int, _ v: UInt32) { for i in 0 ..< 4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
    func crc(_ lo: Int, _ n: Int) -> UInt32 { b.withUnsafeBytes { qlm_crc32c(0, $0.baseAddress! + lo, n) } }
    if let metaLen = rd(24, 4), 64 + metaLen <= b.count { put32(28, crc(64, metaLen)) }
    guard let tableOff = rd(32, 8), let tableLen = rd(40, 4), tableOff + tableLen <= b.count else { return }
    for i in 0 ..< tableLen / 128 {
        let r = tableOff + 128 * i
        if let off = rd(r + 104, 8), let stored = rd(r + 112, 8), off + stored <= b.count, r + 72 <= b.count {
            put32(r + 68, stored == 0 ? 0 : crc(off, stored))
        }
    }
    put32(44, crc(tableOff, tableLen))
}

/// `FUZZ_SEED_FROM=checkpoint FUZZ_SEED_TOKENIZER=tok.bin FUZZ_SEED_TO=out.qlm`: convert a seed
/// (q8_0) with the harness's own converter, then exit (run.sh makes the corpus's first file so).
@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> CInt {
    let env = ProcessInfo.processInfo.environment
    if let from = env["FUZZ_SEED_FROM"], let to = env["FUZZ_SEED_TO"] {
        do {
            let ck = try Checkpoint.open(URL(fileURLWithPath: from), tokenizer: env["FUZZ_SEED_TOKENIZER"].map { URL(fileURLWithPath: $0) })
            let payload = try TokenizerPayloads.make(ck.tokenizer!, vocabSize: ck.hparams.vocabSize)
            _ = try Converter.convert(ck, tokenizer: payload, options: ConvertOptions(policy: QuantPolicy(defaultType: .q8_0), threads: 1),
                                      to: URL(fileURLWithPath: to))
            exit(0)
        } catch {
            FileHandle.standardError.write(Data("seed conversion failed: \(error)\n".utf8))
            exit(1)
        }
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var bytes = [UInt8](UnsafeBufferPointer(start: data, count: size))
    if size > 0, bytes[size - 1] & 1 == 1 { fixChecksums(&bytes) }
    bytes.withUnsafeBytes { Fuzz.write($0, to: path) }
    Fuzz.expectOneLineError(naming: path) {
        let f = try QLMFile(URL(fileURLWithPath: path))
        // Caps that keep each input cheap without skipping a check: a zstd tensor may claim
        // (and a small frame really expand to) gigabytes, so tensors past 16 MiB raw are
        // verified but not decompressed, and the model load runs only when the whole file's
        // raw tensors are under that (every raw tensor fits in the input, so this only skips
        // decompression bombs).
        let cap = 16 << 20
        for t in f.tensors {
            try? f.verify(t)
            if t.rawLength <= cap, let d = try? f.load(t.name) { withExtendedLifetime(d) {} }
        }
        // A whole model load (thread pool, plan, tokenizer) costs ~100x the file checks: one
        // input in 8 (by length) goes that far.
        if size % 8 == 0, f.rawTensorBytes <= cap {
            _ = try LoadedModel(path: path, options: LoadOptions(threads: 1, maxBatch: 2, kvPositions: 8))
        }
    }
    return 0
}
