import CKernels
import CZstd
import Dispatch
import Foundation

/// Chunked zstd encoding of one tensor: its rows are cut into chunks of whole rows, each chunk
/// one independent zstd frame (with zstd's own content checksum), plus an index, so any row
/// range can be decompressed without the rest. Layout in docs/format.md ("zstd encoding").
package struct ZstdChunkIndex: Sendable {
    package var rowsPerChunk: Int
    package var rowBytes: Int
    /// The byte-layout filter applied to every chunk before compression (none for QZC1).
    package var filter: ZstdFilterSpec = .none
    /// (offset from the tensor's start, compressed length) per chunk.
    package var chunks: [(offset: Int, length: Int)]

    package func rowRange(ofChunk c: Int, rows: Int) -> Range<Int> {
        let lo = c * rowsPerChunk
        return lo ..< min(rows, lo + rowsPerChunk)
    }
}

package enum ZstdChunks {
    package static let defaultChunkBytes = 1 << 20

    /// Rows per chunk the writer cuts: as many whole rows as fit `chunkBytes` (at least one),
    /// rounded down to whole row groups (at least one group), so every chunk of a q4_0x8 tensor
    /// starts at a group boundary and decodes to a q4_0x8 tensor of its own.
    package static func rowsPerChunk(rowBytes: Int, chunkBytes: Int, rowGroup: Int = 1) -> Int {
        let g = max(1, rowGroup)
        return max(g, chunkBytes / max(1, rowBytes) / g * g)
    }

    /// Compresses `rows` rows of `rowBytes` bytes each. Chunks are compressed in parallel.
    /// With a filter other than none, every chunk's bytes are rearranged by it before
    /// compression and the stream is "QZC2" (the filter recorded in its header); else "QZC1".
    /// `rowGroup`: the type's row group (QuantType.rowGroup); chunks hold whole groups.
    package static func compress(_ data: UnsafeRawBufferPointer, rows: Int, rowBytes: Int, level: Int,
                                chunkBytes: Int = defaultChunkBytes, filter: ZstdFilterSpec = .none, rowGroup: Int = 1) throws -> [UInt8] {
        precondition(data.count == rows * rowBytes)
        precondition(filter.filter == .none || filter.isValid(rowBytes: rowBytes), "invalid zstd filter \(filter) for rows of \(rowBytes) bytes")
        let rowsPerChunk = ZstdChunks.rowsPerChunk(rowBytes: rowBytes, chunkBytes: chunkBytes, rowGroup: rowGroup)
        let nChunks = max(1, (rows + rowsPerChunk - 1) / rowsPerChunk)
        var frames = [[UInt8]](repeating: [], count: nChunks)
        var failure: String?
        let lock = NSLock()
        frames.withUnsafeMutableBufferPointer { out in
            let outBase = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: nChunks) { c in
                let lo = c * rowsPerChunk * rowBytes
                let hi = min(rows, (c + 1) * rowsPerChunk) * rowBytes
                var src = UnsafeRawBufferPointer(rebasing: data[lo ..< hi])
                var filtered: UnsafeMutableRawPointer?
                defer { filtered?.deallocate() }
                if filter.filter != .none, src.count > 0 {
                    let buf = UnsafeMutableRawPointer.allocate(byteCount: src.count, alignment: 64)
                    filtered = buf
                    _ = qlm_zf_encode(Int32(filter.filter.rawValue), src.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                      buf.assumingMemoryBound(to: UInt8.self), src.count, filter.record, filter.head)
                    src = UnsafeRawBufferPointer(start: buf, count: src.count)
                }
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
        w.raw(filter.filter == .none ? QLMFormat.chunkMagic : QLMFormat.chunkMagic2)
        w.u32(UInt32(nChunks))
        w.u64(UInt64(rowsPerChunk))
        w.u64(UInt64(rowBytes))
        if filter.filter != .none {
            w.u8(filter.filter.rawValue)
            w.u8(0)
            w.u16(UInt16(filter.head))
            w.u32(UInt32(filter.record))
        }
        var offset = w.bytes.count + nChunks * QLMFormat.chunkEntrySize
        for f in frames {
            w.u64(UInt64(offset))
            w.u64(UInt64(f.count))
            offset += f.count
        }
        for f in frames { w.raw(f) }
        return w.bytes
    }

    /// Parses and checks a chunk stream's header (QZC1: 24 bytes, QZC2: 32) against the tensor.
    /// `head` holds the stream's first min(32, stored length) bytes.
    package static func header(_ head: UnsafeRawBufferPointer, of tensor: TensorInfo, file: String) throws -> ZstdChunkHeader {
        func bad(_ why: String) -> QuantError { QuantError(file, "tensor \(tensor.name): \(why)") }
        guard head.count >= QLMFormat.chunkHeaderSize else { throw bad("zstd chunk index is truncated") }
        var r = ByteReader(head, file: file)
        let magic = Array(try r.bytes(4, "tensor \(tensor.name) chunk magic"))
        let v2 = magic == QLMFormat.chunkMagic2
        guard v2 || magic == QLMFormat.chunkMagic else { throw bad("bad zstd chunk magic") }
        let n = UInt64(try r.u32("tensor \(tensor.name) chunk count"))
        let rpc = try r.u64("rows per chunk")
        let rowBytes = try r.u64("row bytes")
        let rows = UInt64(tensor.rows)
        guard rpc >= 1, rowBytes == UInt64(tensor.rowBytes), n == (rpc >= rows ? 1 : (rows + rpc - 1) / rpc) else {
            throw bad("zstd chunk index does not match its shape")
        }
        var spec = ZstdFilterSpec.none
        if v2 {
            guard head.count >= QLMFormat.chunkHeaderSize2 else { throw bad("zstd chunk index is truncated") }
            let f = try r.u8("filter"), reserved = try r.u8("reserved")
            let hb = Int(try r.u16("filter head")), rec = Int(try r.u32("filter record"))
            guard let filter = ZstdFilter(rawValue: f), filter != .none else { throw bad("unknown zstd filter \(f)") }
            spec = ZstdFilterSpec(filter: filter, record: rec, head: hb)
            guard reserved == 0, spec.isValid(rowBytes: tensor.rowBytes) else {
                throw bad("invalid zstd filter parameters (filter \(f), record \(rec), head \(hb), row bytes \(tensor.rowBytes))")
            }
        }
        return ZstdChunkHeader(chunkCount: Int(n), rowsPerChunk: rpc,
                               headerSize: v2 ? QLMFormat.chunkHeaderSize2 : QLMFormat.chunkHeaderSize, filter: spec)
    }

    /// Reads and validates the chunk index at the start of a zstd tensor's stored bytes.
    package static func index(of tensor: TensorInfo, stored: UnsafeRawBufferPointer, file: String) throws -> ZstdChunkIndex {
        let h = try header(UnsafeRawBufferPointer(rebasing: stored[0 ..< min(stored.count, QLMFormat.chunkHeaderSize2)]),
                           of: tensor, file: file)
        let n = h.chunkCount
        let tableEnd = h.headerSize + n * QLMFormat.chunkEntrySize
        guard tableEnd <= stored.count else { throw QuantError(file, "tensor \(tensor.name): zstd chunk index is truncated") }
        var r = ByteReader(UnsafeRawBufferPointer(rebasing: stored[h.headerSize ..< tableEnd]), file: file)
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
        let rpc = try checkedInt(h.rowsPerChunk, file, "tensor \(tensor.name) rows per chunk")
        return ZstdChunkIndex(rowsPerChunk: rpc, rowBytes: tensor.rowBytes, filter: h.filter, chunks: chunks)
    }

    /// Decompresses one frame into `dst` (exactly `dst.count` bytes), undoing `filter` through
    /// `scratch` (at least dst.count bytes; unused without a filter).
    package static func decodeFrame(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer,
                                   filter: ZstdFilterSpec, scratch: UnsafeMutableRawPointer?, dctx: OpaquePointer,
                                   what: () -> String, file: String) throws {
        let expected = dst.count
        let target = filter.filter == .none ? dst.baseAddress : scratch
        let n = ZSTD_decompressDCtx(dctx, target, expected, src.baseAddress, src.count)
        if ZSTD_isError(n) != 0 {
            throw QuantError(file, "\(what()) is corrupt (\(String(cString: ZSTD_getErrorName(n))))")
        }
        guard n == expected else {
            throw QuantError(file, "\(what()) decompressed to \(n) bytes, expected \(expected)")
        }
        if filter.filter != .none, expected > 0 {
            let rc = qlm_zf_decode(Int32(filter.filter.rawValue), scratch!.assumingMemoryBound(to: UInt8.self),
                                   dst.baseAddress!.assumingMemoryBound(to: UInt8.self), expected, filter.record, filter.head)
            guard rc == 0 else { throw QuantError(file, "\(what()): invalid zstd filter \(filter)") }
        }
    }

    /// Decompresses chunk `c` into `dst` (exactly the chunk's rows × rowBytes bytes).
    package static func decompress(chunk c: Int, of tensor: TensorInfo, index: ZstdChunkIndex,
                                  stored: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer,
                                  dctx: OpaquePointer, file: String) throws {
        let rows = index.rowRange(ofChunk: c, rows: tensor.rows)
        let expected = rows.count * index.rowBytes
        guard dst.count == expected else { throw QuantError(file, "tensor \(tensor.name): chunk \(c) buffer size mismatch") }
        let (off, len) = index.chunks[c]
        let src = UnsafeRawBufferPointer(rebasing: stored[off ..< off + len])
        let scratch: UnsafeMutableRawPointer? = index.filter.filter == .none ? nil : .allocate(byteCount: max(expected, 1), alignment: 64)
        defer { scratch?.deallocate() }
        try decodeFrame(src, into: dst, filter: index.filter, scratch: scratch, dctx: dctx,
                        what: { "tensor \(tensor.name): zstd chunk \(c)" }, file: file)
    }

    /// Decompresses a whole tensor into `dst` (rawLength bytes), chunks in parallel.
    package static func decompressAll(_ tensor: TensorInfo, stored: UnsafeRawBufferPointer,
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
