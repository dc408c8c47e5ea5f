import Foundation

/// Runs the package's built executables (and other programs) from tests, shared by every test target.
public enum Executables {
    /// .build/release/NAME, or a Missing error saying to build first.
    public static func url(_ name: String) throws -> URL {
        let u = SharedData.packageRoot.appendingPathComponent(".build/release/\(name)")
        guard FileManager.default.isExecutableFile(atPath: u.path) else {
            throw SharedData.Missing(description: "executable \(u.path) not found: run `swift build -c release` before the tests")
        }
        return u
    }

    public struct Result {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs .build/release/NAME with `args` (`stdin`: text fed to its standard input).
    public static func run(_ name: String, _ args: [String], environment: [String: String]? = nil, stdin: String? = nil) throws -> Result {
        try run(url: url(name), args, environment: environment, stdin: stdin)
    }

    /// Runs the program at `url` to completion (`environment` nil: this process's own).
    public static func run(url: URL, _ args: [String], environment: [String: String]? = nil, stdin: String? = nil) throws -> Result {
        let p = Process()
        p.executableURL = url
        p.arguments = args
        if let environment { p.environment = environment }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let input = stdin.map { _ in Pipe() }
        if let input { p.standardInput = input }
        try p.run()
        if let input, let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try input.fileHandleForWriting.close()
        }
        // Drain both pipes concurrently so a chatty child cannot block on a full pipe.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let g = DispatchGroup()
        g.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); g.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        g.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errBox.data, as: UTF8.self))
    }
}
