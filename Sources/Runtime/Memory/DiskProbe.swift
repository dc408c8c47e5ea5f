import Foundation
import Quant
#if canImport(Glibc)
import Glibc
#endif

/// The disk's sequential read speed for a model file, measured in the same run as what it is
/// compared with: O_DIRECT reads of the file from its start (no page cache, so nothing is
/// charged to the process or its cgroup and nothing cached makes it look faster), through one
/// aligned 4 MiB buffer, each read cut into the layer loader's pieces read at once
/// (QUANTLM_STREAM_PIECES, `TensorReader.readDirect`: the same reads in flight as the loader).
/// Where the file system refuses O_DIRECT the read is buffered, the file's pages dropped before
/// and after (`oDirect` false). `run bench` measures the loader's own pattern between decode
/// reps instead (`LayerStreamer.probeDisk`: its buffers, its read size), `pattern` "loader".
package struct DiskProbe: Codable, Sendable {
    package var bytes: Int
    package var bufferBytes: Int
    package var oDirect: Bool
    /// GB/s (1e9 bytes per second) of the reads, and each read's.
    package var gbPerSecond: Stat
    package var readsGBPerSecond: [Double]?
    /// Reads in flight (each buffer's read cut into this many pieces read at once).
    package var pieces: Int?
    /// "file": this reader's 4 MiB reads; "loader": the layer loader's buffers and reader, between reps.
    package var pattern: String?

    enum CodingKeys: String, CodingKey {
        case bytes, bufferBytes = "buffer_bytes", oDirect = "o_direct", gbPerSecond = "gb_per_second", readsGBPerSecond = "reads_gb_per_second"
        case pieces, pattern
    }

    /// One reader: the file, its reader and the aligned buffer, so reads can be interleaved
    /// with what they are compared with.
    package final class Reader {
        let path: String
        let reader: TensorReader
        let oDirect: Bool
        let size: Int
        let buffer: UnsafeMutableRawPointer
        let bufferBytes: Int
        let maxBytes: Int

        package init(path: String, bufferBytes: Int = 4 << 20, maxBytes: Int = 512 << 20, pieces: Int? = nil) throws {
            self.path = path
            reader = try TensorReader(path: path)
            reader.openDirect(pieces: try pieces ?? TensorReader.directPieces())
            oDirect = reader.direct
            var st = stat()
            size = stat(path, &st) == 0 ? Int(st.st_size) : 0
            self.bufferBytes = max(4096, bufferBytes / 4096 * 4096)
            buffer = MemoryPlan.allocateReadBuffer(self.bufferBytes)   // 4 MiB: two huge pages, as the loader's buffers
            self.maxBytes = maxBytes
        }

        deinit { buffer.deallocate() }

        /// One sequential read of the file (up to maxBytes): GB/s.
        package func read() throws -> Double {
            let total = min(size, maxBytes)
            if !oDirect { reader.dontNeed(offset: 0, count: 0) }
            defer { if !oDirect { reader.dontNeed(offset: 0, count: 0) } }
            var done = 0
            let t0 = Date()
            while done < total {
                let n = min(bufferBytes, total - done)
                var read = false
                if reader.direct { read = try reader.readDirect(into: buffer, range: done ..< done + (n + 4095) / 4096 * 4096, atLeast: n) }
                if !read { try reader.readFully(buffer, count: n, offset: done) }
                done += n
            }
            return Double(done) / max(Date().timeIntervalSince(t0), 1e-9) / 1e9
        }

        package var bytesPerRead: Int { min(size, maxBytes) }
        /// The file system took O_DIRECT for this file.
        package var usesDirectIO: Bool { oDirect }
        /// Reads in flight per buffer.
        package var pieces: Int { reader.direct ? reader.piecesFor(bufferBytes) : 1 }
    }

    package init(bytes: Int, bufferBytes: Int, oDirect: Bool, readsGBPerSecond reads: [Double], pieces: Int? = nil, pattern: String? = nil) {
        self.bytes = bytes; self.bufferBytes = bufferBytes; self.oDirect = oDirect; gbPerSecond = Stat(reads); readsGBPerSecond = reads
        self.pieces = pieces; self.pattern = pattern
    }

    /// `reads` sequential reads of the file (its buffer is freed on return).
    package static func measure(path: String, reads: Int = 3) throws -> DiskProbe {
        let d = try Reader(path: path)
        var speeds: [Double] = []
        for _ in 0 ..< max(1, reads) { speeds.append(try d.read()) }
        return DiskProbe(bytes: d.bytesPerRead, bufferBytes: d.bufferBytes, oDirect: d.oDirect, readsGBPerSecond: speeds,
                         pieces: d.pieces, pattern: "file")
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
