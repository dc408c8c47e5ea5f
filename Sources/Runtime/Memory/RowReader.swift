import CKernels
import Foundation
import Quant

/// An embedding table that is not kept in memory: each lookup reads the one row it needs with
/// pread (raw files) or decompresses the one zstd chunk holding it (the chunk index makes any
/// chunk readable on its own), keeping the last chunk in case the next token's row is in it.
/// Used on the model's thread only; nothing is allocated per lookup.
package final class RowReader {
    package let name: String
    package let type: QuantType
    package let rows: Int
    package let cols: Int
    private let info: TensorInfo
    private let reader: TensorReader
    private let chunks: TensorReader.Chunks?
    private let buffer: UnsafeMutableRawPointer
    /// The chunk (zstd) or first row (raw) the buffer holds, -1 for none.
    private var held = -1
    /// Bytes read from the file so far (stored: compressed for zstd) and decoded.
    package private(set) var storedBytesRead = 0
    package private(set) var rawBytesRead = 0
    /// Bytes this lookup holds (its buffer and the zstd staging).
    package let bufferBytes: Int

    init(file: QLMFile, info t: TensorInfo) throws {
        name = t.name
        info = t
        type = t.type
        rows = t.rows
        cols = t.rowLength
        reader = try TensorReader(path: file.path)
        if t.encoding == .zstd {
            let index = try reader.chunks(of: t)
            chunks = index
            reader.reserveStaging(index.stagingNeed)
            let bytes = index.rowsPerChunk * index.rowBytes
            buffer = .allocate(byteCount: max(bytes, 64), alignment: 64)
            bufferBytes = MemoryPlan.aligned(bytes) + MemoryPlan.aligned(reader.stagingBytes)
        } else {
            chunks = nil
            let bytes = MemoryPlan.rawRowUnit(t) * t.rowBytes
            buffer = .allocate(byteCount: max(bytes, 64), alignment: 64)
            bufferBytes = MemoryPlan.aligned(bytes)
        }
    }

    deinit { buffer.deallocate() }

    /// Row `r` dequantized into `out` (cols floats). Raw files: one pread of the row, or of its
    /// 8-row group for q4_0x8 (a group's rows are interleaved). zstd: the chunk holding it (chunks
    /// start at group boundaries, so a chunk decodes as a tensor of its own rows).
    package func read(_ r: Int, into out: UnsafeMutablePointer<Float>) throws {
        precondition(r >= 0 && r < rows)
        let rowBytes = info.rowBytes
        if let chunks {
            let c = r / chunks.rowsPerChunk
            let lo = c * chunks.rowsPerChunk, hi = min(rows, lo + chunks.rowsPerChunk)
            if c != held {
                held = -1
                storedBytesRead += try reader.readChunk(c, of: info, index: chunks, into: buffer)
                rawBytesRead += (hi - lo) * rowBytes
                held = c
            }
            qlm_get_row(type.rawValue, buffer, Int64(hi - lo), Int64(cols), Int64(r - lo), out)
            return
        }
        // the unit holding r: its row group, or r alone (rows past the last whole group are plain)
        let g = type.rowGroup
        let lo = r < rows / g * g ? r / g * g : r, hi = r < rows / g * g ? lo + g : r + 1
        if lo != held {
            held = -1
            try reader.readFully(buffer, count: (hi - lo) * rowBytes, offset: info.offset + lo * rowBytes)
            storedBytesRead += (hi - lo) * rowBytes
            rawBytesRead += (hi - lo) * rowBytes
            held = lo
        }
        qlm_get_row(type.rawValue, buffer, Int64(hi - lo), Int64(cols), Int64(r - lo), out)
    }
}

/// Where a model's input embedding rows come from: a resident matrix or a per-token row reader.
package enum EmbeddingTable {
    case resident(Matrix)
    case streamed(RowReader)
}

extension Compute {
    /// Looks up one embedding row (any stored type) as floats, wherever the table is.
    @inline(__always)
    package func embedding(_ e: EmbeddingTable, row: Int, into out: UnsafeMutablePointer<Float>) throws {
        switch e {
        case .resident(let m): embedding(m, row: row, into: out)
        case .streamed(let r): try r.read(row, into: out)
        }
    }
}

/// The classifier as the forward pass multiplies it: one resident matrix, or row chunks that
/// stream through the layer buffers (chunk k is acquired with `WeightStore.acquireOutput(chunk:)`).
package struct OutputMatrix {
    package let chunks: [(rows: Range<Int>, matrix: Matrix)]
    package let streamed: Bool
    package var matrices: [Matrix] { chunks.map(\.matrix) }
}
