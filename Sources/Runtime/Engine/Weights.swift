import CKernels
import Foundation
import Quant

/// A weight matrix [rows, cols] in its stored type, as the kernels read it.
package struct Matrix {
    package let name: String
    package let type: QuantType
    package let rows: Int
    package let cols: Int
    package let data: UnsafeRawPointer

    package var rowBytes: Int { type.rowSize(cols) }
    package var byteCount: Int { rows * rowBytes }

    package init(name: String, type: QuantType, rows: Int, cols: Int, data: UnsafeRawPointer) {
        self.name = name; self.type = type; self.rows = rows; self.cols = cols; self.data = data
    }
}

/// Binds a model's tensors from a .qlm file: raw tensors are used in place in the memory
/// map (no copy); zstd tensors are decompressed into owned buffers; 1-D tensors that were
/// stored quantized (an unusual --keep) are dequantized once into owned float buffers.
/// Every tensor's shape is checked against what the architecture expects.
package final class WeightStore {
    package let file: QLMFile
    private var kept: [TensorData] = []
    private var ownedFloats: [UnsafeMutablePointer<Float>] = []
    /// Bytes held in owned buffers (decompressed or dequantized), i.e. not file-backed.
    package private(set) var ownedBytes = 0
    /// Bytes of weights read from the file map in place.
    package private(set) var mappedBytes = 0

    /// Under a memory budget: the plan, the pread reader for resident tensors (dropped once
    /// the model is bound) and the streamer for the streamed layers' matrices.
    package let plan: MemoryPlan?
    private var reader: TensorReader?
    private var ownedRaw: [UnsafeMutableRawPointer] = []
    let streamer: LayerStreamer?
    /// The input embedding's per-token row reader, when the plan streams it.
    private(set) var rowReader: RowReader?
    /// Top-k-only logits (`LoadOptions.screen`): what was asked, and the screen once built from
    /// the classifier by the first logits call (`screen(for:)`).
    package var screenRequest: (k: Int, verify: Bool, threads: Int)?
    package private(set) var logitScreen: LogitScreen?

    /// The screen for `classifier`, built on first use; nil when none was asked for.
    func screen(for output: OutputMatrix) throws -> LogitScreen? {
        guard let req = screenRequest else { return nil }
        if let s = logitScreen { return s }
        guard !output.streamed, output.chunks.count == 1 else {
            throw ModelError("--screen needs the classifier resident; under this --memory-budget it streams from the file")
        }
        let m = output.chunks[0].matrix
        // Building reads every classifier row; afterwards only the K candidates' rows (and, when
        // tied, the embedding lookups) are touched: each chunk's mapped pages are given back as
        // soon as it is read, and the K candidate rows are then read with pread (`LogitScreen.rowSource`),
        // not through the map, so the screen replaces the classifier in the resident set instead
        // of adding to it. Verify reads every row through the map each token: nothing is released.
        var release: ((Range<Int>) -> Void)?
        if !req.verify, let base = file.map.bytes.baseAddress {
            let off = m.data - UnsafeRawPointer(base), map = file.map
            if off >= 0, off + m.byteCount <= map.bytes.count {
                release = { rows in map.advise(off + rows.lowerBound * m.rowBytes ..< off + rows.upperBound * m.rowBytes, willNeed: false) }
            }
        }
        let s = try LogitScreen(of: m, k: req.k, verify: req.verify, threads: req.threads, file: file.path, release: release)
        if release != nil {
            let base = file.map.bytes.baseAddress!, off = m.data - UnsafeRawPointer(base), rs = m.rowBytes
            let reader = try TensorReader(path: file.path)
            s.rowSource = { first, rows, dst in try reader.readFully(dst, count: rows * rs, offset: off + first * rs) }
        }
        logitScreen = s
        return s
    }

    package init(file: QLMFile) {
        self.file = file
        plan = nil
        streamer = nil
    }

    /// Budgeted: nothing is read through the map. Resident tensors are read (raw) or
    /// decompressed (zstd) with pread into owned buffers; the plan's streamed layers get
    /// buffers that a background thread fills layer by layer (`acquire` / `release`).
    package init(file: QLMFile, plan: MemoryPlan) throws {
        self.file = file
        self.plan = plan
        reader = try TensorReader(path: file.path)
        streamer = plan.streams ? try LayerStreamer(file: file, plan: plan) : nil
    }

    deinit {
        ownedFloats.forEach { $0.deallocate() }
        ownedRaw.forEach { $0.deallocate() }
    }

    /// Binding is over: free the resident reader's staging and start the layer loader.
    package func finishLoading() {
        reader = nil
        streamer?.start()
    }

    /// Brackets the computation of one layer; no-ops unless the layer is streamed.
    @inline(__always) package func acquire(layer: Int) throws { if let streamer { try streamer.acquire(layer: layer) } }
    @inline(__always) package func release(layer: Int) { streamer?.release(layer: layer) }

    /// Brackets the product with one chunk of a streamed classifier.
    @inline(__always) package func acquireOutput(chunk k: Int) throws { try streamer!.acquireOutput(chunk: k) }
    @inline(__always) package func releaseOutput(chunk k: Int) { streamer!.releaseOutput(chunk: k) }

    /// Stored / raw bytes of streamed layers and classifier chunks handed to the model so far.
    package var streamedStoredBytes: Int { streamer?.streamedStoredBytes ?? 0 }
    package var streamedRawBytes: Int { streamer?.streamedRawBytes ?? 0 }
    /// Streamed items (layers, classifier chunks) read with O_DIRECT so far.
    package var directItemsRead: Int { streamer?.directItemsRead ?? 0 }
    /// Seconds the layer loader has spent reading so far.
    package var streamReadSeconds: Double { streamer?.readSeconds ?? 0 }
    /// The disk's GB/s for the layer loader's own read pattern, between passes (`LayerStreamer.probeDisk`).
    package func probeDisk(bytes: Int) throws -> (gbPerSecond: Double, chunkBytes: Int, pieces: Int)? {
        try streamer?.probeDisk(bytes: bytes)
    }
    /// Stored / raw bytes the embedding row lookups read so far.
    package var embeddingStoredBytes: Int { rowReader?.storedBytesRead ?? 0 }
    package var embeddingRawBytes: Int { rowReader?.rawBytesRead ?? 0 }

    private func info(_ name: String, shape: [Int]) throws -> TensorInfo {
        let info = try file.info(name)
        guard info.shape == shape else {
            throw QuantError(file.path, "tensor \(name) has shape \(info.shape), expected \(shape) for this model's hyper-parameters")
        }
        return info
    }

    /// The tensor's raw bytes, wherever this store keeps them.
    private func load(_ name: String, shape: [Int]) throws -> (info: TensorInfo, bytes: UnsafeRawPointer) {
        let info = try info(name, shape: shape)
        if let streamer, let p = streamer.pointer(for: name) { return (info, p) }
        if let reader {
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(info.rawLength, 1), alignment: 64)
            ownedRaw.append(p)
            try reader.read(info, chunks: nil, into: p)
            ownedBytes += info.rawLength
            return (info, UnsafeRawPointer(p))
        }
        let t = try file.load(name)
        if t.isOwned { ownedBytes += t.bytes.count } else { mappedBytes += t.bytes.count }
        kept.append(t)
        return (info, t.bytes.baseAddress!)
    }

    package func matrix(_ name: String, rows: Int, cols: Int) throws -> Matrix {
        let t = try load(name, shape: [rows, cols])
        guard QuantType.weightTypes.contains(t.info.type) else {
            throw QuantError(file.path, "tensor \(name) has type \(t.info.type), which is not a weight type")
        }
        return Matrix(name: name, type: t.info.type, rows: rows, cols: cols, data: t.bytes)
    }

    /// The input embedding table: resident, or read a row per token when the plan streams it.
    package func embeddingTable(_ name: String, rows: Int, cols: Int) throws -> EmbeddingTable {
        if let plan, plan.embeddingStreams, plan.embeddingTensor == name {
            let t = try info(name, shape: [rows, cols])
            guard QuantType.weightTypes.contains(t.type) else {
                throw QuantError(file.path, "tensor \(name) has type \(t.type), which is not a weight type")
            }
            let r = try RowReader(file: file, info: t)
            rowReader = r
            return .streamed(r)
        }
        return .resident(try matrix(name, rows: rows, cols: cols))
    }

    /// The classifier: resident (`shared`, a resident embedding table of the same name, is
    /// reused), or row chunks bound to the layer buffers when the plan streams it.
    package func outputMatrix(_ name: String, rows: Int, cols: Int, shared: EmbeddingTable? = nil) throws -> OutputMatrix {
        if let plan, plan.outputStreams, plan.outputTensor == name, let streamer {
            let t = try info(name, shape: [rows, cols])
            guard QuantType.weightTypes.contains(t.type) else {
                throw QuantError(file.path, "tensor \(name) has type \(t.type), which is not a weight type")
            }
            return OutputMatrix(chunks: streamer.outputChunks.map {
                ($0.rows, Matrix(name: name, type: t.type, rows: $0.rows.count, cols: cols, data: $0.pointer))
            }, streamed: true)
        }
        if case .resident(let m)? = shared, m.name == name { return OutputMatrix(chunks: [(0 ..< rows, m)], streamed: false) }
        return OutputMatrix(chunks: [(0 ..< rows, try matrix(name, rows: rows, cols: cols))], streamed: false)
    }

    package func vector(_ name: String, count: Int) throws -> UnsafePointer<Float> {
        let t = try load(name, shape: [count])
        if t.info.type == .f32 { return t.bytes.assumingMemoryBound(to: Float.self) }
        guard QuantType.weightTypes.contains(t.info.type) else {
            throw QuantError(file.path, "tensor \(name) has type \(t.info.type), which is not a weight type")
        }
        let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
        qlm_dequantize_row(t.info.type.rawValue, t.bytes, p, Int64(count))
        ownedFloats.append(p)
        ownedBytes += count * 4
        return UnsafePointer(p)
    }
}
