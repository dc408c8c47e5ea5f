import CKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes a .qlm file atomically: everything goes to a temporary file beside the target,
/// which is renamed over it only by `finish()`. If the writer is dropped or `abort()`ed
/// before that, or SIGINT/SIGTERM ends the process, the temporary file is removed and the
/// target is untouched; one left by a killed writer (kill -9) is removed by the next write.
package final class QLMWriter {
    package let url: URL
    private let tmpPath: String
    private var fd: Int32
    private var tensors: [TensorInfo]
    private var metadataBytes: [UInt8]
    private let metadataReserve: Int
    private let tableOffset: Int
    private let dataOffset: Int
    private var cursor: Int
    private var nextIndex = 0
    private var finished = false
    /// The SIGINT/SIGTERM cleanup's slot for the temporary file (-1: none).
    private var tempSlot: Int32 = -1

    package private(set) var storedBytes = 0
    package private(set) var rawBytes = 0
    /// Stored bytes of the tensor written last.
    package private(set) var lastStoredLength = 0
    /// The zstd filter each compressed tensor was written with, by name.
    package private(set) var filters: [String: ZstdFilterSpec] = [:]

    /// - Parameter tensors: name, type, encoding and shape of every tensor, in the order
    ///   they will be written (offsets and lengths are filled in as they are written).
    package init(url: URL, metadata: ModelMetadata, tensors: [TensorInfo]) throws {
        self.url = url
        var seen = Set<String>()
        for t in tensors {
            let n = t.name.utf8.count
            guard n >= 1, n <= QLMFormat.maxNameBytes, !t.name.utf8.contains(0) else {
                throw QuantError(url, "tensor name '\(t.name)' must be 1...\(QLMFormat.maxNameBytes) UTF-8 bytes")
            }
            guard seen.insert(t.name).inserted else { throw QuantError(url, "duplicate tensor name '\(t.name)'") }
            guard (1 ... QLMFormat.maxDims).contains(t.shape.count), t.shape.allSatisfy({ $0 >= 1 }) else {
                throw QuantError(url, "tensor '\(t.name)' has unsupported shape \(t.shape)")
            }
        }
        self.tensors = tensors
        self.metadataBytes = Array(try metadata.encoded())
        // Room for a final metadata block that differs from this one (e.g. filled-in hashes).
        metadataReserve = metadataBytes.count + 4096
        tableOffset = QLMFormat.align(QLMFormat.headerSize + metadataReserve)
        dataOffset = QLMFormat.align(tableOffset + tensors.count * QLMFormat.recordSize)
        cursor = dataOffset
        let dir = url.deletingLastPathComponent().path
        tmpPath = (dir.isEmpty ? "." : dir) + "/.\(url.lastPathComponent).tmp-\(getpid())"
        Self.removeStaleTemps(of: url)
        fd = open(tmpPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw QuantError(url, "cannot create \(tmpPath): \(String(cString: strerror(errno)))")
        }
        tempSlot = qlm_temp_register(tmpPath)
    }

    /// Removes `.NAME.tmp-PID` files of the same target left by writers that died (kill -9,
    /// a crash): their PID no longer exists. A live writer's temporary file is left alone.
    package static func removeStaleTemps(of url: URL) {
        let dir = url.deletingLastPathComponent().path.isEmpty ? "." : url.deletingLastPathComponent().path
        let prefix = ".\(url.lastPathComponent).tmp-"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for n in names where n.hasPrefix(prefix) {
            guard let pid = Int32(n.dropFirst(prefix.count)), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(dir + "/" + n) }
        }
    }

    deinit { abort() }

    /// Removes the temporary file unless the write finished.
    package func abort() {
        guard !finished else { return }
        finished = true
        if fd >= 0 { close(fd); fd = -1 }
        unlink(tmpPath)
        qlm_temp_unregister(tempSlot)
    }

    private func pwriteAll(_ buf: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < buf.count {
            let n = pwrite(fd, buf.baseAddress! + done, buf.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw QuantError(url, "write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    /// Writes the next tensor's raw bytes (rows × row size of its type), compressing them
    /// if its encoding is zstd.
    /// `filter` picks the chunks' byte layout (default none: a QZC1 stream); `filters` records
    /// what each zstd tensor got, by name.
    package func writeNext(_ data: UnsafeRawBufferPointer, zstdLevel: Int = 3,
                          chunkBytes: Int = ZstdChunks.defaultChunkBytes, filter: ZstdFilterChoice = .fixed(.none)) throws {
        guard !finished, nextIndex < tensors.count else { throw QuantError(url, "more tensors written than declared") }
        var t = tensors[nextIndex]
        guard data.count == t.expectedRawLength else {
            throw QuantError(url, "tensor \(t.name): got \(data.count) bytes, shape \(t.shape) of \(t.type) needs \(t.expectedRawLength)")
        }
        t.offset = cursor
        t.rawLength = data.count
        if t.encoding == .zstd {
            let spec = try filter.resolve(data, type: t.type, rows: t.rows, rowLength: t.rowLength, level: zstdLevel, chunkBytes: chunkBytes)
            filters[t.name] = spec
            let blob = try ZstdChunks.compress(data, rows: t.rows, rowBytes: t.rowBytes, level: zstdLevel, chunkBytes: chunkBytes, filter: spec,
                                               rowGroup: t.type.rowGroup)
            try blob.withUnsafeBytes { b in
                t.storedLength = b.count
                t.checksum = qlm_crc32c(0, b.baseAddress, b.count)
                try pwriteAll(b, at: cursor)
            }
            advance(t)
        } else {
            try writeNext(parts: { try $0(data) })
        }
    }

    /// Writes the next tensor, which must be raw-encoded, in parts: `produce` hands its parts, in
    /// order, to the function it is given, which checksums and writes each at once (a tensor never
    /// needs to be in memory whole: the converter hands over row bands as they are quantized).
    /// The parts must add up to the tensor's raw length; the bytes on disk are those of one
    /// `writeNext(data)` of their concatenation.
    package func writeNext(parts produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        guard !finished, nextIndex < tensors.count else { throw QuantError(url, "more tensors written than declared") }
        var t = tensors[nextIndex]
        guard t.encoding == .raw else { throw QuantError(url, "internal: tensor \(t.name) is zstd-encoded and must be written whole") }
        let expected = t.expectedRawLength, start = cursor
        var done = 0, crc: UInt32 = 0
        try produce { part in
            guard part.count <= expected - done else {
                throw QuantError(url, "tensor \(t.name): got more than the \(expected) bytes shape \(t.shape) of \(t.type) needs")
            }
            guard let p = part.baseAddress, part.count > 0 else { return }
            crc = qlm_crc32c(crc, p, part.count)
            try pwriteAll(part, at: start + done)
            done += part.count
        }
        guard done == expected else {
            throw QuantError(url, "tensor \(t.name): got \(done) bytes, shape \(t.shape) of \(t.type) needs \(expected)")
        }
        t.offset = start
        t.rawLength = done
        t.storedLength = done
        t.checksum = crc
        advance(t)
    }

    /// Records `t` (offsets, lengths and checksum filled in) and moves past it.
    private func advance(_ t: TensorInfo) {
        storedBytes += t.storedLength
        lastStoredLength = t.storedLength
        rawBytes += t.rawLength
        cursor = QLMFormat.align(cursor + t.storedLength)
        tensors[nextIndex] = t
        nextIndex += 1
    }

    /// Writes the table and header, flushes, and renames the file into place. `metadata`
    /// replaces the block given to init (it must fit the space reserved then).
    @discardableResult
    package func finish(metadata: ModelMetadata? = nil) throws -> Int {
        guard !finished else { throw QuantError(url, "writer already finished") }
        if let metadata {
            metadataBytes = Array(try metadata.encoded())
            guard metadataBytes.count <= metadataReserve else {
                throw QuantError(url, "final metadata (\(metadataBytes.count) bytes) exceeds the reserved \(metadataReserve)")
            }
        }
        guard nextIndex == tensors.count else {
            throw QuantError(url, "only \(nextIndex) of \(tensors.count) tensors were written")
        }
        let fileLength = tensors.last.map { $0.offset + $0.storedLength } ?? dataOffset
        var table = ByteWriter()
        for t in tensors { table.raw(t.record()) }
        let metaCRC = metadataBytes.withUnsafeBytes { qlm_crc32c(0, $0.baseAddress, $0.count) }
        let tableCRC = table.bytes.withUnsafeBytes { qlm_crc32c(0, $0.baseAddress, $0.count) }
        var h = ByteWriter()
        h.raw(QLMFormat.magic)
        h.u32(QLMFormat.version)
        h.u32(UInt32(tensors.count))
        h.u64(UInt64(QLMFormat.headerSize))
        h.u32(UInt32(metadataBytes.count))
        h.u32(metaCRC)
        h.u64(UInt64(tableOffset))
        h.u32(UInt32(table.bytes.count))
        h.u32(tableCRC)
        h.u64(UInt64(dataOffset))
        h.u64(UInt64(fileLength))
        precondition(h.bytes.count == QLMFormat.headerSize)
        var head = h.bytes + metadataBytes
        head.append(contentsOf: repeatElement(0, count: tableOffset - head.count))
        head += table.bytes
        head.append(contentsOf: repeatElement(0, count: dataOffset - head.count))
        try head.withUnsafeBytes { try pwriteAll($0, at: 0) }
        guard ftruncate(fd, off_t(fileLength)) == 0, fsync(fd) == 0 else {
            throw QuantError(url, "cannot flush: \(String(cString: strerror(errno)))")
        }
        close(fd)
        fd = -1
        guard rename(tmpPath, url.path) == 0 else {
            let msg = String(cString: strerror(errno))
            unlink(tmpPath)
            qlm_temp_unregister(tempSlot)
            finished = true
            throw QuantError(url, "cannot rename \(tmpPath) into place: \(msg)")
        }
        qlm_temp_unregister(tempSlot)
        finished = true
        return fileLength
    }
}
