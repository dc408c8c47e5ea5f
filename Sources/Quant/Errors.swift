import Foundation

/// Every error QuantLM throws for bad input: it names the file (and the tensor or field)
/// and says what is wrong, in one line.
public struct QuantError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let message: String

    public init(_ file: String, _ message: String) {
        self.file = file
        self.message = message
    }

    public init(_ url: URL, _ message: String) {
        self.init(url.path, message)
    }

    public var description: String { "\(file): \(message)" }
}
