import Foundation

/// SHA-256 of source files (the provenance record's digests), computed on a background thread.
/// Dropping the last reference waits for that thread, so no source stays mapped by it after its
/// owner is gone (a caller may rewrite the files next; a map of a truncated file ends the
/// process through the SIGBUS guard).
package final class SourceHasher: @unchecked Sendable {
    package let files: [URL]
    private let state: State

    private final class State: @unchecked Sendable {
        var result: Result<[SourceFileInfo], Error>?
        let done = DispatchSemaphore(value: 0)
        var joined = false
        let lock = NSLock()
    }

    package init(_ files: [URL]) {
        self.files = files
        let state = State()
        self.state = state
        if files.isEmpty {
            state.result = .success([])
            state.done.signal()
            return
        }
        // The thread holds only `state`, never self: deinit can run (and wait) while it works.
        let t = Thread {
            state.result = Result {
                try files.map { u in
                    let m = try MappedFile(u, populate: true)  // one mmap call maps every page: no fault per page
                    return SourceFileInfo(file: u.lastPathComponent, bytes: m.count, sha256: SHA256.hex(of: m.bytes))
                }
            }
            state.done.signal()
        }
        t.start()
    }

    deinit { join() }

    /// Whether `url` is one of the files this hasher hashes.
    package func covers(_ url: URL) -> Bool { files.contains(url) }

    /// Waits for the hashing thread once; later calls return at once.
    package func join() {
        state.lock.lock()
        defer { state.lock.unlock() }
        if !state.joined { state.done.wait(); state.joined = true }
    }

    package func wait() throws -> [SourceFileInfo] {
        join()
        return try state.result!.get()
    }

    /// The digests of `files`, in that order, each from the first hasher that covers it.
    package static func digests(of files: [URL], from hashers: [SourceHasher]) throws -> [SourceFileInfo] {
        var found: [URL: SourceFileInfo] = [:]
        for h in hashers {
            for (u, info) in zip(h.files, try h.wait()) where found[u] == nil { found[u] = info }
        }
        return try files.map { u in
            guard let info = found[u] else { throw QuantError(u, "internal: no hasher covers this source file") }
            return info
        }
    }
}
