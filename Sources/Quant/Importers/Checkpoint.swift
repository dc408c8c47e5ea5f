import CKernels
import Foundation

/// What a source tensor's bytes hold.
package enum SourcePayload: Equatable, Sendable {
    /// Plain floats (f32, f16, bf16), row-major.
    case floats(SourceDType)
    /// ggml blocks of a known type (GGUF), each row a whole number of blocks.
    case ggml(GGMLType)
}

/// One tensor of a checkpoint in canonical orientation (a weight is [out, in]: one row per
/// output feature). A reader says what the tensor is (`key`); the architecture names it
/// (`Checkpoint.named(by:)`); until then `name` is the key's GGUF-style name.
package struct SourceTensor {
    package let key: TensorKey
    package internal(set) var name: String
    package let shape: [Int]
    package let payload: SourcePayload
    /// The source's bytes (a view into a memory map that the checkpoint keeps alive).
    package let bytes: UnsafeRawBufferPointer
    /// What reading does to the stored numbers (transposed: the source is [in, out], HF GPT-2's
    /// Conv1D; addOne; halvesToPairs). Floats only.
    package let adjust: SourceAdjust
    package var transposed: Bool { adjust == .transposed }
    /// "file: key", for messages (a key the reader made up is replaced by the canonical name once named).
    package internal(set) var origin: String

    package init(key: TensorKey, name: String? = nil, shape: [Int], payload: SourcePayload, bytes: UnsafeRawBufferPointer,
                adjust: SourceAdjust, origin: String) {
        if case .ggml = payload { precondition(adjust == .none, "ggml blocks are read as stored") }
        self.key = key; self.name = name ?? key.description; self.shape = shape; self.payload = payload; self.bytes = bytes
        self.adjust = adjust; self.origin = origin
    }

    package init(key: TensorKey, name: String? = nil, shape: [Int], payload: SourcePayload, bytes: UnsafeRawBufferPointer,
                transposed: Bool, origin: String) {
        self.init(key: key, name: name, shape: shape, payload: payload, bytes: bytes, adjust: transposed ? .transposed : .none, origin: origin)
    }

    package init(key: TensorKey, name: String? = nil, shape: [Int], dtype: SourceDType, bytes: UnsafeRawBufferPointer,
                transposed: Bool, origin: String) {
        self.init(key: key, name: name, shape: shape, payload: .floats(dtype), bytes: bytes, transposed: transposed, origin: origin)
    }

    /// The stored bytes, unchanged, when they already are `type`'s bytes for this tensor:
    /// ggml F32 / F16 / Q8_0 / Q4_0 / Q4_1 blocks (the same layouts as QuantLM's, rows whole
    /// blocks), untransposed. nil otherwise (the tensor must be read as floats and quantized).
    package func passthrough(to type: QuantType) -> UnsafeRawBufferPointer? {
        guard adjust == .none, case .ggml(let g) = payload, g.identicalQuantType == type,
              rowLength % g.blockSize == 0, type.rowSize(rowLength) == g.rowBytes(rowLength),
              bytes.count == rows * type.rowSize(rowLength) else { return nil }
        return bytes
    }

    /// The QuantLM type that holds this tensor's numbers exactly as stored, if there is one
    /// (`convert --type keep`).
    package var nativeType: QuantType? {
        switch payload {
        case .floats(.f32): return .f32
        case .floats(.f16): return .f16
        case .floats(.bf16): return nil
        case .ggml(let g): return g.identicalQuantType
        }
    }

    /// The stored type's name ("f32", "bf16", "q4_K", ...), for reports.
    package var sourceTypeName: String {
        switch payload {
        case .floats(let d): return d.rawValue.lowercased()
        case .ggml(let g): return g.name
        }
    }

    package var rows: Int { shape.dropLast().reduce(1, *) }
    package var rowLength: Int { shape.last ?? 1 }
    package var elementCount: Int { shape.reduce(1, *) }

    /// Runs `body` over `0 ..< count` in contiguous pieces of at least 2^20 elements, on every
    /// core: a large tensor's conversion (and the first touch of the caller's fresh output pages)
    /// was one thread while the other cores idled (issue 26: Gemma 3's 168M-weight embedding).
    /// Pieces are disjoint, so the result is the same as one pass.
    private static func inPieces(_ count: Int, _ body: (Range<Int>) -> Void) {
        guard count >> 20 > 1 else { body(0 ..< count); return }
        let pieces = min(cores, count >> 20)
        guard pieces > 1 else { body(0 ..< count); return }
        DispatchQueue.concurrentPerform(iterations: pieces) { k in body(count * k / pieces ..< count * (k + 1) / pieces) }
    }

    private static let cores = ProcessInfo.processInfo.activeProcessorCount

    /// Writes the tensor as floats in canonical row-major order into `out` (elementCount floats).
    package func readFloats(into out: UnsafeMutablePointer<Float>) {
        let n = elementCount
        if case .ggml(let g) = payload {
            // Row by row (rows are whole blocks; the reader checked the sizes).
            let rl = rowLength, rb = g.rowBytes(rl)
            let src = bytes.baseAddress!
            var bad = -1
            let lock = NSLock()
            Self.inPieces(rows * max(rl, 1)) { range in
                let r0 = range.lowerBound / max(rl, 1), r1 = range.upperBound / max(rl, 1)
                for r in r0 ..< r1 where qlm_ggml_dequantize_row(g.rawValue, src + r * rb, out + r * rl, Int64(rl)) != 0 {
                    lock.lock(); bad = r; lock.unlock()
                }
            }
            precondition(bad < 0, "\(origin): ggml \(g.name) row of \(rl) not dequantizable")
            return
        }
        guard case .floats(let dtype) = payload else { return }
        let src = bytes.baseAddress!
        func convertAll() {
            Self.inPieces(n) { r in convert(src + r.lowerBound * dtype.size, dtype, count: r.count, into: out + r.lowerBound) }
        }
        switch adjust {
        case .transposed: break
        case .none:
            convertAll()
            return
        case .addOne:
            Self.inPieces(n) { r in
                convert(src + r.lowerBound * dtype.size, dtype, count: r.count, into: out + r.lowerBound)
                for i in r { out[i] += 1 }
            }
            return
        case .halvesToPairs(let hd):
            convertAll()
            // Within each head of hd rows: new row 2i + j = old row j * hd/2 + i.
            let cols = rowLength, half = hd / 2
            let tmp = UnsafeMutablePointer<Float>.allocate(capacity: hd * cols)
            defer { tmp.deallocate() }
            for h in 0 ..< rows / hd {
                let head = out + h * hd * cols
                tmp.update(from: head, count: hd * cols)
                for i in 0 ..< half {
                    for j in 0 ..< 2 { (head + (2 * i + j) * cols).update(from: tmp + (j * half + i) * cols, count: cols) }
                }
            }
            return
        }
        // The source is [in, out] = [rowLength, rows]; canonical is [rows, rowLength].
        let srcRows = rowLength, srcCols = rows
        let tile = 64
        let tmp = UnsafeMutablePointer<Float>.allocate(capacity: tile * srcCols)
        defer { tmp.deallocate() }
        var r0 = 0
        while r0 < srcRows {
            let r1 = min(srcRows, r0 + tile)
            // Convert a band of source rows to floats, then scatter it as columns of `out`.
            convert(bytes.baseAddress! + r0 * srcCols * dtype.size, dtype, count: (r1 - r0) * srcCols, into: tmp)
            var c0 = 0
            while c0 < srcCols {
                let c1 = min(srcCols, c0 + tile)
                for c in c0 ..< c1 {
                    let dst = out + c * srcRows
                    for r in r0 ..< r1 { dst[r] = tmp[(r - r0) * srcCols + c] }
                }
                c0 = c1
            }
            r0 = r1
        }
    }

    /// The row count a band passed to `readFloats(rows:into:)` must start on (and be a multiple
    /// of, except the tensor's last band): 1, a head's rows for `halvesToPairs`; nil when the
    /// tensor is only read whole (a transposed source: a canonical row is a source column).
    package var bandRowMultiple: Int? {
        switch adjust {
        case .transposed: return nil
        case .none, .addOne: return 1
        case .halvesToPairs(let hd): return hd > 0 && rows % hd == 0 ? hd : nil
        }
    }

    /// Writes canonical rows `band` as floats into `out` ((band.count) × rowLength floats), on the
    /// calling thread: the same numbers `readFloats(into:)` puts at those rows. The converter reads
    /// a tensor in bands into a small buffer it then quantizes, instead of a whole f32 copy of
    /// the tensor (Gemma 3's 262,144 × 640 embedding: 671 MB of fresh pages to fault and zero).
    /// `band` starts on a multiple of `bandRowMultiple` (precondition).
    package func readFloats(rows band: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let rl = rowLength
        guard let m = bandRowMultiple, band.lowerBound % m == 0, band.upperBound <= rows else {
            preconditionFailure("\(origin): rows \(band) cannot be read as a band")
        }
        if case .ggml(let g) = payload {
            let rb = g.rowBytes(rl), src = bytes.baseAddress!
            for r in band where qlm_ggml_dequantize_row(g.rawValue, src + r * rb, out + (r - band.lowerBound) * rl, Int64(rl)) != 0 {
                preconditionFailure("\(origin): ggml \(g.name) row of \(rl) not dequantizable")
            }
            return
        }
        guard case .floats(let dtype) = payload else { return }
        let src = bytes.baseAddress!, rowBytes = rl * dtype.size
        switch adjust {
        case .none:
            convert(src + band.lowerBound * rowBytes, dtype, count: band.count * rl, into: out)
        case .addOne:
            convert(src + band.lowerBound * rowBytes, dtype, count: band.count * rl, into: out)
            for i in 0 ..< band.count * rl { out[i] += 1 }
        case .halvesToPairs(let hd):
            // Within each head of hd rows: new row 2i + j = old row j * hd/2 + i.
            let half = hd / 2
            for r in band {
                let head = r / hd * hd, k = r - head
                convert(src + (head + (k % 2) * half + k / 2) * rowBytes, dtype, count: rl, into: out + (r - band.lowerBound) * rl)
            }
        case .transposed:
            preconditionFailure("unreachable: transposed tensors have no bands")
        }
    }

    private func convert(_ src: UnsafeRawPointer, _ dtype: SourceDType, count: Int, into out: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .f32: out.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        case .f16: qlm_f16_to_f32(src.assumingMemoryBound(to: UInt16.self), out, Int64(count))
        case .bf16: qlm_bf16_to_f32(src.assumingMemoryBound(to: UInt16.self), out, Int64(count))
        }
    }
}

/// Where the tokenizer of a checkpoint comes from.
package enum TokenizerSource: Equatable, Sendable {
    /// OpenAI encoder.json + vocab.bpe, or Hugging Face vocab.json + merges.txt.
    case gpt2(vocab: URL, merges: URL)
    /// A llama2.c tokenizer.bin.
    case llama2c(URL)
    /// A vocabulary carried by the checkpoint itself (GGUF `tokenizer.ggml.*`).
    case data(TokenizerData)
}

/// A float checkpoint ready to convert: architecture, hyper-parameters, tensors in canonical form.
package struct Checkpoint {
    /// The architecture's registered name ("gpt2", "llama"): the metadata's `architecture`.
    package var architecture: String
    package var hparams: HParams
    package var tensors: [SourceTensor]
    package var tokenizer: TokenizerSource?
    /// The files read, for provenance (hashed by the converter).
    package var sourceFiles: [URL]
    /// Keeps memory maps alive while `tensors` point into them.
    package var keepAlive: [AnyObject]
    /// True once `named(by:)` gave every tensor its architecture's name (the converter requires it).
    package private(set) var isNamed = false
    /// The sources' SHA-256, started by the reader as soon as it knows the files (HFReader: before
    /// it parses tokenizer.json), so hashing overlaps reading; the converter hashes what it does
    /// not cover. nil: the converter hashes every source.
    package var hashing: SourceHasher?

    package init(architecture: String, hparams: HParams, tensors: [SourceTensor], tokenizer: TokenizerSource?,
                sourceFiles: [URL], keepAlive: [AnyObject]) {
        self.architecture = architecture; self.hparams = hparams; self.tensors = tensors; self.tokenizer = tokenizer
        self.sourceFiles = sourceFiles; self.keepAlive = keepAlive
    }

    /// The same checkpoint with every tensor under the architecture's canonical name.
    package func named(by names: TensorNames) throws -> Checkpoint {
        var c = self
        for i in c.tensors.indices {
            guard let n = names.name(c.tensors[i].key) else {
                throw QuantError(c.tensors[i].origin, "tensor \(c.tensors[i].key) has no place in a \(architecture) model")
            }
            let unnamed = c.tensors[i].name
            c.tensors[i].name = n
            if c.tensors[i].origin.hasSuffix(": " + unnamed) {
                c.tensors[i].origin = String(c.tensors[i].origin.dropLast(unnamed.count)) + n
            }
        }
        c.isNamed = true
        return c
    }

    /// Every input format, asked in order; the first whose `canRead` says yes reads the input
    /// (by directory or magic; llama2.c's .bin has none, so it comes last and needs a plausible
    /// header). Adding a format is one reader file and one line here.
    package static let readers: [any CheckpointReader.Type] = [
        HFReader.self,
        GGUFReader.self,
        Llama2cReader.self,
    ]

    /// Reads a checkpoint (a Hugging Face directory, a GGUF file or a llama2.c .bin) with its
    /// tensors not yet named: Runtime's `Checkpoint.open` names them by architecture. `formats`
    /// are the architectures' own descriptions of how they appear in each format (the registry's).
    package static func read(_ url: URL, tokenizer: URL? = nil, formats: [ArchitectureFormats]) throws -> Checkpoint {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw QuantError(url, "no such file or directory")
        }
        if url.pathExtension == "safetensors" {
            throw QuantError(url, "give the checkpoint's directory (with config.json), not the .safetensors file")
        }
        if Llama2cReader.prefix(url, 8) == QLMFormat.magic {
            throw QuantError(url, "is already a QuantLM .qlm model: convert reads GGUF, llama2.c .bin or HF directories (run the .qlm with `run`)")
        }
        guard let reader = readers.first(where: { $0.canRead(url) }) else {
            throw QuantError(url, "unrecognised format (expected GGUF, .qlm, llama2.c .bin or an HF directory)")
        }
        return try reader.read(url, tokenizer: tokenizer, formats: formats)
    }
}

/// One input format. `canRead` is a cheap look (directory or not, magic bytes); `read` does
/// the checking and throws QuantErrors naming the file.
package protocol CheckpointReader {
    static func canRead(_ url: URL) -> Bool
    static func read(_ url: URL, tokenizer: URL?, formats: [ArchitectureFormats]) throws -> Checkpoint
}

extension CheckpointReader {
    static func isDirectory(_ url: URL) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) && isDir.boolValue
    }

    /// The first `n` bytes of a regular file (fewer if it is shorter; empty if unreadable).
    static func prefix(_ url: URL, _ n: Int) -> [UInt8] {
        guard !isDirectory(url), let h = try? FileHandle(forReadingFrom: url) else { return [] }
        defer { try? h.close() }
        return [UInt8]((try? h.read(upToCount: n)) ?? Data())
    }
}
