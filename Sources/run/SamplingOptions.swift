import ArgumentParser
import Runtime

/// --temperature, --top-k, --top-p and --seed: defined once for generate and chat.
struct SamplingOptions: ParsableArguments {
    @Option(name: .long, help: "Sampling temperature; 0 = greedy.")
    var temperature: Float = 0.8

    @Option(name: .long, help: "Sample among the K most probable tokens (0 = off).")
    var topK: Int = 0

    @Option(name: .long, help: "Nucleus sampling: the smallest set with probability ≥ P (1 = off).")
    var topP: Float = 0.9

    @Option(name: .long, help: "Random seed.")
    var seed: UInt64 = 42

    func validate() throws {
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be ≥ 0") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
    }

    var config: SamplingConfig { SamplingConfig(temperature: temperature, topK: topK, topP: topP, seed: seed) }
}

/// --template: the chat format of `run chat` and `run serve`'s /v1/chat/completions.
struct TemplateOption: ParsableArguments {
    @Option(name: .long, help: "Chat format: auto (from the model's template or vocabulary), chatml or gemma.")
    var template: String = "auto"

    func validate() throws {
        guard (["auto"] + ChatFormat.allCases.map(\.rawValue)).contains(template) else {
            throw ValidationError("--template must be auto, \(ChatFormat.allCases.map(\.rawValue).joined(separator: " or ")), got '\(template)'")
        }
    }
}
