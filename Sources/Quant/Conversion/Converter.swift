import CKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Which type each tensor is stored as. By default 1-D tensors (norms, biases) stay F32 and
/// every matrix gets `defaultType`; `--keep GLOB=TYPE` overrides, first match wins.
package struct QuantPolicy: Sendable {
    package var defaultType: QuantType
    package var overrides: [(glob: String, type: QuantType)]
    /// `--type keep`: each tensor keeps its stored type where QuantLM has it (f32, f16, and
    /// ggml's blocks: q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, the K-quants, copied unchanged; the
    /// types in `keepRegrouped` regrouped into their 8-row layout); other types (bf16, ...)
    /// become `defaultType` (q8_0), 1-D tensors f32. --keep overrides still win.
    package var keepSourceTypes: Bool = false

    /// `--type keep`: the stored types whose matrices (8 rows or more) are written in their 8-row
    /// layout, the same numbers and bytes regrouped (q5_0 -> q5_0x8), because their row-by-row
    /// products are compute-bound. SmolLM2, 1 thread (docs/benchmarks-log.md, "--type keep in
    /// 8-row groups"): q5_0 decode x1.3-1.5; q4_0 decode x1.3-1.5, prefill x1.7-2.0; q8_0
    /// decode x1.06-1.18, prefill x1.34-1.41; q5_1 (q5_1x8) as measured there. iq4_nl (iq4_nlx8;
    /// "iq4_nlx8, 8-row iq4_nl layout"): SmolLM2 IQ4_XS decode / probe 0.45-0.47 -> 0.72-0.87,
    /// prefill x1.5-1.6 on 2 threads. q4_k / q6_k (q4_kx8 / q6_kx8; "q4_kx8 / q6_kx8"): SmolLM2
    /// Q4_K_M's ffn_down rows. q3_k and iq4_xs (q3_kx8, iq4_xsx8; "q3_kx8 and iq4_xsx8"): SmolLM2
    /// Q2_K's and IQ4_XS's ffn_down rows (Q2_K's q3_k took half of its decode's product time as rows).
    /// q5_k (q5_kx8; "K-quants in 8-row groups"): SmolLM2 Q5_K_M's ffn_down rows.
    package static let keepRegrouped: Set<QuantType> = [.q4_0, .q5_0, .q8_0, .q5_1, .iq4_nl, .q4_k, .q6_k, .q3_k, .iq4_xs, .q5_k]

    package init(defaultType: QuantType, overrides: [(glob: String, type: QuantType)] = []) {
        self.defaultType = defaultType
        self.overrides = overrides
    }

    /// The `--type keep` policy (unkept types become `fallback`).
    package static func keep(fallback: QuantType = .q8_0, overrides: [(glob: String, type: QuantType)] = []) -> QuantPolicy {
        var p = QuantPolicy(defaultType: fallback, overrides: overrides)
        p.keepSourceTypes = true
        return p
    }

    /// The type a tensor is stored as, and whether `--type keep` had to convert it (its
    /// stored type has no QuantLM equivalent).
    package func type(for t: SourceTensor) -> (type: QuantType, converted: Bool) {
        for o in overrides where Self.matches(o.glob, t.name) { return (o.type, false) }
        guard keepSourceTypes else { return (type(for: t.name, shape: t.shape), false) }
        if let native = t.nativeType { return (Self.keptLayout(native, rows: t.shape.count >= 2 ? t.rows : 1), false) }
        return (t.shape.count >= 2 ? matrixType(rowLength: t.rowLength) : .f32, true)
    }

    /// The type `--type keep` stores a tensor of `rows` rows of stored type `native` as: its 8-row
    /// layout for the types in `keepRegrouped` when it has a whole group, else `native`.
    package static func keptLayout(_ native: QuantType, rows: Int) -> QuantType {
        guard keepRegrouped.contains(native), let g = native.groupedLayout, rows >= g.rowGroup else { return native }
        return g
    }

    /// The default type of a matrix whose rows have `n` weights: `defaultType`, or its row fallback
    /// when it only takes whole blocks and n is not a multiple of its block (q4_k at 640: q5_0).
    package func matrixType(rowLength n: Int) -> QuantType {
        defaultType.allows(rowLength: n) ? defaultType : defaultType.rowFallback
    }

    /// Whether `t` is stored as the default type's row fallback (no override names it).
    package func tookRowFallback(_ t: SourceTensor) -> Bool {
        !keepSourceTypes && t.shape.count >= 2 && !defaultType.allows(rowLength: t.rowLength)
            && !overrides.contains { Self.matches($0.glob, t.name) }
    }

    /// Parses "GLOB=TYPE" (e.g. "wte.weight=q8_0", "h.*.attn.*=f16").
    package static func parseOverride(_ s: String) throws -> (glob: String, type: QuantType) {
        guard let eq = s.lastIndex(of: "="), eq != s.startIndex else {
            throw QuantError("--keep", "'\(s)' is not GLOB=TYPE (e.g. wte.weight=q8_0)")
        }
        let glob = String(s[..<eq]), name = String(s[s.index(after: eq)...])
        guard let t = QuantType(name: name), QuantType.weightTypes.contains(t) else {
            throw QuantError("--keep", "unknown type '\(name)' in '\(s)'; types: \(QuantType.weightTypes.map(\.name).joined(separator: ", "))")
        }
        return (glob, t)
    }

    package static func matches(_ glob: String, _ name: String) -> Bool {
        fnmatch(glob, name, 0) == 0
    }

    package func type(for name: String, shape: [Int]) -> QuantType {
        for o in overrides where Self.matches(o.glob, name) { return o.type }
        return shape.count >= 2 ? matrixType(rowLength: shape.last ?? 1) : .f32
    }

    /// Overrides that match none of `names` (almost certainly a typo).
    package func unusedOverrides(_ names: [String]) -> [String] {
        overrides.filter { o in !names.contains { Self.matches(o.glob, $0) } }.map(\.glob)
    }
}

/// The tokenizer as it goes into the file: a serialized blob plus its kind and special ids.
package struct TokenizerPayload: Sendable {
    package var kind: String
    package var blob: [UInt8]
    package var bos: Int?
    package var eos: Int?
    package var sourceFiles: [URL]
    /// The model's chat template (Jinja text), kept in the metadata for `run chat`.
    package var chatTemplate: String?

    package init(kind: String, blob: [UInt8], bos: Int?, eos: Int?, sourceFiles: [URL], chatTemplate: String? = nil) {
        self.kind = kind; self.blob = blob; self.bos = bos; self.eos = eos; self.sourceFiles = sourceFiles
        self.chatTemplate = chatTemplate
    }
}

package struct ConvertOptions: Sendable {
    package var policy: QuantPolicy
    /// nil: every tensor raw. A level: tensors of at least `zstdMinBytes` raw bytes are stored
    /// as independent zstd chunks of about `chunkBytes`.
    package var zstdLevel: Int?
    package var chunkBytes: Int
    /// The zstd chunks' byte layout (docs/format.md, QZC2). Default planes (fp16 scale bytes as
    /// byte planes, codes after them): the best fixed filter measured (docs/benchmarks.md, "zstd
    /// layouts"); auto tries every candidate on a tensor's first chunk and keeps the smallest
    /// (slightly smaller, several times slower to compress); `.fixed(.none)` writes QZC1 streams.
    package var zstdFilter: ZstdFilterChoice = .fixed(.planes)
    package var zstdMinBytes: Int
    package var threads: Int
    /// GPTQ calibration: per matrix name, H = Σ x xᵀ of its inputs ([cols, cols], row-major).
    /// Matrices with an entry (and a type GPTQ supports) are quantized with error compensation.
    package var hessians: [String: [Double]]?
    /// Importance-weighted rounding: per matrix name, the weight of each input column's rounding
    /// error (its calibration mean square). Matrices without GPTQ whose type has a weighted
    /// quantizer (QuantType.supportsImportance) use it.
    package var importance: [String: [Float]]?
    /// GPTQ dampening: this fraction of mean(diag H) is added to H's diagonal.
    package var gptqDamp: Double = 0.01
    /// Recorded in the metadata (quantization.calibration) when set.
    package var calibrationNote: String?
    /// Recorded in the metadata (quantization.mix) when set: how a size target chose the types.
    package var mixNote: String?

    package init(policy: QuantPolicy, zstdLevel: Int? = nil, chunkBytes: Int = ZstdChunks.defaultChunkBytes,
                zstdMinBytes: Int = 4096, threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.policy = policy; self.zstdLevel = zstdLevel; self.chunkBytes = chunkBytes
        self.zstdMinBytes = zstdMinBytes; self.threads = threads
    }

    /// Types qlm_gptq_quantize supports (from the C type table).
    package static let gptqTypes: Set<QuantType> = Set(QuantType.allCases.filter(\.supportsGPTQ))
}

package struct ConvertSummary: Codable, Sendable {
    package var output: String
    package var tensors: Int
    package var parameters: Int
    /// Bytes of float tensor data read from the checkpoint.
    package var bytesIn: Int
    /// Size of the written file.
    package var bytesOut: Int
    package var rawTensorBytes: Int
    package var storedTensorBytes: Int
    /// Every stored bit of the numeric tensors (codes, scales, padding), per parameter.
    package var bitsPerWeight: Double
    /// The same, counting zstd-compressed bytes as stored on disk.
    package var storedBitsPerWeight: Double
    /// raw ÷ stored tensor bytes (1.0 without zstd).
    package var compressionRatio: Double
    package var seconds: Double
    package var mbPerSecond: Double
    /// Matrices quantized with GPTQ error compensation (empty without calibration).
    package var gptqTensors: [String] = []
    /// zstd tensors per filter written ("none", "shuffle", ...); empty without zstd.
    package var zstdFilters: [String: Int] = [:]
    /// Tensors whose stored blocks were written unchanged (no dequantize / requantize), or
    /// regrouped unchanged into their 8-row layout (`QuantPolicy.keepRegrouped`).
    package var passthroughTensors: [String] = []
    /// `--type keep`: tensors whose stored type QuantLM lacks, as name -> "from->to".
    package var convertedTensors: [String: String] = [:]
    /// Matrices whose rows the default type does not allow (not whole blocks), as name -> "q4_k->q5_0".
    package var rowFallbackTensors: [String: String] = [:]

    enum CodingKeys: String, CodingKey {
        case output, tensors, parameters, bytesIn = "bytes_in", bytesOut = "bytes_out"
        case rawTensorBytes = "raw_tensor_bytes", storedTensorBytes = "stored_tensor_bytes"
        case bitsPerWeight = "bits_per_weight", storedBitsPerWeight = "stored_bits_per_weight"
        case compressionRatio = "compression_ratio", seconds, mbPerSecond = "mb_per_second"
        case gptqTensors = "gptq_tensors", zstdFilters = "zstd_filters"
        case passthroughTensors = "passthrough_tensors", convertedTensors = "converted_tensors"
        case rowFallbackTensors = "row_fallback_tensors"
    }
}

package enum Converter {
    /// Converts a checkpoint into a .qlm file, atomically (no partial output on failure).
    /// `progress(doneBytes, totalBytes)` is called after each tensor.
    package static func convert(_ ckpt: Checkpoint, tokenizer: TokenizerPayload, options: ConvertOptions,
                               to output: URL, progress: ((Int, Int) -> Void)? = nil) throws -> ConvertSummary {
        let start = Date()
        guard ckpt.isNamed else {
            throw QuantError(output, "internal: the checkpoint's tensors are not named by their architecture (open it with Checkpoint.open)")
        }
        let names = ckpt.tensors.map(\.name)
        if let unused = options.policy.unusedOverrides(names).first {
            throw QuantError("--keep", "pattern '\(unused)' matches no tensor (names look like \(names.prefix(3).joined(separator: ", ")))")
        }
        // Hash the sources on a background thread while converting.
        // The reader may have started on the checkpoint's files already (Checkpoint.hashing, overlapped
        // with reading the tokenizer); the rest are hashed here.
        let hashFiles = ckpt.sourceFiles + tokenizer.sourceFiles
        let early = ckpt.hashing
        let hasher = SourceHasher(hashFiles.filter { early?.covers($0) != true })
        // A conversion that throws still waits for the hasher, so no thread maps the sources
        // after convert returns (a caller may rewrite them next).
        defer { hasher.join() }

        var infos: [TensorInfo] = []
        var converted: [String: String] = [:], fallbacks: [String: String] = [:]
        for t in ckpt.tensors {
            let (type, conv) = options.policy.type(for: t)
            if conv { converted[t.name] = "\(t.sourceTypeName)->\(type.name)" }
            if options.policy.tookRowFallback(t) { fallbacks[t.name] = "\(options.policy.defaultType.name)->\(type.name)" }
            guard type.allows(rowLength: t.rowLength) else {
                throw QuantError("--keep", "\(t.name): \(type) needs rows that are a multiple of \(type.blockSize) weights; its rows have \(t.rowLength)")
            }
            let probe = TensorInfo(name: t.name, type: type, encoding: .raw, shape: t.shape)
            let enc: TensorEncoding = (options.zstdLevel != nil && probe.expectedRawLength >= options.zstdMinBytes) ? .zstd : .raw
            infos.append(TensorInfo(name: t.name, type: type, encoding: enc, shape: t.shape))
        }
        let tokEnc: TensorEncoding = (options.zstdLevel != nil && tokenizer.blob.count >= options.zstdMinBytes) ? .zstd : .raw
        infos.append(TensorInfo(name: "tokenizer", type: .u8, encoding: tokEnc, shape: [max(1, tokenizer.blob.count)]))
        guard !tokenizer.blob.isEmpty else { throw QuantError(output, "tokenizer is empty") }

        let overrides = options.policy.overrides.map { "\($0.glob)=\($0.type.name)" }
        var metadata = ModelMetadata(
            format: "quantlm", formatVersion: Int(QLMFormat.version), architecture: ckpt.architecture,
            hparams: ckpt.hparams,
            tokenizer: TokenizerInfo(kind: tokenizer.kind, tensor: "tokenizer", bos: tokenizer.bos, eos: tokenizer.eos,
                                     chatTemplate: tokenizer.chatTemplate),
            quantization: QuantPolicyInfo(defaultType: options.policy.keepSourceTypes ? "keep" : options.policy.defaultType.name, overrides: overrides,
                                          zstdLevel: options.zstdLevel, zstdChunkBytes: options.zstdLevel == nil ? nil : options.chunkBytes,
                                          zstdFilter: options.zstdLevel == nil ? nil : options.zstdFilter.description,
                                          calibration: options.calibrationNote, mix: options.mixNote),
            provenance: Provenance(sources: hashFiles.map { SourceFileInfo(file: $0.lastPathComponent, bytes: 0, sha256: String(repeating: "0", count: 64)) },
                                   converter: ModelMetadata.converterVersion, created: ISO8601DateFormatter().string(from: start)))
        let writer = try QLMWriter(url: output, metadata: metadata, tensors: infos)
        let totalIn = ckpt.tensors.reduce(0) { $0 + $1.bytes.count }
        var doneIn = 0
        var gptqDone: [String] = []
        var passed: [String] = []

        var floats = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        var floatCap = 1
        var quant = LargeBuffer.allocate(64)
        var quantCap = 64
        defer { floats.deallocate(); LargeBuffer.free(quant) }
        /// The float buffer holds at least n floats (reused across tensors).
        func growFloats(_ n: Int) {
            guard n > floatCap else { return }
            floats.deallocate()
            floats = .allocate(capacity: n)
            floatCap = n
        }
        /// The quantized buffer holds at least n bytes (reused across tensors).
        func growQuant(_ n: Int) {
            guard n > quantCap else { return }
            LargeBuffer.free(quant)
            quant = LargeBuffer.allocate(n)
            quantCap = n
        }

        for (i, t) in ckpt.tensors.enumerated() {
            let info = infos[i]
            // Blocks already in the target type's bytes (ggml q8_0/q4_0/q4_1/q5_0/.../f16/f32) are
            // copied unchanged, still checked for non-finite fp16 fields (and f32 values) first. A
            // row-grouped target (q5_0x8) takes its plain type's blocks, regrouped (qlm_pack_rows).
            let plain = info.type.plainType
            if options.hessians?[t.name] == nil, let same = t.passthrough(to: plain), same.count == info.expectedRawLength {
                if info.type == .f32 {
                    for k in 0 ..< info.rows * info.rowLength where !same.loadUnaligned(fromByteOffset: 4 * k, as: Float.self).isFinite {
                        throw QuantError(t.origin, "row \(k / info.rowLength) holds NaN or infinity; cannot quantize")
                    }
                } else if let r = ConfigValidation.firstNonFiniteRow(TensorInfo(name: t.name, type: plain, encoding: .raw, shape: t.shape), same.baseAddress!) {
                    throw QuantError(t.origin, "row \(r) holds an infinite or NaN fp16 value or scale")
                }
                if plain != info.type {
                    // Regrouped a band of whole row groups at a time (~4 MiB; groups are packed
                    // independently, so the bytes equal one whole-tensor pack) and written as parts:
                    // no whole-tensor copy (Gemma 3's 178 MB q8_0 embedding). zstd tensors whole.
                    let rowBytes = info.rowBytes, g = info.type.rowGroup
                    let band = info.encoding == .raw ? max(g, (4 << 20) / max(1, rowBytes) / g * g) : info.rows
                    growQuant(min(band, info.rows) * rowBytes)
                    func packed(_ r0: Int) throws -> UnsafeRawBufferPointer {
                        let n = min(band, info.rows - r0)
                        quant.copyMemory(from: same.baseAddress! + r0 * rowBytes, byteCount: n * rowBytes)
                        guard qlm_pack_rows(info.type.rawValue, quant, Int64(n), Int64(info.rowLength)) == 0 else {
                            throw QuantError(t.origin, "out of memory while packing rows into \(info.type) groups")
                        }
                        return UnsafeRawBufferPointer(start: quant, count: n * rowBytes)
                    }
                    if info.encoding == .raw {
                        try writer.writeNext { part in
                            for r0 in stride(from: 0, to: info.rows, by: band) { try part(packed(r0)) }
                        }
                    } else {
                        try writer.writeNext(packed(0), zstdLevel: options.zstdLevel ?? 3, chunkBytes: options.chunkBytes, filter: options.zstdFilter)
                    }
                } else {
                    try writer.writeNext(same, zstdLevel: options.zstdLevel ?? 3, chunkBytes: options.chunkBytes, filter: options.zstdFilter)
                }
                passed.append(t.name)
                doneIn += t.bytes.count
                progress?(doneIn, totalIn)
                continue
            }
            let imp = options.importance?[t.name].flatMap { $0.count == info.rowLength ? $0 : nil }
            let gptq = options.hessians?[t.name].flatMap {
                ConvertOptions.gptqTypes.contains(info.type) && $0.count == info.rowLength * info.rowLength ? $0 : nil
            }
            let band = gptq == nil ? BandPlan(t, info, threads: options.threads) : nil
            if let band, info.encoding == .raw {
                // Each round's bands go to the file as they are quantized: no whole-tensor buffer (for
                // Gemma 3's 178 MB q8_0 embedding, zeroing its fresh pages was 15% of the conversion).
                growFloats(band.floatCount(info))
                growQuant(band.quantBytes(info))
                try writer.writeNext { part in
                    var overflow: Int?
                    let bad = try (imp ?? []).withUnsafeBufferPointer { impBuf in
                        try band.run(t, info, floats: floats, quant: quant, imp: imp == nil ? nil : impBuf.baseAddress) { bytes, rows in
                            guard overflow == nil else { return }
                            if let r = ConfigValidation.firstNonFiniteRow(info, bytes.baseAddress!, rows: rows.count) {
                                overflow = rows.lowerBound + r
                            } else {
                                try part(bytes)
                            }
                        }
                    }
                    try Self.check(t, info, bad: bad, overflowRow: overflow)
                }
                doneIn += t.bytes.count
                progress?(doneIn, totalIn)
                continue
            }
            growQuant(info.expectedRawLength)
            var bad: Int64 = -1
            if let band {
                // Read and quantize in row bands, each worker in its own small float buffer.
                growFloats(band.floatCount(info))
                bad = (imp ?? []).withUnsafeBufferPointer { impBuf in
                    band.run(t, info, floats: floats, imp: imp == nil ? nil : impBuf.baseAddress, into: quant)
                }
            } else {
                growFloats(t.elementCount)
                t.readFloats(into: floats)
                if let h = gptq {
                    let rc = h.withUnsafeBufferPointer {
                        qlm_gptq_quantize(info.type.rawValue, floats, Int64(info.rows), Int64(info.rowLength), $0.baseAddress,
                                          options.gptqDamp, quant, Int32(options.threads))
                    }
                    if rc != 0 { throw QuantError(t.origin, "GPTQ failed (non-finite weights, or a Hessian that cannot be factored)") }
                    gptqDone.append(t.name)
                } else {
                    bad = (imp ?? []).withUnsafeBufferPointer {
                        qlm_quantize_rows_imp(info.type.rawValue, floats, imp == nil ? nil : $0.baseAddress, quant, Int64(info.rows),
                                              Int64(info.rowLength), Int32(options.threads))
                    }
                }
            }
            try Self.check(t, info, bad: bad, overflowRow: bad < 0 ? ConfigValidation.firstNonFiniteRow(info, UnsafeRawPointer(quant)) : nil)
            try writer.writeNext(UnsafeRawBufferPointer(start: quant, count: info.expectedRawLength),
                                 zstdLevel: options.zstdLevel ?? 3, chunkBytes: options.chunkBytes, filter: options.zstdFilter)
            doneIn += t.bytes.count
            progress?(doneIn, totalIn)
        }
        try tokenizer.blob.withUnsafeBytes { try writer.writeNext($0, zstdLevel: options.zstdLevel ?? 3, chunkBytes: options.chunkBytes) }

        metadata.provenance.sources = try SourceHasher.digests(of: hashFiles, from: [early, hasher].compactMap { $0 })
        let fileLength = try writer.finish(metadata: metadata)
        let seconds = Date().timeIntervalSince(start)
        let params = ckpt.tensors.reduce(0) { $0 + $1.elementCount }
        let numericRaw = writer.rawBytes - tokenizer.blob.count
        let numericStored = writer.storedBytes - (writer.lastStoredLength)
        return ConvertSummary(
            output: output.path, tensors: infos.count, parameters: params, bytesIn: totalIn, bytesOut: fileLength,
            rawTensorBytes: writer.rawBytes, storedTensorBytes: writer.storedBytes,
            bitsPerWeight: Double(numericRaw * 8) / Double(max(1, params)),
            storedBitsPerWeight: Double(numericStored * 8) / Double(max(1, params)),
            compressionRatio: Double(writer.rawBytes) / Double(max(1, writer.storedBytes)),
            seconds: seconds, mbPerSecond: Double(totalIn) / 1e6 / max(seconds, 1e-9), gptqTensors: gptqDone,
            zstdFilters: writer.filters.values.reduce(into: [:]) { $0[$1.filter.description, default: 0] += 1 },
            passthroughTensors: passed, convertedTensors: converted, rowFallbackTensors: fallbacks)
    }
}

extension Converter {
    /// The error for a quantized tensor: `bad` as the quantizer returns it (a NaN or infinite row,
    /// QLM_QUANTIZE_NOMEM, or -1), then `overflowRow`, a row whose fp16 values or scales came out
    /// infinite.
    static func check(_ t: SourceTensor, _ info: TensorInfo, bad: Int64, overflowRow: Int?) throws {
        if bad == Int64(QLM_QUANTIZE_NOMEM) {
            throw QuantError(t.origin, "out of memory while packing rows into \(info.type) groups")
        }
        if bad >= 0 {
            throw QuantError(t.origin, "row \(bad) holds NaN or infinity; cannot quantize")
        }
        if let r = overflowRow {
            throw QuantError(t.origin, "row \(r) holds values too large for \(info.type) (an fp16 value or scale would be infinite); keep this tensor at f32 with --keep")
        }
    }
}

/// The quantized buffer of a tensor written whole (zstd, GPTQ, a transposed source; a raw tensor
/// read in bands streams through a small one instead): 2 MiB-aligned and marked MADV_HUGEPAGE from 4 MiB up, so its first touch faults
/// 2 MiB pages instead of one fault per 4 KiB page (the faults, not the zeroing, were the cost).
enum LargeBuffer {
    static let huge = 2 << 20

    static func allocate(_ bytes: Int) -> UnsafeMutableRawPointer {
        let big = bytes >= 2 * huge
        let size = big ? (bytes + huge - 1) / huge * huge : max(bytes, 64)
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, big ? huge : 64, size) == 0, let p else { fatalError("out of memory allocating \(size) bytes") }
        #if os(Linux)
        if big { _ = madvise(p, size, MADV_HUGEPAGE) }
        #endif
        return p
    }

    static func free(_ p: UnsafeMutableRawPointer) { Glibc.free(p) }
}

/// How the converter reads and quantizes one tensor in row bands (no whole-tensor f32 copy, and
/// for a raw tensor no whole-tensor quantized copy): a round of `workers` bands (a band is `rows`
/// rows, a multiple of the type's row group and of the source's band multiple, about 2^18
/// floats) is read and quantized by `workers` threads, one band each, into their own parts of the
/// float buffer and of the quantized buffer; while the next round is quantized, the calling
/// thread hands this round's bands, in row order, to `write` (the file writer checksums and
/// writes them). Rows are quantized independently (the C quantizer already splits a tensor
/// between threads at group boundaries), so the bytes equal the whole-tensor path's
/// (ConverterBandTests).
package struct BandPlan {
    package let rows: Int
    package let workers: Int
    package let bands: Int

    /// nil when the tensor must be read whole (a transposed source).
    package init?(_ t: SourceTensor, _ info: TensorInfo, threads: Int, targetFloats: Int = 1 << 18) {
        guard let m = t.bandRowMultiple, info.rows == t.rows, info.rowLength == t.rowLength else { return nil }
        let unit = Self.lcm(m, max(1, info.type.rowGroup))
        let perBand = max(1, targetFloats / max(1, info.rowLength * unit)) * unit
        rows = min(perBand, (t.rows + unit - 1) / unit * unit)
        bands = (t.rows + rows - 1) / rows
        workers = max(1, min(threads, bands))
    }

    private static func lcm(_ a: Int, _ b: Int) -> Int {
        var x = a, y = b
        while y != 0 { (x, y) = (y, x % y) }
        return a / x * b
    }

    private var rounds: Int { (bands + workers - 1) / workers }

    /// Floats the float buffer of `run` holds (a band per worker), and bytes its quantized buffer
    /// holds when it is not the whole tensor (a band per worker, twice when there are two rounds
    /// or more: one round is written while the next is quantized).
    package func floatCount(_ info: TensorInfo) -> Int { workers * rows * info.rowLength }
    package func quantBytes(_ info: TensorInfo) -> Int { (rounds > 1 ? 2 : 1) * workers * rows * info.rowBytes }

    /// Quantizes every band and hands each to `write` with its rows, in row order, on the calling
    /// thread. `quant` holds `quantBytes`, or with `wholeTensor` the whole tensor (rows x row size),
    /// each band quantized in its place. Returns the first row that holds NaN or infinity (no
    /// later band is handed over), else QLM_QUANTIZE_NOMEM (no band after the failed one is handed
    /// over, but every band is still searched for a NaN), else -1.
    package func run(_ t: SourceTensor, _ info: TensorInfo, floats: UnsafeMutablePointer<Float>, quant: UnsafeMutableRawPointer,
                     wholeTensor: Bool = false, imp: UnsafePointer<Float>?,
                     write: (UnsafeRawBufferPointer, Range<Int>) throws -> Void) rethrows -> Int64 {
        let total = t.rows, rl = info.rowLength, rowSize = info.rowBytes, type = info.type.rawValue
        let rows = self.rows, workers = self.workers, bands = self.bands, rounds = self.rounds
        // Round i is bands i * workers ..< (i + 1) * workers; its results and (streaming) its
        // quantized bands go to set i % 2.
        let results = UnsafeMutablePointer<Int64>.allocate(capacity: 2 * workers)
        defer { results.deallocate() }
        func out(_ round: Int, _ w: Int) -> UnsafeMutableRawPointer {
            quant + (wholeTensor ? round * workers + w : (round & 1) * workers + w) * rows * rowSize
        }
        func quantize(_ round: Int) {
            let first = round * workers, n = min(workers, bands - first)
            let body = { (w: Int) in
                let r0 = (first + w) * rows, r1 = min(total, r0 + rows)
                let buf = floats + w * rows * rl
                t.readFloats(rows: r0 ..< r1, into: buf)
                results[(round & 1) * workers + w] = qlm_quantize_rows_imp(type, buf, imp, out(round, w), Int64(r1 - r0), Int64(rl), 1)
            }
            if n == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: n, execute: body) }
        }
        var nomem = false
        quantize(0)
        for round in 0 ..< rounds {
            // The next round is quantized on other threads while this one is handed over (its
            // float parts are free: this round is quantized already).
            let next = DispatchGroup()
            if round + 1 < rounds {
                let later = Unchecked(quantize)
                DispatchQueue.global().async(group: next) { later.value(round + 1) }
            }
            defer { next.wait() }
            let first = round * workers
            for w in 0 ..< min(workers, bands - first) {
                let r0 = (first + w) * rows, r1 = min(total, r0 + rows)
                let rc = results[(round & 1) * workers + w]
                if rc == Int64(QLM_QUANTIZE_NOMEM) { nomem = true; continue }
                if rc >= 0 { return Int64(r0) + rc }
                if !nomem { try write(UnsafeRawBufferPointer(start: out(round, w), count: (r1 - r0) * rowSize), r0 ..< r1) }
            }
        }
        return nomem ? Int64(QLM_QUANTIZE_NOMEM) : -1
    }

    /// The next round's work as the other thread takes it: its buffers and the results it
    /// writes are this call's, touched by no one else until `run` waits for the round.
    private struct Unchecked<T>: @unchecked Sendable {
        let value: T
        init(_ value: T) { self.value = value }
    }

    /// The same into one whole-tensor buffer (rows x row size): for zstd tensors, compressed whole.
    package func run(_ t: SourceTensor, _ info: TensorInfo, floats: UnsafeMutablePointer<Float>, imp: UnsafePointer<Float>?,
                     into whole: UnsafeMutableRawPointer) -> Int64 {
        run(t, info, floats: floats, quant: whole, wholeTensor: true, imp: imp) { _, _ in }
    }
}
