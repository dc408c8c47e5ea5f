import Foundation

/// SHA-256 of source files (the provenance record's digests), computed on a background thread.
/// Dropping the last reference stops the thread at its next chunk and waits for it, so no source
/// stays mapped by it after its owner is gone (a caller may rewrite the files next; a map of a
/// truncated file ends the process through the SIGBUS guard), and a reader that refuses its input
/// after starting one answers at once instead of after hashing every shard.
package final class SourceHasher: @unchecked Sendable {
    package let files: [URL]
    private let state: State

    private final class State: @unchecked Sendable {
        var result: Result<[SourceFileInfo], Error>?
        let done = DispatchSemaphore(value: 0)
        var joined = false
        let lock = NSLock()
        /// Set by deinit: the thread stops before its next chunk.
        private var stop = false
        private let stopLock = NSLock()
        var cancelled: Bool {
            get { stopLock.lock(); defer { stopLock.unlock() }; return stop }
            set { stopLock.lock(); stop = newValue; stopLock.unlock() }
        }
    }

    /// Bytes hashed between two looks at `cancelled`; the next chunk is read ahead meanwhile.
    static let chunk = 16 << 20

    /// - Parameter maps: maps of some of `files` already open (a checkpoint's shards): hashed
    ///   through them, so each page of a shard is mapped once for the hasher and the converter.
    package init(_ files: [URL], maps: [MappedFile] = []) {
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
                    let m = try maps.first { $0.url == u } ?? MappedFile(u)
                    var h = SHA256()
                    for at in stride(from: 0, to: m.count, by: Self.chunk) {
                        if state.cancelled { throw CancellationError() }
                        m.advise(at ..< at + 2 * Self.chunk, willNeed: true)  // this chunk and the next
                        h.update(UnsafeRawBufferPointer(rebasing: m.bytes[at ..< min(m.count, at + Self.chunk)]))
                    }
                    return SourceFileInfo(file: u.lastPathComponent, bytes: m.count, sha256: h.finalize())
                }
            }
            state.done.signal()
        }
        t.start()
    }

    deinit {
        state.cancelled = true
        join()
    }

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
