// Shared by every harness in scripts/fuzz (compiled into each one by run.sh).
import Foundation

enum Fuzz {
    /// A scratch file per harness process (the readers take paths: they memory-map files).
    static func scratch(_ name: String) -> String {
        let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        return "\(dir)/quantlm-fuzz-\(getpid())-\(name)"
    }

    static func write(_ bytes: UnsafeRawBufferPointer, to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(fd >= 0, "cannot write \(path)")
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            precondition(n > 0, "write failed")
            done += n
        }
        close(fd)
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var seen = Set<String>()

    /// Runs `body`; a thrown error must be one line, and name `file` (the promise of
    /// docs/reliability.md). A violation aborts (a libFuzzer finding) when FUZZ_STRICT=1,
    /// else it is printed once per distinct message start.
    static func expectOneLineError(naming file: String, _ body: () throws -> Void) {
        do { try body() } catch {
            let text = "\(error)"
            let ok = !text.contains("\n") && text.contains(file)
            if ok { return }
            if ProcessInfo.processInfo.environment["FUZZ_STRICT"] == "1" {
                fatalError("error does not name the file in one line: \(text)")
            }
            let key = String(text.replacingOccurrences(of: file, with: "FILE").prefix(60))
            lock.lock(); let fresh = seen.insert(key).inserted; lock.unlock()
            if fresh { FileHandle.standardError.write(Data("FUZZ-NOTE error without the file name or on several lines: \(text.prefix(300))\n".utf8)) }
        }
    }
}
