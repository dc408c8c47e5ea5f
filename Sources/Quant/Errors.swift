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
}
