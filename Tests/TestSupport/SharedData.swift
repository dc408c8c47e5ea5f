import Foundation

/// Shared by every test target. Locates ../shared (the read-only real data) from QUANTLM_SHARED or next to the package.
/// A test that needs it throws (and so fails, never skips) with a message saying how to provide it.
public enum SharedData {
    public struct Missing: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }
    public static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    public static func root() throws -> URL {
        let env = ProcessInfo.processInfo.environment["QUANTLM_SHARED"]
        let candidate = env.map { URL(fileURLWithPath: $0) }
            ?? packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDir), isDir.boolValue else {
            throw Missing(description: "shared data folder not found at \(candidate.path): set QUANTLM_SHARED or put shared/ next to the package")
        }
        return candidate
    }
    public static func path(_ relative: String) throws -> URL {
        let url = try root().appendingPathComponent(relative)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw Missing(description: "shared data file missing: \(url.path) (QUANTLM_SHARED points at the wrong folder?)")
        }
        return url
    }

    /// A real model fetched by scripts/fetch_models.sh: QUANTLM_MODELS or ~/.cache/quantlm/models.
    /// Missing → the test fails, saying how to get it.
    public static func model(_ name: String) throws -> URL {
        let env = ProcessInfo.processInfo.environment["QUANTLM_MODELS"]
        let dir = env.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/quantlm/models")
        let u = dir.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: u.path) else {
            let how = name.hasPrefix("gemma") ? "bash scripts/fetch_models.sh --gemma" : "bash scripts/fetch_models.sh"
            throw Missing(description: "model \(u.path) not found: run `\(how)` (or set QUANTLM_MODELS)")
        }
        return u
    }
}
