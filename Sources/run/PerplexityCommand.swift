import ArgumentParser
import Foundation
import Quant
import Runtime

struct EvalOptions: ParsableArguments {
    @Option(name: .long, help: "The text file to score (UTF-8).")
    var text: String?

    @Option(name: .long, help: "stride and chunks protocols: score these token ids instead of a text (a JSON array or comma/space-separated integers; chunks: BOS first if the model's encodings start with it).")
    var idsFile: String?

    @Flag(name: .long, help: "stride protocol: tokenize each --separator document on its own and join the token lists into one stream (each document starts with BOS where the tokenizer has one); for long texts.")
    var joinDocuments = false

    @OptionGroup var attention: AttentionOptions

    @Option(name: .long, help: "stride (one token stream, Hugging Face's sliding window) or documents.")
    var `protocol`: String = "stride"

    @Option(name: .long, help: "Window / document length in tokens (default: the model's n_ctx).")
    var ctx: Int?

    @Option(name: .long, help: "stride protocol: tokens a window advances (default: ctx / 2).")
    var stride: Int?

    @Option(name: .long, help: "stride protocol: score only the first N tokens of the text.")
    var maxTokens: Int?

    @Option(name: .long, help: "chunks protocol: score only the first N chunks (llama-perplexity's --chunks).")
    var chunks: Int?

    @Option(name: .long, help: "documents protocol: the line that separates documents.")
    var separator: String = "<|endoftext|>"

    @Option(name: .long, help: "documents protocol: score only the first N documents.")
    var maxDocs: Int?

    @OptionGroup var resources: ResourceOptions

    @Option(name: .long, help: "Count, over the scored positions, how often the full classifier's argmax is not among the K candidates of run generate's --screen K (the perplexity itself still uses every logit).")
    var screenVerify: Int?
    var threads: Int { resources.threads }

    @Option(name: .long, help: "Tokens per batched forward pass.")
    var batch: Int = 128

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        if let k = screenVerify, !(1 ... 4096).contains(k) { throw ValidationError("--screen-verify must be 1...4096, got \(k)") }
        guard (text == nil) != (idsFile == nil) else { throw ValidationError("give exactly one of --text and --ids-file") }
        if joinDocuments, `protocol` != "stride" { throw ValidationError("--join-documents needs --protocol stride") }
        if idsFile != nil, `protocol` == "documents" { throw ValidationError("--ids-file needs --protocol stride or chunks") }
        guard ["stride", "documents", "chunks"].contains(`protocol`) else {
            throw ValidationError("--protocol must be stride, documents or chunks, got '\(`protocol`)'")
        }
        if let c = ctx, c < 2 { throw ValidationError("--ctx must be at least 2") }
        if let s = stride, s < 1 { throw ValidationError("--stride must be ≥ 1 (got \(s))") }
        if let s = stride, let c = ctx, s > c { throw ValidationError("--stride (\(s)) must not exceed --ctx (\(c))") }
        if let m = maxDocs, m < 1 { throw ValidationError("--max-docs must be ≥ 1") }
        if let m = maxTokens, m < 2 { throw ValidationError("--max-tokens must be at least 2") }
        guard (1 ... 4096).contains(batch) else { throw ValidationError("--batch must be 1...4096") }
    }

    func evaluate(_ paths: [String]) throws -> PerplexityReport {
        let source = text ?? idsFile!
        guard let data = FileManager.default.contents(atPath: source) else { throw QuantError(source, "cannot read file") }
        guard let s = String(data: data, encoding: .utf8) else { throw QuantError(source, "is not valid UTF-8") }
        let budget = try resources.budgetBytes()
        // Under a budget the KV cache holds --ctx positions (the windows' length), not n_ctx.
        let models = try paths.map {
            var o = LoadOptions(threads: threads, maxBatch: batch, attention: attention.config,
                                memoryBudget: budget, kvPositions: budget == nil ? nil : ctx)
            o.screen = screenVerify.map { ($0, true) }
            return try LoadedModel(path: $0, options: o)
        }
        var ids: [Int32]?
        if idsFile != nil {
            let fields = s.split(whereSeparator: { " \n\t\r,[]".contains($0) })
            ids = try fields.map { f in
                guard let v = Int32(f) else { throw QuantError(source, "'\(f)' is not a token id") }
                return v
            }
        } else if joinDocuments {
            ids = Perplexity.encodeDocuments(s, separator: separator, tokenizer: models[0].tokenizer)
        }
        let nCtx = models.map { $0.model.shape.nCtx }.min()!
        let c = ctx ?? nCtx
        let proto: PerplexityProtocol
        switch `protocol` {
        case "stride": proto = .stride(ctx: c, stride: stride ?? max(1, c / 2), maxTokens: maxTokens)
        case "chunks": proto = .chunks(ctx: c, maxChunks: chunks)
        default: proto = .documents(separator: separator, maxDocs: maxDocs, ctx: c)
        }
        var bar: ProgressBar?
        let report = try Perplexity.evaluate(models, names: paths, text: s, proto: proto, tokenIDs: ids) { done, total in
            if bar == nil { bar = ProgressBar("scoring", total: Double(total), unit: " tok", enabled: !json) }
            bar?.update(Double(done))
        }
        bar?.finish()
        if let k = screenVerify {
            for (p, m) in zip(paths, models) {
                guard let sc = m.weights.logitScreen else { continue }
                let line = String(format: "%@: --screen %d: full-classifier argmax outside the screen's top %d at %d of %d positions (%.3f%%); screen %@ built in %.2f s",
                                  p, k, k, sc.argmaxMissed, sc.rowsChecked, 100 * Double(sc.argmaxMissed) / Double(max(1, sc.rowsChecked)),
                                  formatBytes(sc.byteCount), sc.buildSeconds)
                FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
            }
        }
        var r = report
        r.memoryPlans = models.map { $0.memoryReport(tokens: r.tokensScored) }
        r.memory = MemoryStats.current()
        return r
    }

    func print(_ r: PerplexityReport) {
        if json {
            Swift.print(jsonLine(r))
            return
        }
        let how: String
        switch r.protocolName {
        case "stride": how = "stride protocol, ctx \(r.ctx), stride \(r.stride ?? 0)"
        case "chunks": how = "chunks protocol (llama-perplexity's), ctx \(r.ctx)"
        default: how = "documents protocol, \(r.documents ?? 0) documents, ctx \(r.ctx)"
        }
        Swift.print("\(text ?? idsFile ?? ""): \(r.textTokens) tokens; \(how); \(r.tokensScored) scored; \(String(format: "%.1f", r.seconds)) s, \(String(format: "%.0f", r.tokensPerSecond)) tok/s")
        var rows: [[String]] = [["model", "ppl", "Δppl", "Δ%", "KL mean", "KL p99", "top-1 %", "bits/w", "disk bits/w", "file"]]
        for m in r.models {
            rows.append([m.model, String(format: "%.4f", m.perplexity),
                         m.deltaPerplexity.map { String(format: "%+.4f", $0) } ?? "",
                         m.deltaPercent.map { String(format: "%+.3f%%", $0) } ?? "",
                         m.klMean.map { String(format: "%.5f", $0) } ?? "",
                         m.klP99.map { String(format: "%.5f", $0) } ?? "",
                         m.top1Agreement.map { String(format: "%.2f", $0) } ?? "",
                         String(format: "%.3f", m.bitsPerWeight), String(format: "%.3f", m.storedBitsPerWeight),
                         formatBytes(m.fileBytes)])
        }
        Swift.print(TextTable.render(rows))
        if let m = r.memory, let plans = r.memoryPlans {
            Swift.print("memory: peak RSS \(formatBytes(m.peakRSS)) (anon \(formatBytes(m.peakRSSAnon)), file \(formatBytes(m.peakRSSFile))) | "
                        + plans.map(budgetSummary).joined(separator: " | "))
        }
    }
}

struct Perplexity_: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Measure perplexity; with --reference, compare against a float original.",
        discussion: """
        --protocol stride: the text is one token stream; windows of --ctx tokens advance by --stride and each token is scored once (Hugging Face's sliding-window protocol, behind the published GPT-2 WikiText-2 numbers).

        --protocol chunks: llama.cpp's llama-perplexity: non-overlapping --ctx-token chunks of the whole text, the first token of each replaced by BOS when the tokenizer starts with one, only each chunk's second half scored.

        --protocol documents: the text is split on --separator lines; each document is scored on its own from BOS, truncated to --ctx tokens.

        With --reference F32.qlm both models run over the same windows, and the report adds Δppl, the KL divergence of this model's next-token distribution from the reference's (mean and 99th percentile) and top-1 agreement.

        Examples:
          run perplexity stories-q4.qlm --reference stories-f32.qlm \\
              --text tinystories_valid_first1000.txt \\
              --protocol documents --max-docs 200 --ctx 512
          run perplexity gpt2.qlm --text wiki.test.raw \\
              --ctx 1024 --stride 512 --json
        """
    )

    @Argument(help: "The model to score.")
    var model: String

    @Option(name: .long, help: "A float (or any) original to compare against.")
    var reference: String?

    @OptionGroup var eval: EvalOptions

    func run() throws {
        do {
            let paths = (reference.map { [$0] } ?? []) + [model]
            eval.print(try eval.evaluate(paths))
        }
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One table for a reference and several quantized variants over the same text.",
        discussion: """
        Example:
          run compare f32.qlm f16.qlm q8_0.qlm q4_0.qlm q4_1.qlm \\
              --text tinystories_valid_first1000.txt \\
              --protocol documents --max-docs 200 --ctx 512
        """
    )

    @Argument(help: "The reference first, then the variants.")
    var models: [String]

    @OptionGroup var eval: EvalOptions

    func validate() throws {
        guard models.count >= 2 else { throw ValidationError("give a reference and at least one variant") }
    }

    func run() throws {
        do { eval.print(try eval.evaluate(models)) }
    }
}

/// Plain aligned columns.
enum TextTable {
    static func render(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        var widths = [Int](repeating: 0, count: first.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        var lines: [String] = []
        for (ri, r) in rows.enumerated() {
            lines.append(r.enumerated().map { i, c in i == 0 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[i] - c.count) + c }.joined(separator: "  "))
            if ri == 0 { lines.append(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
        return lines.joined(separator: "\n")
    }
}
