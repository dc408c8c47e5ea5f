import CKernels
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file. Unmapped when released.
package final class MappedFile: @unchecked Sendable {
    package let url: URL
    package let bytes: UnsafeRawBufferPointer
    /// The SIGBUS guard's slot for this map (-1: none).
    private var guardSlot: Int32 = -1

    /// - Parameter populate: ask the kernel to fault every page in now (MAP_POPULATE on Linux),
    ///   which makes the first pass over the weights run at memory speed.
    package init(_ url: URL, populate: Bool = false) throws {
        self.url = url
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw QuantError(url, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw QuantError(url, "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw QuantError(url, "not a regular file") }
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        var flags = MAP_PRIVATE
        #if os(Linux)
        if populate { flags |= MAP_POPULATE }
        #endif
        let p = mmap(nil, size, PROT_READ, flags, fd, 0)
        guard let p, p != MAP_FAILED else { throw QuantError(url, "mmap failed: \(String(cString: strerror(errno)))") }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
        // A page past the file's end faults with SIGBUS (the file was truncated or rewritten
        // in place under this process): exit with this line instead of dying on the signal.
        guardSlot = qlm_guard_map(p, size, "Error: \(url.path): the file changed while it was mapped (truncated or rewritten in place); replace model files by rename (mv), not in place")
    }

    package var count: Int { bytes.count }

    /// Tell the kernel a range will be needed soon / is no longer needed (page-aligned inside).
    package func advise(_ range: Range<Int>, willNeed: Bool) {
        guard let base = bytes.baseAddress, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (range.lowerBound / page) * page
        let hi = min(bytes.count, range.upperBound)
        guard hi > lo else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + lo), hi - lo, willNeed ? MADV_WILLNEED : MADV_DONTNEED)
    }

    deinit {
        qlm_guard_unmap(guardSlot)
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}
