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
package final class TensorReader {
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

    package let path: String
    private let fd: Int32
    private let dctx: OpaquePointer
    private var staging: UnsafeMutableRawPointer?
    private(set) var stagingBytes = 0

    package init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw QuantError(path, "cannot open: \(String(cString: strerror(errno)))") }
        guard let d = ZSTD_createDCtx() else { close(fd); throw QuantError(path, "ZSTD_createDCtx failed") }
        dctx = d
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
    }

    deinit {
        helpers.forEach { $0.finish() }
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
    package var direct: Bool { directFD >= 0 }
    /// Threads that each read one piece of a split direct read while this one reads the first.
    private var helpers: [PieceReader] = []
    private var minPieceBytes = TensorReader.defaultMinPieceBytes
    /// Pieces one direct read is cut into and read at once (1: one pread stream).
    package var directPieces: Int { helpers.count + 1 }

    /// QUANTLM_STREAM_PIECES: O_DIRECT reads in flight. The layer loader runs that many threads,
    /// each reading one piece at a time, the pieces taken in order across item boundaries (an
    /// item of at least twice `minPieceBytes` is cut into up to that many block-aligned pieces),
    /// so the next item's first read is queued before the current item's last one lands; the file
    /// probe (`DiskProbe`) cuts each of its reads into that many pieces read at once. 1 = one
    /// pread at a time. The default, 2: two halves of a 3.6-4.9 MiB read at once ran 0.99-1.23x
    /// (median 1.11x, 16 runs) the speed of one read at a time, 4 pieces no faster than 2
    /// (`scripts/bench/disk_reads.sh`); decode inside the cgroup, docs/benchmarks-log.md.
    package static let defaultDirectPieces = 2
    /// The smallest piece a direct read is cut into (a read of under twice this is one piece).
    package static let defaultMinPieceBytes = 1 << 20
    /// QUANTLM_STREAM_PIECE_KIB: the layer loader's smallest piece in KiB (a multiple of 4 from 4
    /// to 65536; default `defaultMinPieceBytes`).
    package static func minPieceBytes(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> Int {
        guard let v = env["QUANTLM_STREAM_PIECE_KIB"], !v.isEmpty else { return defaultMinPieceBytes }
        guard let n = Int(v), (1 ... 16384).contains(n / 4), n % 4 == 0 else {
            throw ModelError("QUANTLM_STREAM_PIECE_KIB='\(v)' must be a piece size in KiB, a multiple of 4 from 4 to 65536")
        }
        return n << 10
    }
    package static func directPieces(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> Int {
        guard let v = env["QUANTLM_STREAM_PIECES"], !v.isEmpty else { return defaultDirectPieces }
        guard let n = Int(v), (1 ... 8).contains(n) else {
            throw ModelError("QUANTLM_STREAM_PIECES='\(v)' must be a number of pieces from 1 to 8")
        }
        return n
    }

    /// Opens the O_DIRECT descriptor; without one (the file system refuses it) `readDirect` declines.
    /// `pieces` > 1: each direct read is cut into that many block-aligned pieces, read at once by
    /// this thread and `pieces - 1` helper threads (the disk sees that many reads in flight),
    /// none smaller than `minPieceBytes`.
    package func openDirect(pieces: Int = 1, minPieceBytes: Int = TensorReader.defaultMinPieceBytes) {
        guard directFD < 0 else { return }
        self.minPieceBytes = max(MemoryPlan.directAlignment, minPieceBytes)
        directFD = open(path, O_RDONLY | O_CLOEXEC | oDirectFlag)
        guard directFD >= 0 else { return }
        helpers = (1 ..< max(1, pieces)).map { PieceReader(fd: directFD, name: "quantlm-layer-reader-\($0)") }
    }

    /// Pieces a direct read of `count` bytes is cut into: up to `directPieces`, one per block at
    /// most, none under `minPieceBytes`.
    package func piecesFor(_ count: Int) -> Int {
        TensorReader.pieceCount(count, pieces: helpers.count + 1, minPieceBytes: minPieceBytes)
    }

    /// Up to `pieces`, one per block at most, none under `minPieceBytes` (at least one).
    package static func pieceCount(_ count: Int, pieces: Int, minPieceBytes: Int = defaultMinPieceBytes) -> Int {
        max(1, min(pieces, count / MemoryPlan.directAlignment, count / max(1, minPieceBytes)))
    }

    /// A block-aligned span of `count` bytes cut into `pieceCount` pieces at block boundaries
    /// (offsets from the span's start; the last also takes any tail under a block).
    package static func cut(_ count: Int, pieces: Int, minPieceBytes: Int = defaultMinPieceBytes) -> [Range<Int>] {
        let n = pieceCount(count, pieces: pieces, minPieceBytes: minPieceBytes)
        return (0 ..< n).map { piece($0, of: n, count: count) }
    }

    /// Piece `p` of `n` of a span of `count` bytes: blocks [p * blocks / n, (p + 1) * blocks / n).
    static func piece(_ p: Int, of n: Int, count: Int) -> Range<Int> {
        let a = MemoryPlan.directAlignment, blocks = count / a
        return p * blocks / n * a ..< (p == n - 1 ? count : (p + 1) * blocks / n * a)
    }

    /// One O_DIRECT read of the block-aligned `range` into the block-aligned `dst` on this
    /// thread (no helpers; safe from several threads at once, each its own range); what a
    /// short read leaves of the first `atLeast` bytes (the file's end) is read buffered. False
    /// when direct reads are unavailable or the file system refuses this one (EINVAL; the
    /// descriptor stays open): read it buffered instead.
    package func readDirectPiece(into dst: UnsafeMutableRawPointer, range: Range<Int>, atLeast: Int) throws -> Bool {
        guard directFD >= 0 else { return false }
        let r = PieceReader.directRead(directFD, dst, range)
        if r.error == EINVAL { return false }
        if r.error != 0 {
            throw QuantError(path, "read failed at offset \(range.lowerBound + r.done): \(String(cString: strerror(r.error)))")
        }
        if r.done < atLeast { try readFully(dst + r.done, count: atLeast - r.done, offset: range.lowerBound + r.done) }
        return true
    }

    /// Reads the block-aligned file range `range` into the block-aligned `dst` with O_DIRECT
    /// (the disk's DMA lands in `dst`, no page-cache copy); at least `atLeast` bytes must exist
    /// (the file may end inside the range's last block). False when direct reads are unavailable
    /// or the file system refuses this one (EINVAL): read it buffered instead.
    /// With helpers (`openDirect(pieces:)`) the range is cut at block boundaries into pieces read
    /// at once; whatever a piece leaves unread (a short read: the file's end) is read buffered.
    package func readDirect(into dst: UnsafeMutableRawPointer, range: Range<Int>, atLeast: Int) throws -> Bool {
        guard directFD >= 0 else { return false }
        let n = piecesFor(range.count)
        func piece(_ p: Int) -> Range<Int> { TensorReader.piece(p, of: n, count: range.count) }
        for p in 1 ..< n { helpers[p - 1].post(dst + piece(p).lowerBound, piece(p).shifted(range.lowerBound)) }
        let first = PieceReader.directRead(directFD, dst, piece(0).shifted(range.lowerBound))
        for p in 1 ..< n { helpers[p - 1].wait() }
        // Bytes valid from the range's start: every piece read whole, up to the first short one.
        var valid = 0
        for p in 0 ..< n {
            let r = p == 0 ? first : helpers[p - 1].result
            if r.error == EINVAL { close(directFD); directFD = -1; helpers.forEach { $0.finish() }; helpers = []; return false }
            if r.error != 0 {
                throw QuantError(path, "read failed at offset \(range.lowerBound + piece(p).lowerBound + r.done): \(String(cString: strerror(r.error)))")
            }
            valid += r.done
            if r.done < piece(p).count { break }
        }
        if valid < atLeast {
            try readFully(dst + valid, count: atLeast - valid, offset: range.lowerBound + valid)
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

/// A thread that reads one piece of a split O_DIRECT read (`TensorReader.readDirect`): `post`
/// hands it a piece, `wait` returns what it read. It allocates nothing per read.
private final class PieceReader: @unchecked Sendable {
    struct Result { var done: Int; var error: Int32 }
    private let cond = NSCondition()
    private let fd: Int32
    private var job: (dst: UnsafeMutableRawPointer, range: Range<Int>)?
    /// What the last piece read (valid once `wait` returned).
    private(set) var result = Result(done: 0, error: 0)
    private var busy = false
    private var stop = false, exited = false

    init(fd: Int32, name: String) {
        self.fd = fd
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.stackSize = 1 << 18
        thread.start()
    }

    /// O_DIRECT reads of `range` into `dst` until it is read, the file ends or a read fails: the
    /// bytes read and the error (0: none). A short read inside the file ends it too (the next
    /// offset would not be block-aligned); the caller reads the rest buffered.
    static func directRead(_ fd: Int32, _ dst: UnsafeMutableRawPointer, _ range: Range<Int>) -> Result {
        var done = 0
        while done < range.count {
            let n = pread(fd, dst + done, range.count - done, off_t(range.lowerBound + done))
            if n < 0 {
                if errno == EINTR { continue }
                return Result(done: done, error: errno)
            }
            if n == 0 { break }
            done += n
            if done < range.count && done % MemoryPlan.directAlignment != 0 { break }
        }
        return Result(done: done, error: 0)
    }

    func post(_ dst: UnsafeMutableRawPointer, _ range: Range<Int>) {
        cond.lock()
        job = (dst, range)
        busy = true
        cond.broadcast()
        cond.unlock()
    }

    /// Blocks until the posted piece is read (`result`).
    func wait() {
        cond.lock()
        while busy { cond.wait() }
        cond.unlock()
    }

    /// Stops the thread and waits until it has (it never holds a job then).
    func finish() {
        cond.lock()
        stop = true
        cond.broadcast()
        while !exited { cond.wait() }
        cond.unlock()
    }

    private func loop() {
        cond.lock()
        while true {
            if let j = job {
                job = nil
                cond.unlock()
                let r = PieceReader.directRead(fd, j.dst, j.range)
                cond.lock()
                result = r
                busy = false
                cond.broadcast()
            } else if stop {
                break
            } else {
                cond.wait()
            }
        }
        exited = true
        cond.broadcast()
        cond.unlock()
    }
}

private extension Range where Bound == Int {
    func shifted(_ by: Int) -> Range<Int> { lowerBound + by ..< upperBound + by }
}
