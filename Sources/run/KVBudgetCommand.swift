import ArgumentParser
import Foundation
import Quant
import Runtime

struct KVBudgetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv-budget",
        abstract: "KV-cache bytes of an attention pattern from hyper-parameters alone (no model file).",
        discussion: """
        Slots per layer at T tokens: dense T; banded:W min(T, S + W); strided:W,K
        min(T, S) + min(W, T - S) + #{S ≤ j < T : j % K == 0}. Bytes = 2 (K and V) × slots ×
        n_kv_head × (head bytes: f32 4·hd, f16 2·hd, q8_0 hd + 4).
        Example: run kv-budget --layers 12 --kv-heads 12 --head-dim 64 --ctx 1024 --attention alternating:128 --tokens 512,4096
        """
    )

    @Option(name: .long, help: "n_layer") var layers: Int
    @Option(name: .long, help: "n_kv_head") var kvHeads: Int
    @Option(name: .long, help: "head_dim") var headDim: Int
    @Option(name: .long, help: "The model's context (bounds W).") var ctx: Int
    @Option(name: .long, help: "Comma-separated token counts.") var tokens: String = "512,4096"
    @Option(name: .long, help: "Attention patterns to report, separated by ';' (each as --attention takes).")
    var attention: String = "dense"
    @Option(name: .long, help: "Sinks.") var sinks: Int = 0
    @Option(name: .long, help: "f32, f16 or q8_0.") var kvType: String = "f16"
    @Flag(name: .long, help: "JSON lines instead of a table.") var json = false

    func run() throws {
        do {
            // Range-check before anything is sized by these numbers (a layer count of 10^11 once
            // built a 2.4 TB pattern array): the loader's limits.
            for (flag, v, limit) in [("--layers", layers, ConfigValidation.maxLayers), ("--kv-heads", kvHeads, ConfigValidation.maxHeads),
                                     ("--head-dim", headDim, ConfigValidation.maxHeadDim), ("--ctx", ctx, ConfigValidation.maxCtx)] {
                guard (1 ... limit).contains(v) else { throw ValidationError("\(flag) \(v) is outside 1...\(limit)") }
            }
            let t = try KVType.parse(kvType)
            let counts = try tokens.split(separator: ",").map { s -> Int in
                guard let v = Int(s), v > 0 else { throw ModelError("--tokens: '\(s)' is not a positive integer") }
                return v
            }
            var rows: [[String]] = [["pattern", "sinks", "kv"] + counts.map { "bytes@\($0)" }]
            for spec in attention.split(separator: ";").map(String.init) {
                // Sinks apply to windowed layers; an all-dense pattern has none.
                let s = spec.trimmingCharacters(in: .whitespaces) == "dense" ? 0 : sinks
                let pats = try AttentionConfig(attention: spec, sinks: s, kvType: t).layers(nLayer: layers, nCtx: ctx)
                let b = try counts.map { n -> Int in
                    guard let b = KVBudget.checkedBytes(layers: pats, sinks: s, kvType: t, nKVHead: kvHeads, headDim: headDim, tokens: n) else {
                        throw ValidationError("--tokens \(n): the KV bytes overflow a 64-bit count")
                    }
                    return b
                }
                if json {
                    struct Out: Encodable { var pattern: String; var sinks: Int; var kv_type: String; var tokens: [Int]; var bytes: [Int] }
                    print(jsonLine(Out(pattern: spec, sinks: s, kv_type: t.rawValue, tokens: counts, bytes: b)))
                } else {
                    rows.append([spec, "\(s)", t.rawValue] + b.map { formatBytes($0) })
                }
            }
            if !json { print(TextTable.render(rows)) }
        }
    }
}
