import Foundation

/// `--memory-budget` values: a positive whole number of bytes, optionally followed by K, M or G
/// (binary: 1K = 1024), case-insensitive, with an optional trailing "B" or "iB" ("64M", "128m",
/// "1G", "512K", "1048576", "64MiB").
package enum MemoryBudget {
    package struct ParseError: Error, CustomStringConvertible {
        package let description: String
    }

    package static func parse(_ text: String) throws -> Int {
        let s = text.trimmingCharacters(in: .whitespaces)
        func bad(_ why: String) -> ParseError {
            ParseError(description: "--memory-budget '\(text)' \(why) (examples: auto, none, 64M, 512K, 1G, 1048576)")
        }
        guard !s.isEmpty else { throw bad("is empty") }
        if s.hasPrefix("-") { throw bad("is negative") }
        var body = Substring(s.lowercased())
        if body.hasSuffix("ib") {
            body = body.dropLast(2)
            guard let u = body.last, "kmg".contains(u) else { throw bad("has an unknown unit") }
        } else if body.hasSuffix("b") {
            body = body.dropLast()
        }
        var shift = 0
        if let last = body.last, !last.isNumber {
            switch last {
            case "k": shift = 10
            case "m": shift = 20
            case "g": shift = 30
            default: throw bad("has an unknown unit '\(last)'")
            }
            body = body.dropLast()
        }
        guard !body.isEmpty, body.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(body) else {
            throw bad("is not a number of bytes")
        }
        guard n > 0 else { throw bad("must be greater than 0") }
        let (v, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
        guard !overflow, v <= 1 << 50 else { throw bad("is too large") }
        return v
    }

    /// The shortest exact spelling: "64M", "1G", "512K", else plain bytes.
    package static func format(_ bytes: Int) -> String {
        for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] where bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(unit)"
        }
        return "\(bytes)"
    }
}

/// MiB with one decimal, as the planner's messages print sizes.
func mib(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / 1048576) }
