import CZstd
import Dispatch
import Foundation

/// Chunked zstd encoding of one tensor: its rows are cut into chunks of whole rows, each chunk
/// one independent zstd frame (with zstd's own content checksum), plus an index, so any row
/// range can be decompressed without the rest. Layout in docs/format.md ("zstd encoding").
public struct ZstdChunkIndex: Sendable {
    public var rowsPerChunk: Int
    public var rowBytes: Int
    /// (offset from the tensor's start, compressed length) per chunk.
    public var chunks: [(offset: Int, length: Int)]

    public func rowRange(ofChunk c: Int, rows: Int) -> Range<Int> {
        let lo = c * rowsPerChunk
        return lo ..< min(rows, lo + rowsPerChunk)
    }
}

public enum ZstdChunks {
    public static let defaultChunkBytes = 1 << 20

    /// Compresses `rows` rows of `rowBytes` bytes each. Chunks are compressed in parallel.
    public static func compress(_ data: UnsafeRawBufferPointer, rows: Int, rowBytes: Int, level: Int,
                                chunkBytes: Int = defaultChunkBytes) throws -> [UInt8] {
        precondition(data.count == rows * rowBytes)
        let rowsPerChunk = max(1, chunkBytes / max(1, rowBytes))
        let nChunks = max(1, (rows + rowsPerChunk - 1) / rowsPerChunk)
        var frames = [[UInt8]](repeating: [], count: nChunks)
        var failure: String?
        let lock = NSLock()
        frames.withUnsafeMutableBufferPointer { out in
            let outBase = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: nChunks) { c in
                let lo = c * rowsPerChunk * rowBytes
                let hi = min(rows, (c + 1) * rowsPerChunk) * rowBytes
                let src = UnsafeRawBufferPointer(rebasing: data[lo ..< hi])
                let bound = ZSTD_compressBound(src.count)
                var frame = [UInt8](repeating: 0, count: bound)
                guard let cctx = ZSTD_createCCtx() else { lock.withLock { failure = "ZSTD_createCCtx failed" }; return }
                defer { ZSTD_freeCCtx(cctx) }
                ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, Int32(level))
                ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
                let n = frame.withUnsafeMutableBytes { dst in
                    ZSTD_compress2(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
                }
                if ZSTD_isError(n) != 0 {
                    let msg = String(cString: ZSTD_getErrorName(n))
                    lock.withLock { failure = "zstd compression failed: \(msg)" }
                    return
                }
                frame.removeSubrange(n...)
                (outBase + c).pointee = frame
            }
        }
        if let failure { throw QuantError("<zstd>", failure) }
        var w = ByteWriter()
        w.raw(QLMFormat.chunkMagic)
        w.u32(UInt32(nChunks))
        w.u64(UInt64(rowsPerChunk))
        w.u64(UInt64(rowBytes))
        var offset = QLMFormat.chunkHeaderSize + nChunks * QLMFormat.chunkEntrySize
        for f in frames {
            w.u64(UInt64(offset))
            w.u64(UInt64(f.count))
            offset += f.count
        }
        for f in frames { w.raw(f) }
        return w.bytes
    }

    /// Reads and validates the chunk index at the start of a zstd tensor's stored bytes.
    public static func index(of tensor: TensorInfo, stored: UnsafeRawBufferPointer, file: String) throws -> ZstdChunkIndex {
        var r = ByteReader(stored, file: file)
        let magic = try r.bytes(4, "tensor \(tensor.name) chunk magic")
        guard Array(magic) == QLMFormat.chunkMagic else { throw QuantError(file, "tensor \(tensor.name): bad zstd chunk magic") }
        let n = Int(try r.u32("tensor \(tensor.name) chunk count"))
        let rpc = try checkedInt(try r.u64("rows per chunk"), file, "tensor \(tensor.name) rows per chunk")
        let rowBytes = try checkedInt(try r.u64("row bytes"), file, "tensor \(tensor.name) row bytes")
        guard rowBytes == tensor.rowBytes, rpc >= 1, n == (tensor.rows + rpc - 1) / rpc else {
            throw QuantError(file, "tensor \(tensor.name): zstd chunk index does not match its shape")
        }
        let tableEnd = QLMFormat.chunkHeaderSize + n * QLMFormat.chunkEntrySize
        guard tableEnd <= stored.count else { throw QuantError(file, "tensor \(tensor.name): zstd chunk index is truncated") }
        var chunks: [(Int, Int)] = []
        chunks.reserveCapacity(n)
        for c in 0 ..< n {
            let off = try checkedInt(try r.u64("chunk offset"), file, "tensor \(tensor.name) chunk \(c) offset")
            let len = try checkedInt(try r.u64("chunk length"), file, "tensor \(tensor.name) chunk \(c) length")
            guard off >= tableEnd, off <= stored.count, len <= stored.count - off else {
                throw QuantError(file, "tensor \(tensor.name): zstd chunk \(c) lies outside the tensor's stored bytes")
            }
            chunks.append((off, len))
        }
        return ZstdChunkIndex(rowsPerChunk: rpc, rowBytes: rowBytes, chunks: chunks)
    }

    /// Decompresses chunk `c` into `dst` (exactly the chunk's rows × rowBytes bytes).
    public static func decompress(chunk c: Int, of tensor: TensorInfo, index: ZstdChunkIndex,
                                  stored: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer,
                                  dctx: OpaquePointer, file: String) throws {
        let rows = index.rowRange(ofChunk: c, rows: tensor.rows)
        let expected = rows.count * index.rowBytes
        guard dst.count == expected else { throw QuantError(file, "tensor \(tensor.name): chunk \(c) buffer size mismatch") }
        let (off, len) = index.chunks[c]
        let src = UnsafeRawBufferPointer(rebasing: stored[off ..< off + len])
        let n = ZSTD_decompressDCtx(dctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
        if ZSTD_isError(n) != 0 {
            throw QuantError(file, "tensor \(tensor.name): zstd chunk \(c) is corrupt (\(String(cString: ZSTD_getErrorName(n))))")
        }
        guard n == expected else {
            throw QuantError(file, "tensor \(tensor.name): zstd chunk \(c) decompressed to \(n) bytes, expected \(expected)")
        }
    }

    /// Decompresses a whole tensor into `dst` (rawLength bytes), chunks in parallel.
    public static func decompressAll(_ tensor: TensorInfo, stored: UnsafeRawBufferPointer,
                                     into dst: UnsafeMutableRawBufferPointer, file: String) throws {
        let index = try index(of: tensor, stored: stored, file: file)
        var failure: Error?
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: index.chunks.count) { c in
            guard let dctx = ZSTD_createDCtx() else { return }
            defer { ZSTD_freeDCtx(dctx) }
            let rows = index.rowRange(ofChunk: c, rows: tensor.rows)
            let part = UnsafeMutableRawBufferPointer(rebasing: dst[rows.lowerBound * index.rowBytes ..< rows.upperBound * index.rowBytes])
            do {
                try decompress(chunk: c, of: tensor, index: index, stored: stored, into: part, dctx: dctx, file: file)
            } catch {
                lock.withLock { if failure == nil { failure = error } }
            }
        }
        if let failure { throw failure }
    }
}
