import Foundation

/// Every error QuantLM throws for bad input: it names the file (and the tensor or field)
/// and says what is wrong, in one line.
package struct QuantError: Error, CustomStringConvertible, Equatable {
    package let file: String
    package let message: String

    /// Control characters (a newline inside a corrupt name, say) are shown escaped, so the
    /// error stays one line whatever the input held.
    package init(_ file: String, _ message: String) {
        self.file = file
        self.message = message.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
            ? String(message.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined())
            : message
    }

    package init(_ url: URL, _ message: String) {
        self.init(url.path, message)
    }

    package var description: String { "\(file): \(message)" }

    /// A name read from a file, as an error shows it: control characters, invalid UTF-8
    /// (U+FFFD) and other non-printing scalars escaped, and cut after 64 shown characters (with
    /// the byte count) so a binary 255-byte name cannot flood the line.
    package static func shown(_ name: String) -> String {
        var out = ""
        for u in name.unicodeScalars {
            if out.unicodeScalars.count >= 64 { return out + "... (\(name.utf8.count) bytes)" }
            let v = u.value
            out += (v < 0x20 || (v >= 0x7F && v < 0xA0) || v == 0xFFFD || (0xD800 ... 0xDFFF).contains(v))
                ? "\\u{\(String(v, radix: 16))}" : String(u)
        }
        return out
    }
}
