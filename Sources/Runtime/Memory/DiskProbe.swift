import Foundation
import Quant
#if canImport(Glibc)
import Glibc
#endif

/// The disk's sequential read speed for a model file, measured in the same run as what it is
/// compared with: O_DIRECT reads of the file from its start (no page cache, so nothing is
/// charged to the process or its cgroup and nothing cached makes it look faster), through one
/// aligned 4 MiB buffer (bench reads before the model is loaded, inside the budget). Where the file system refuses
/// O_DIRECT the read is buffered, the file's pages dropped before and after (`oDirect` false).
package struct DiskProbe: Codable, Sendable {
    package var bytes: Int
    package var bufferBytes: Int
    package var oDirect: Bool
    /// GB/s (1e9 bytes per second) of the reads, and each read's.
    package var gbPerSecond: Stat
    package var readsGBPerSecond: [Double]?

    enum CodingKeys: String, CodingKey {
        case bytes, bufferBytes = "buffer_bytes", oDirect = "o_direct", gbPerSecond = "gb_per_second", readsGBPerSecond = "reads_gb_per_second"
    }

    /// One reader: the file, its descriptor and the aligned buffer, so reads can be interleaved
    /// with what they are compared with.
    package final class Reader {
        let path: String
        let fd: Int32
        let oDirect: Bool
        let size: Int
        let buffer: UnsafeMutableRawPointer
        let bufferBytes: Int
        let maxBytes: Int

        package init(path: String, bufferBytes: Int = 4 << 20, maxBytes: Int = 512 << 20) throws {
            self.path = path
            var fd = open(path, O_RDONLY | O_CLOEXEC | oDirectFlag)
            oDirect = fd >= 0
            if fd < 0 { fd = open(path, O_RDONLY | O_CLOEXEC) }
            guard fd >= 0 else { throw QuantError(path, "cannot open: \(String(cString: strerror(errno)))") }
            self.fd = fd
            var st = stat()
            size = fstat(fd, &st) == 0 ? Int(st.st_size) : 0
            self.bufferBytes = max(4096, bufferBytes / 4096 * 4096)
            buffer = .allocate(byteCount: self.bufferBytes, alignment: 4096)
            self.maxBytes = maxBytes
        }

        deinit {
            buffer.deallocate()
            close(fd)
        }

        /// One sequential read of the file (up to maxBytes): GB/s.
        package func read() throws -> Double {
            let total = min(size, maxBytes)
            if !oDirect { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) }
            defer { if !oDirect { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) } }
            var done = 0
            let t0 = Date()
            while done < total {
                let n = pread(fd, buffer, bufferBytes, off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw QuantError(path, "disk probe: read failed at offset \(done): \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                done += n
            }
            return Double(done) / max(Date().timeIntervalSince(t0), 1e-9) / 1e9
        }

        package var bytesPerRead: Int { min(size, maxBytes) }
        /// The file system took O_DIRECT for this file.
        package var usesDirectIO: Bool { oDirect }
    }

    package init(bytes: Int, bufferBytes: Int, oDirect: Bool, readsGBPerSecond reads: [Double]) {
        self.bytes = bytes; self.bufferBytes = bufferBytes; self.oDirect = oDirect; gbPerSecond = Stat(reads); readsGBPerSecond = reads
    }

    /// `reads` sequential reads of the file (its buffer is freed on return).
    package static func measure(path: String, reads: Int = 3) throws -> DiskProbe {
        let d = try Reader(path: path)
        var speeds: [Double] = []
        for _ in 0 ..< max(1, reads) { speeds.append(try d.read()) }
        return DiskProbe(bytes: d.bytesPerRead, bufferBytes: d.bufferBytes, oDirect: d.oDirect, readsGBPerSecond: speeds)
    }

    /// What streaming `bytesPerToken` at `tokensPerSecond` takes of the probe's median speed
    /// (1: the disk's sequential limit; time per token is 1/share of bytes ÷ probe speed).
    package func share(bytesPerToken: Double, tokensPerSecond: Double) -> Double {
        bytesPerToken * tokensPerSecond / 1e9 / gbPerSecond.median
    }
}

/// Linux's O_DIRECT (Glibc exports it only under _GNU_SOURCE): 0o40000 on x86-64, 0o200000 on arm64.
#if arch(x86_64)
let oDirectFlag: Int32 = 0o40000
#else
let oDirectFlag: Int32 = 0o200000
#endif
