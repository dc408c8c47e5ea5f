import ArgumentParser
import CKernels
import Dispatch
import Foundation
import Quant

/// `convert zstd-bench FILE.qlm`: compresses a raw .qlm file's tensors with each zstd chunk
/// filter at each level, as `convert --zstd` would (same chunking, same 4096-byte minimum),
/// and prints on-disk vs in-memory bits per weight, compress/decompress speed and the filter
/// undo speed (docs/benchmarks.md, "zstd layouts"; scripts/bench/zstd_layouts.sh).
struct ZstdBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zstd-bench",
        abstract: "Measure zstd chunk filters (on-disk bits/weight, MB/s) on a raw .qlm file."
    )

    @Argument(help: "A .qlm file written without --zstd.")
    var file: String

    @Option(name: .long, help: "Comma-separated zstd levels.")
    var levels: String = "3,19"

    @Option(name: .long, help: "Comma-separated filters (none, shuffle, split, delta, nibble, auto); default: every candidate of the file's matrix type, and auto.")
    var filters: String?

    @Option(name: .long, help: "Bytes of raw rows per chunk.")
    var zstdChunk: Int = ZstdChunks.defaultChunkBytes

    @Option(name: .long, help: "Label for the first column (default: the file's matrix type).")
    var label: String?

    func run() throws {
        do {
            let f = try QLMFile(URL(fileURLWithPath: file))
            let md = f.metadata
            let type = QuantType(name: md.quantization.defaultType) ?? .q8_0
            let tokName = md.tokenizer.tensor
            let numeric = f.tensors.filter { $0.name != tokName }
            guard numeric.allSatisfy({ $0.encoding == .raw }) else { throw QuantError(file, "zstd-bench wants a file written without --zstd") }
            let params = numeric.reduce(0) { $0 + $1.elementCount }
            let rawBytes = numeric.reduce(0) { $0 + $1.rawLength }
            let eligible = numeric.filter { $0.rawLength >= 4096 }
            let eligibleRaw = eligible.reduce(0) { $0 + $1.rawLength }
            let choices: [ZstdFilterChoice] = try (filters.map { $0.split(separator: ",").map(String.init) }
                ?? (ZstdFilterSpec.candidates(type: type).map(\.description) + ["auto"])).map { name in
                    guard let c = ZstdFilterChoice(name: name) else { throw QuantError("--filters", "unknown filter \(name)") }
                    return c
                }
            let lv = levels.split(separator: ",").compactMap { Int($0) }
            let inMem = Double(rawBytes * 8) / Double(params)
            print("| \(label ?? type.name) | filter | level | in-memory bits/w | on-disk bits/w | saved | compress MB/s | decompress MB/s | filter undo GB/s |")
            print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
            for level in lv {
                for choice in choices {
                    var stored = rawBytes - eligibleRaw
                    var cSec = 0.0, dSec = 0.0, uSec = 0.0, undone = 0
                    var picked: [String: Int] = [:]
                    for t in eligible {
                        let data = f.stored(t)
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        let spec = try choice.resolve(data, type: t.type, rows: t.rows, rowLength: t.rowLength,
                                                      level: level, chunkBytes: zstdChunk)
                        let blob = try ZstdChunks.compress(data, rows: t.rows, rowBytes: t.rowBytes, level: level,
                                                           chunkBytes: zstdChunk, filter: spec, rowGroup: t.type.rowGroup)
                        let t1 = DispatchTime.now().uptimeNanoseconds
                        picked[spec.filter.description, default: 0] += 1
                        stored += blob.count
                        var zt = t
                        zt.encoding = .zstd
                        zt.storedLength = blob.count
                        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: t.rawLength, alignment: 64)
                        defer { out.deallocate() }
                        let t2 = DispatchTime.now().uptimeNanoseconds
                        try blob.withUnsafeBytes { try ZstdChunks.decompressAll(zt, stored: $0, into: out, file: file) }
                        let t3 = DispatchTime.now().uptimeNanoseconds
                        guard memcmp(out.baseAddress!, data.baseAddress!, t.rawLength) == 0 else {
                            throw QuantError(file, "tensor \(t.name): \(spec) round trip differs")
                        }
                        if spec.filter != .none {
                            // The undo alone (single thread), on the whole tensor as one chunk.
                            let tmp = UnsafeMutableRawBufferPointer.allocate(byteCount: t.rawLength, alignment: 64)
                            defer { tmp.deallocate() }
                            let u8 = { (p: UnsafeMutableRawBufferPointer) in p.baseAddress!.assumingMemoryBound(to: UInt8.self) }
                            _ = qlm_zf_encode(Int32(spec.filter.rawValue), data.baseAddress!.assumingMemoryBound(to: UInt8.self), u8(tmp), t.rawLength, spec.record, spec.head)
                            let t4 = DispatchTime.now().uptimeNanoseconds
                            _ = qlm_zf_decode(Int32(spec.filter.rawValue), UnsafePointer(u8(tmp)), u8(out), t.rawLength, spec.record, spec.head)
                            uSec += Double(DispatchTime.now().uptimeNanoseconds - t4) / 1e9
                            undone += t.rawLength
                        }
                        cSec += Double(t1 - t0) / 1e9
                        dSec += Double(t3 - t2) / 1e9
                    }
                    let onDisk = Double(stored * 8) / Double(params)
                    let name: String
                    if case .auto = choice {
                        name = "auto (" + picked.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"
                    } else { name = choice.description }
                    print(String(format: "| %@ | %@ | %d | %.3f | %.3f | %.1f%% | %.0f | %.0f | %@ |", label ?? type.name, name, level, inMem, onDisk,
                                 100 * (1 - onDisk / inMem), Double(eligibleRaw) / 1e6 / cSec, Double(eligibleRaw) / 1e6 / dSec,
                                 undone > 0 ? String(format: "%.1f", Double(undone) / 1e9 / uSec) : "–"))
                    fflush(stdout)
                }
            }
        }
    }
}
