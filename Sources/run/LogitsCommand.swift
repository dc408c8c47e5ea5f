import ArgumentParser
import Foundation
import Quant
import Runtime

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the logits of every position of a token sequence (raw little-endian f32, [T, vocab]).",
        discussion: """
        For checking QuantLM against another implementation.
        Example: run logits gpt2.qlm --ids 464,2068,7586 -o logits.f32
        """
    )

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Comma-separated token ids.")
    var ids: String

    @Option(name: .shortAndLong, help: "Output file.")
    var output: String

    func run() throws {
        do {
            let tokens = try ids.split(separator: ",").map { s -> Int32 in
                guard let v = Int32(s.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--ids: '\(s)' is not an integer") }
                return v
            }
            guard !tokens.isEmpty else { throw ValidationError("--ids is empty") }
            let lm = try options.load()
            var out = Data()
            try lm.model.forward(tokens, startPos: 0, logitRows: 0 ..< tokens.count) { _, logits in
                out.append(UnsafeRawBufferPointer(logits).bindMemory(to: UInt8.self))
            }
            guard FileManager.default.createFile(atPath: output, contents: out) else { throw QuantError(output, "cannot write") }
            printError("\(tokens.count) × \(lm.model.shape.vocabSize) logits → \(output)")
        }
    }
}
