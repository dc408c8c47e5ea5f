import ArgumentParser
import Foundation
import Runtime

/// --threads and --memory-budget: defined once for generate, chat, serve, logits, perplexity, compare and bench.
struct ResourceOptions: ParsableArguments {
    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .long, help: "Budget for the process's peak resident memory (baseline + weights, KV cache, scratch): auto (default: what the host and its memory cgroup allow, less room for the page cache; the model is mapped whole when it fits, else layers stream from the file and one line says so), none (map everything, no limit), or a size such as 64M, 512K, 1G: layers and the classifier that do not fit stream from the file.")
    var memoryBudget: String = "auto"

    func validate() throws {
        guard (1 ... 256).contains(threads) else { throw ValidationError("--threads must be 1...256, got \(threads)") }
        _ = try budget()
    }

    /// --memory-budget parsed; a usage error for bad values.
    func budget() throws -> BudgetSetting {
        do { return try BudgetSetting.parse(memoryBudget) } catch let e as MemoryBudget.ParseError { throw ValidationError(e.description) }
    }

    /// LoadOptions with this budget (explicit bytes, or auto).
    func apply(to o: inout LoadOptions) throws {
        let b = try budget()
        o.memoryBudget = b.explicitBytes
        o.autoBudget = b == .auto
    }
}
