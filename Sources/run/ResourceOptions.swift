import ArgumentParser
import Foundation
import Runtime

/// --threads and --memory-budget: defined once for generate, logits, perplexity, compare and bench.
struct ResourceOptions: ParsableArguments {
    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .long, help: "Hard budget for the process's peak resident memory (baseline + weights, KV cache, scratch), e.g. 64M, 512K, 1G: layers and the classifier that do not fit stream from the file.")
    var memoryBudget: String?

    func validate() throws {
        guard (1 ... 256).contains(threads) else { throw ValidationError("--threads must be 1...256, got \(threads)") }
        _ = try budgetBytes()
    }

    /// --memory-budget in bytes (nil when absent); a usage error for bad values.
    func budgetBytes() throws -> Int? {
        guard let s = memoryBudget else { return nil }
        do { return try MemoryBudget.parse(s) } catch let e as MemoryBudget.ParseError { throw ValidationError(e.description) }
    }
}
