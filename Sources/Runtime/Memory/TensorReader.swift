import CZstd
import Foundation
import Quant
#if canImport(Glibc)
import Glibc
#endif

/// Reads tensors from a .qlm file with pread, never through the memory map, so the file's
/// pages never count in this process's resident set: raw tensors are read straight into the
/// destination; zstd tensors chunk by chunk into a staging buffer, then decompressed into it.
/// One reader per thread (it owns its staging buffer and zstd context).
final class TensorReader {
    /// A zstd tensor's chunk table (offsets relative to the tensor's stored bytes).
    struct Chunks {
        var rowsPerChunk: Int
        var rowBytes: Int
        var chunks: [(offset: Int, length: Int)]
        /// The chunks' byte-layout filter (none for QZC1 streams).
        var filter: ZstdFilterSpec = .none

        /// Staging one chunk needs: its compressed bytes, plus (filtered) its decoded rows
        /// before the filter is undone.
        var stagingNeed: Int {
            let maxLen = chunks.map(\.length).max() ?? 0
            return filter.filter == .none ? maxLen : MemoryPlan.aligned(maxLen) + rowsPerChunk * rowBytes
        }
    }

    let path: String
    private let fd: Int32
    private let dctx: OpaquePointer
    private var staging: UnsafeMutableRawPointer?
    private(set) var stagingBytes = 0

    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw QuantError(path, "cannot open: \(String(cString: strerror(errno)))") }
        guard let d = ZSTD_createDCtx() else { close(fd); throw QuantError(path, "ZSTD_createDCtx failed") }
        dctx = d
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
    }

    deinit {
        if directFD >= 0 { close(directFD) }
        staging?.deallocate()
        ZSTD_freeDCtx(dctx)
        close(fd)
    }

    /// Reads exactly `count` bytes at `offset`.
    func readFully(_ dst: UnsafeMutableRawPointer, count: Int, offset: Int) throws {
        var done = 0
        while done < count {
            let n = pread(fd, dst + done, count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw QuantError(path, "read failed at offset \(offset + done): \(String(cString: strerror(errno)))")
            }
            guard n > 0 else { throw QuantError(path, "unexpected end of file at offset \(offset + done)") }
            done += n
        }
    }

    /// A second descriptor opened with O_DIRECT (`openDirect`), while the file system accepts it.
    private var directFD: Int32 = -1
    var direct: Bool { directFD >= 0 }

    /// Opens the O_DIRECT descriptor; without one (the file system refuses it) `readDirect` declines.
    func openDirect() {
        guard directFD < 0 else { return }
        directFD = open(path, O_RDONLY | O_CLOEXEC | oDirectFlag)
    }

    /// Reads the block-aligned file range `range` into the block-aligned `dst` with O_DIRECT
    /// (the disk's DMA lands in `dst`, no page-cache copy); at least `atLeast` bytes must exist
    /// (the file may end inside the range's last block). False when direct reads are unavailable
    /// or the file system refuses this one (EINVAL): read it buffered instead.
    func readDirect(into dst: UnsafeMutableRawPointer, range: Range<Int>, atLeast: Int) throws -> Bool {
        guard directFD >= 0 else { return false }
        var done = 0
        while done < range.count {
            let n = pread(directFD, dst + done, range.count - done, off_t(range.lowerBound + done))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL { close(directFD); directFD = -1; return false }
                throw QuantError(path, "read failed at offset \(range.lowerBound + done): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            done += n
            // A short read inside the file would leave the next offset unaligned: finish buffered.
            if done < range.count && done % MemoryPlan.directAlignment != 0 { break }
        }
        if done < atLeast {
            try readFully(dst + done, count: atLeast - done, offset: range.lowerBound + done)
        }
        return true
    }

    /// Asks the kernel to start reading a range into the page cache (not into this process).
    func willNeed(offset: Int, count: Int) {
        _ = posix_fadvise(fd, off_t(offset), off_t(count), POSIX_FADV_WILLNEED)
    }

    /// Drops a range's pages from the page cache (they were read and will not be reused soon).
    func dontNeed(offset: Int, count: Int) {
        _ = posix_fadvise(fd, off_t(offset), off_t(count), POSIX_FADV_DONTNEED)
    }

    func reserveStaging(_ bytes: Int) {
        guard bytes > stagingBytes else { return }
        staging?.deallocate()
        staging = .allocate(byteCount: bytes, alignment: 64)
        stagingBytes = bytes
    }

    /// Reads and checks a zstd tensor's chunk index (the same checks as ZstdChunks.index).
    func chunks(of t: TensorInfo) throws -> Chunks {
        precondition(t.encoding == .zstd)
        func bad(_ why: String) -> QuantError { QuantError(path, "tensor \(t.name): \(why)") }
        var head = [UInt8](repeating: 0, count: min(t.storedLength, QLMFormat.chunkHeaderSize2))
        try head.withUnsafeMutableBytes { if $0.count > 0 { try readFully($0.baseAddress!, count: $0.count, offset: t.offset) } }
        let h = try head.withUnsafeBytes { try ZstdChunks.header($0, of: t, file: path) }
        let n = h.chunkCount
        let tableEnd = h.headerSize + n * QLMFormat.chunkEntrySize
        guard tableEnd <= t.storedLength else { throw bad("zstd chunk index is truncated") }
        var table = [UInt8](repeating: 0, count: n * QLMFormat.chunkEntrySize)
        try table.withUnsafeMutableBytes { try readFully($0.baseAddress!, count: $0.count, offset: t.offset + h.headerSize) }
        func u64(_ a: [UInt8], _ at: Int) -> UInt64 { (0 ..< 8).reduce(0) { $0 | UInt64(a[at + $1]) << (8 * $1) } }
        var list: [(Int, Int)] = []
        list.reserveCapacity(n)
        for c in 0 ..< n {
            let off = u64(table, c * 16), len = u64(table, c * 16 + 8)
            guard off >= UInt64(tableEnd), off <= UInt64(t.storedLength), len <= UInt64(t.storedLength) - off else {
                throw bad("zstd chunk \(c) lies outside the tensor's stored bytes")
            }
            list.append((Int(off), Int(len)))
        }
        return Chunks(rowsPerChunk: Int(min(h.rowsPerChunk, UInt64(t.rows))), rowBytes: t.rowBytes, chunks: list, filter: h.filter)
    }

    /// Reads tensor `t`'s raw bytes (t.rawLength) into `dst`; returns the bytes read from the file.
    @discardableResult
    func read(_ t: TensorInfo, chunks: Chunks?, into dst: UnsafeMutableRawPointer) throws -> Int {
        try read(t, chunks: chunks, rows: 0 ..< t.rows, into: dst)
    }

    /// Reads rows `rows` of `t` (raw bytes, rows.count × rowBytes) into `dst`; returns the bytes
    /// read from the file. For zstd the range must be whole chunks (the last may end at t.rows).
    @discardableResult
    func read(_ t: TensorInfo, chunks: Chunks?, rows: Range<Int>, into dst: UnsafeMutableRawPointer) throws -> Int {
        switch t.encoding {
        case .raw:
            let n = rows.count * t.rowBytes
            try readFully(dst, count: n, offset: t.offset + rows.lowerBound * t.rowBytes)
            return n
        case .zstd:
            let index = try chunks ?? self.chunks(of: t)
            let rpc = index.rowsPerChunk
            precondition(rows.lowerBound % rpc == 0 && (rows.upperBound % rpc == 0 || rows.upperBound == t.rows),
                         "zstd row range \(rows) of \(t.name) is not whole chunks of \(rpc) rows")
            var total = 0
            for c in rows.lowerBound / rpc ..< (rows.upperBound + rpc - 1) / rpc {
                total += try readChunk(c, of: t, index: index, into: dst + (c * rpc - rows.lowerBound) * index.rowBytes)
            }
            return total
        }
    }

    /// Decompresses zstd chunk `c` of `t` into `dst` (its rows × rowBytes); returns the bytes read.
    @discardableResult
    func readChunk(_ c: Int, of t: TensorInfo, index: Chunks, into dst: UnsafeMutableRawPointer) throws -> Int {
        let (off, len) = index.chunks[c]
        let lo = c * index.rowsPerChunk, hi = min(t.rows, lo + index.rowsPerChunk)
        let expected = (hi - lo) * index.rowBytes
        let filtered = index.filter.filter != .none
        let scratchAt = MemoryPlan.aligned(len)
        let need = filtered ? scratchAt + expected : len
        if need > stagingBytes { reserveStaging(need) }
        try readFully(staging!, count: len, offset: t.offset + off)
        try ZstdChunks.decodeFrame(UnsafeRawBufferPointer(start: staging, count: len),
                                   into: UnsafeMutableRawBufferPointer(start: dst, count: expected), filter: index.filter,
                                   scratch: filtered ? staging! + scratchAt : nil, dctx: dctx,
                                   what: { "tensor \(t.name): zstd chunk \(c)" }, file: path)
        return len
    }
}
