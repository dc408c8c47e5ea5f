import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A one-line progress bar with rate and ETA on stderr. Draws only when stderr is a
/// terminal (so logs and pipes stay clean) and at most ~10 times a second.
package final class ProgressBar {
    private let label: String
    private let total: Double
    private let unit: String
    private let start = Date()
    private var lastDraw = Date.distantPast
    private let enabled: Bool

    package init(_ label: String, total: Double, unit: String = "", enabled: Bool = true) {
        self.label = label
        self.total = max(total, 1)
        self.unit = unit
        self.enabled = enabled && isatty(2) != 0
    }

    package func update(_ done: Double) {
        guard enabled else { return }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) > 0.1 || done >= total else { return }
        lastDraw = now
        let frac = min(1, done / total)
        let width = 30
        let filled = Int(frac * Double(width))
        let elapsed = now.timeIntervalSince(start)
        let rate = done / max(elapsed, 1e-9)
        let eta = frac > 0 ? elapsed * (1 - frac) / frac : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let line = String(format: "\r%@ %@ %3.0f%%  %@%@/s  ETA %@ ", label, bar, frac * 100,
                          Self.human(rate), unit, Self.duration(eta))
        FileHandle.standardError.write(line.data(using: .utf8)!)
    }

    package func finish() {
        guard enabled else { return }
        FileHandle.standardError.write("\r\u{1B}[2K".data(using: .utf8)!)
    }

    static func human(_ x: Double) -> String {
        if x >= 1e9 { return String(format: "%.1fG", x / 1e9) }
        if x >= 1e6 { return String(format: "%.1fM", x / 1e6) }
        if x >= 1e3 { return String(format: "%.1fk", x / 1e3) }
        return String(format: "%.0f", x)
    }

    static func duration(_ s: Double) -> String {
        s >= 60 ? String(format: "%dm%02ds", Int(s) / 60, Int(s) % 60) : String(format: "%.1fs", s)
    }
}

/// Writes a line to stderr.
package func printError(_ s: String) {
    FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
}

/// Human-readable byte counts (MiB = 2^20).
package func formatBytes(_ n: Int) -> String {
    let x = Double(n)
    if x >= 1_073_741_824 { return String(format: "%.2f GiB", x / 1_073_741_824) }
    if x >= 1_048_576 { return String(format: "%.2f MiB", x / 1_048_576) }
    if x >= 1024 { return String(format: "%.1f KiB", x / 1024) }
    return "\(n) B"
}

/// Encodes a Codable value as one line of JSON (sorted keys).
package func jsonLine<T: Encodable>(_ value: T) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(data: try! enc.encode(value), encoding: .utf8)!
}
