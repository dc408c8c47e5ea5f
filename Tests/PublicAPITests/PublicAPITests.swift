import Foundation
import QuantLM
import TestSupport
import XCTest

/// A program that uses only QuantLM's public Swift API (`Model`, `generate`), as an app would:
/// the README's example, compiled and run. The .qlm comes from the `convert` command line.
final class PublicAPITests: XCTestCase {
    static func storiesFile() throws -> String {
        let out = TestFiles.tempRoot.appendingPathComponent("public-api.qlm")
        if !FileManager.default.fileExists(atPath: out.path) {
            let r = try Executables.run("convert", [try SharedData.path("models/stories260K/stories260K.bin").path,
                                                    "--tokenizer", try SharedData.path("models/stories260K/tok512.bin").path,
                                                    "-o", out.path, "--type", "q8_0", "--quiet"])
            guard r.status == 0 else { throw SharedData.Missing(description: "convert failed: \(r.stderr)") }
        }
        return out.path
    }

    func testStreamsTwentyTokensThenCancelsASecondGenerationAfterThree() async throws {
        // The README's example.
        let model = try Model(path: try Self.storiesFile(), options: .init(maxContext: 512))
        var text = "", tokens: [Int32] = []
        for try await piece in model.generate("Once upon a time", .init(maxTokens: 20)) {
            text += piece.text
            tokens += piece.tokens
        }
        XCTAssertEqual(tokens.count, 20)
        XCTAssertTrue(text.hasPrefix(", there was a little girl named Lily"), text)   // run.c's greedy text

        // A second generation, cancelled by its consumer after 3 tokens: the stream ends and
        // the model is free for the next one at once.
        let task = Task { () -> Int in
            var n = 0
            for try await piece in model.generate("Once upon a time", .init(maxTokens: 400, stopAtEndOfText: false)) {
                n += piece.tokens.count
                if n >= 3 { break }   // leaving the loop cancels the stream
            }
            return n
        }
        let seen = try await task.value
        XCTAssertGreaterThanOrEqual(seen, 3)
        var again: [Int32] = []
        for try await piece in model.generate("Once upon a time", .init(maxTokens: 20)) { again += piece.tokens }
        XCTAssertEqual(again, tokens, "same greedy tokens after a cancelled generation")

        // Task cancellation works the same way.
        let t2 = Task { () -> Int in
            var n = 0
            for try await piece in model.generate("Once upon a time", .init(maxTokens: 100_000, stopAtEndOfText: false)) {
                n += piece.tokens.count
                if n == 3 { withUnsafeCurrentTask { $0?.cancel() } }
            }
            return n
        }
        let n2 = try await t2.value
        XCTAssertLessThan(n2, 400, "generation kept going after its task was cancelled")
    }

    func testBadInputsAreErrors() async throws {
        XCTAssertThrowsError(try Model(path: "/nonexistent.qlm"))
        XCTAssertThrowsError(try Model(path: try Self.storiesFile(), options: .init(kvType: "q3")))
    }
}
