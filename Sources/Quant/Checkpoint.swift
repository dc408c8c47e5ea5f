import CKernels
import Foundation

/// One tensor of a float checkpoint in canonical orientation (a weight is [out, in]: one row
/// per output feature). A reader says what the tensor is (`key`); the architecture names it
/// (`Checkpoint.named(by:)`); until then `name` is the key's GGUF-style name.
public struct SourceTensor {
    public let key: TensorKey
    public internal(set) var name: String
    public let shape: [Int]
    public let dtype: SourceDType
    /// The source's bytes (a view into a memory map that the checkpoint keeps alive).
    public let bytes: UnsafeRawBufferPointer
    /// True when the source stores the matrix as [in, out] (HF GPT-2's Conv1D).
    public let transposed: Bool
    /// "file: key", for messages (a key the reader made up is replaced by the canonical name once named).
    public internal(set) var origin: String

    public init(key: TensorKey, name: String? = nil, shape: [Int], dtype: SourceDType, bytes: UnsafeRawBufferPointer,
                transposed: Bool, origin: String) {
        self.key = key; self.name = name ?? key.description; self.shape = shape; self.dtype = dtype; self.bytes = bytes
        self.transposed = transposed; self.origin = origin
    }

    public var rows: Int { shape.dropLast().reduce(1, *) }
    public var rowLength: Int { shape.last ?? 1 }
    public var elementCount: Int { shape.reduce(1, *) }

    /// Writes the tensor as floats in canonical row-major order into `out` (elementCount floats).
    public func readFloats(into out: UnsafeMutablePointer<Float>) {
        let n = elementCount
        if !transposed {
            convert(bytes.baseAddress!, count: n, into: out)
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
            convert(bytes.baseAddress! + r0 * srcCols * dtype.size, count: (r1 - r0) * srcCols, into: tmp)
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

    private func convert(_ src: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .f32: out.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        case .f16: qlm_f16_to_f32(src.assumingMemoryBound(to: UInt16.self), out, Int64(count))
        case .bf16: qlm_bf16_to_f32(src.assumingMemoryBound(to: UInt16.self), out, Int64(count))
        }
    }
}

/// Where the tokenizer of a checkpoint comes from.
public enum TokenizerSource: Equatable, Sendable {
    /// OpenAI encoder.json + vocab.bpe, or Hugging Face vocab.json + merges.txt.
    case gpt2(vocab: URL, merges: URL)
    /// A llama2.c tokenizer.bin.
    case llama2c(URL)
    /// A vocabulary carried by the checkpoint itself (GGUF `tokenizer.ggml.*`).
    case data(TokenizerData)
}

/// A float checkpoint ready to convert: architecture, hyper-parameters, tensors in canonical form.
public struct Checkpoint {
    /// The architecture's registered name ("gpt2", "llama"): the metadata's `architecture`.
    public var architecture: String
    public var hparams: HParams
    public var tensors: [SourceTensor]
    public var tokenizer: TokenizerSource?
    /// The files read, for provenance (hashed by the converter).
    public var sourceFiles: [URL]
    /// Keeps memory maps alive while `tensors` point into them.
    public var keepAlive: [AnyObject]
    /// True once `named(by:)` gave every tensor its architecture's name (the converter requires it).
    public private(set) var isNamed = false

    public init(architecture: String, hparams: HParams, tensors: [SourceTensor], tokenizer: TokenizerSource?,
                sourceFiles: [URL], keepAlive: [AnyObject]) {
        self.architecture = architecture; self.hparams = hparams; self.tensors = tensors; self.tokenizer = tokenizer
        self.sourceFiles = sourceFiles; self.keepAlive = keepAlive
    }

    /// The same checkpoint with every tensor under the architecture's canonical name.
    public func named(by names: TensorNames) throws -> Checkpoint {
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

    /// Reads a checkpoint (a directory in Hugging Face GPT-2 layout, or a llama2.c .bin file)
    /// with its tensors not yet named: Runtime's `Checkpoint.open` names them by architecture.
    public static func read(_ url: URL, tokenizer: URL? = nil) throws -> Checkpoint {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw QuantError(url, "no such file or directory")
        }
        if isDir.boolValue {
            return try HFGPT2Reader.read(directory: url, tokenizer: tokenizer)
        }
        if url.pathExtension == "safetensors" {
            throw QuantError(url, "give the checkpoint's directory (with config.json), not the .safetensors file")
        }
        return try Llama2cReader.read(url, tokenizer: tokenizer)
    }
}
