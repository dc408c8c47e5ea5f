import ArgumentParser
import Foundation
import Quant
import Runtime

@main
struct RunCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run QuantLM models: generate text, tokenize, measure perplexity, benchmark.",
        discussion: """
        Examples:
          run generate stories.qlm --prompt "Once upon a time" \\
              --max-tokens 200 --temperature 0
          run perplexity q4.qlm --reference f32.qlm --text story.txt
          run bench gpt2-q8.qlm --threads 2
          run tokenize --tokenizer gpt2-tokenizer/ --text file.txt
        """,
        subcommands: [Generate.self, Chat.self, Perplexity_.self, Compare.self, BenchCmd.self, Tokenize.self, Logits.self, KVBudgetCommand.self, Serve.self]
    )
}

struct ModelOptions: ParsableArguments {
    @Argument(help: "The .qlm model file.")
    var model: String

    @OptionGroup var resources: ResourceOptions

    @Flag(name: .long, help: "Check every tensor's checksum before running.")
    var verify = false

    @OptionGroup var attention: AttentionOptions

    var threads: Int { resources.threads }

    /// `plannedKV`: KV bytes the plan counts instead of the cache's own (a server's pool).
    func load(maxBatch: Int = 128, sizing: ((any Tokenizer, ModelShape) -> RunSizing)? = nil, plannedKV: ((Int?, Int) -> Int)? = nil,
              screen: Int? = nil) throws -> LoadedModel {
        var o = LoadOptions(threads: threads, maxBatch: maxBatch, verifyChecksums: verify,
                            attention: attention.config, sizing: sizing)
        try resources.apply(to: &o)
        o.plannedKVBytes = plannedKV
        o.screen = screen.map { ($0, false) }
        return try LoadedModel(path: model, options: o)
    }
}


/// "budget 64M = baseline 26.1 MiB + margin 3.0 MiB + planned 34.2 MiB, streaming 24 layers + classifier: 190.1 MiB/tok" for closing lines.
func budgetSummary(_ m: MemoryReport) -> String {
    var s = "budget \(m.budgetBytes.map { MemoryBudget.format($0) } ?? "none")"
    s += m.budgetBytes == nil ? ", baseline \(formatBytes(m.baselineBytes)), planned \(formatBytes(m.plannedBytes))"
        : " = baseline \(formatBytes(m.baselineBytes)) + margin \(formatBytes(m.marginBytes)) + planned \(formatBytes(m.plannedBytes))"
    var what: [String] = []
    if m.streamedLayers > 0 { what.append("\(m.streamedLayers) layers") }
    if m.classifierChunks > 0 { what.append("classifier (\(m.classifierChunks) chunks)") }
    if m.embeddingStreamed { what.append("embedding rows") }
    if !what.isEmpty {
        s += ", streaming \(what.joined(separator: " + ")): \(formatBytes(Int(m.streamedBytesPerToken)))/tok"
    }
    return s
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt, streaming it to stdout.",
        discussion: """
        Temperature 0 is greedy decoding; the same seed gives the same text. A closing line on stderr reports prompt and decode tokens/s, peak memory and the KV cache size; --json prints everything (text, token ids, speeds, memory) as one JSON object instead. --steps counts positions including the prompt, like llama2.c's -n.

        Examples:
          run generate stories.qlm --prompt "Once upon a time" \\
              --temperature 0 --steps 200
          run generate gpt2.qlm --prompt "Hello" --top-p 0.9 --seed 7 --json
        """
    )

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "The prompt text.")
    var prompt: String = ""

    @Option(name: .long, help: "Read the prompt from this UTF-8 file instead (long prompts).")
    var promptFile: String?

    @Option(name: .long, help: "New tokens to generate at most.")
    var maxTokens: Int = 256

    @Option(name: .long, help: "Total positions including the prompt, as llama2.c's -n (overrides --max-tokens).")
    var steps: Int?

    @OptionGroup var sampling: SamplingOptions

    @Flag(name: .long, help: "Print one JSON object instead of streaming text.")
    var json = false

    @Flag(name: .long, help: "Keep going past end/begin-of-text tokens (a new story starts) until --max-tokens.")
    var ignoreEos = false

    @Option(name: .long, help: "Speculative decoding: lookup (draft the continuation of the latest earlier match of the last tokens in the prompt and text) or draft (a small model, --draft). Greedy output is plain decoding's; sampling keeps its distribution.")
    var speculative: String?

    @Option(name: .long, help: "The most tokens drafted per verification pass (adapted to what is accepted unless --fixed-draft-len).")
    var draftLen: Int = SpeculativeOptions.defaultDraftLength

    @Flag(name: .long, help: "Always draft --draft-len tokens (where available) instead of adapting the length.")
    var fixedDraftLen = false

    @Option(name: .long, help: "Lookup: the longest n-gram matched (longest first, down to 1).")
    var ngram: Int = 4

    @Option(name: .long, help: "The draft model for --speculative draft: a .qlm file with the same vocabulary (e.g. a low-bit or layer-skipped variant).")
    var draft: String?

    @Option(name: .long, help: ScreenHelp.text)
    var screen: Int?

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be ≥ 0") }
        if let s = steps, s <= 0 { throw ValidationError("--steps must be > 0") }
        if let s = speculative {
            guard let kind = DraftKind(rawValue: s) else { throw ValidationError("--speculative must be lookup or draft, got '\(s)'") }
            if kind == .draft && draft == nil { throw ValidationError("--speculative draft needs --draft MODEL.qlm") }
        } else if draft != nil {
            throw ValidationError("--draft is used with --speculative draft")
        }
        guard (1 ... 64).contains(draftLen) else { throw ValidationError("--draft-len must be 1...64, got \(draftLen)") }
        guard (1 ... 64).contains(ngram) else { throw ValidationError("--ngram must be 1...64, got \(ngram)") }
        if promptFile != nil, !prompt.isEmpty { throw ValidationError("give --prompt or --prompt-file, not both") }
        try ScreenHelp.validate(screen, sampling)
    }

    func run() throws {
        do {
            var prompt = self.prompt
            if let f = promptFile {
                guard let d = FileManager.default.contents(atPath: f) else { throw QuantError(f, "cannot read file") }
                guard let s = String(data: d, encoding: .utf8) else { throw QuantError(f, "is not valid UTF-8") }
                prompt = s
            }
            var opts = GenerationOptions(maxNewTokens: maxTokens, steps: steps,
                                         sampling: sampling.config,
                                         stopAtEndOfText: !ignoreEos)
            opts.speculative = speculative.flatMap(DraftKind.init(rawValue:)).map {
                SpeculativeOptions(kind: $0, draftLength: draftLen, adaptive: !fixedDraftLen, ngramMax: ngram)
            }
            let sizing = Generator.sizing(prompt: prompt, options: opts)
            // The draft model stays resident (mapped): the target's plan leaves room for its file
            // and cache (LoadedModel keeps a ledger of the models alive in the process).
            var draftModel: LoadedModel?
            if let draft, opts.speculative?.kind == .draft {
                var a = options.attention.config
                a.layerList = nil
                draftModel = try LoadedModel(path: draft, options: LoadOptions(threads: options.threads, attention: a, sizing: sizing))
            }
            var lm: LoadedModel! = try options.load(sizing: sizing, screen: screen)
            let result = try Generator.generate(lm, prompt: prompt, options: opts, draft: draftModel) { bytes in
                guard !json else { return }
                bytes.withUnsafeBytes { _ = fwrite($0.baseAddress, 1, $0.count, stdout) }
                fflush(stdout)
            }
            if json {
                struct Out: Encodable {
                    var model: String; var draft: String?; var load_seconds: Double; var threads: Int
                    var attention: [String]; var sinks: Int; var kv_type: String; var positions: String; var position_encoding: String
                    var kv_cache_bytes: Int
                    var result: GenerationResult
                    /// When the weights streamed: an O_DIRECT read of the file after the run, and
                    /// the streamed bytes per second as a share of it.
                    var disk_probe: DiskProbe?
                    var streamed_share_of_disk_probe: Double?
                }
                let cache = lm.model.cache as? PatternKVCache
                let positions = lm.model.positionMode.rawValue
                var out = Out(model: options.model, draft: draft, load_seconds: lm.loadSeconds, threads: options.threads,
                              attention: cache?.patterns.map(\.description) ?? [], sinks: cache?.sinks ?? 0,
                              kv_type: lm.model.cache.kvType.rawValue, positions: positions,
                              position_encoding: lm.positionEncoding == .rotary ? "rotary" : "learned",
                              kv_cache_bytes: lm.model.cache.bytes, result: result)
                if lm.plan.streams {
                    // The probe's buffer comes out of the memory the model held: free it first.
                    lm = nil
                    draftModel = nil
                    _ = glibcMallocTrim(0)
                    let probe = try DiskProbe.measure(path: options.model, reads: 3)
                    out.disk_probe = probe
                    out.streamed_share_of_disk_probe = probe.share(bytesPerToken: result.memoryPlan.streamedBytesPerToken,
                                                                   tokensPerSecond: result.decodeTokensPerSecond)
                }
                print(jsonLine(out))
            } else {
                print("")
                let m = result.memory
                var specText = ""
                if let sp = result.speculative {
                    specText = String(format: " | speculative %@ (k ≤ %d): %d passes, accepted %d/%d drafted (%.1f%%), %.2f tok/pass",
                                      sp.kind, sp.draftLength, sp.passes, sp.accepted, sp.drafted, 100 * sp.acceptanceRate, sp.tokensPerPass)
                }
                printError(String(format: "prompt %d tok, %.1f tok/s | decode %d tok, %.1f tok/s%@ | peak RSS %@ (anon %@, file %@) | KV cache %@ | %@ | stop: %@",
                                  result.promptTokens.count, result.promptTokensPerSecond, result.tokens.count,
                                  result.decodeTokensPerSecond, specText, formatBytes(m.peakRSS), formatBytes(m.peakRSSAnon), formatBytes(m.peakRSSFile),
                                  formatBytes(result.kvCacheBytes), budgetSummary(result.memoryPlan), result.stopReason))
            }
        }
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print or write the token ids of a text file.",
        discussion: """
        --tokenizer accepts a .qlm file (its embedded tokenizer), a directory with encoder.json + vocab.bpe or vocab.json + merges.txt, or a llama2.c tokenizer.bin (with --vocab-size).

        Examples:
          run tokenize --tokenizer gpt2-tokenizer/ --text wiki.test.raw
          run tokenize --tokenizer model.qlm --text story.txt \\
              --format u32 -o ids.u32
        """
    )

    @Option(name: .long, help: "A .qlm file, a GPT-2 tokenizer directory, or a llama2.c tokenizer.bin.")
    var tokenizer: String

    @Option(name: .long, help: "The text file to tokenize.")
    var text: String

    @Option(name: .long, help: "Output format: json (ids array and count) or u32 (raw little-endian uint32).")
    var format: String = "json"

    @Option(name: .shortAndLong, help: "Write to this file instead of stdout.")
    var output: String?

    @Option(name: .long, help: "Vocabulary size for a llama2.c tokenizer.bin.")
    var vocabSize: Int?

    @Option(name: .long, help: "Split the text on lines equal to this separator, tokenize each document on its own (BOS first where the tokenizer has one) and join the ids into one stream.")
    var joinDocuments: String?

    func validate() throws {
        guard ["json", "u32"].contains(format) else { throw ValidationError("--format must be json or u32, got '\(format)'") }
    }

    func run() throws {
        do {
            let tok: any Tokenizer
            if tokenizer.hasSuffix(".qlm") {
                tok = try TokenizerPayloads.load(from: QLMFile(URL(fileURLWithPath: tokenizer)))
            } else {
                tok = try TokenizerLoader.load(path: tokenizer, vocabSize: vocabSize)
            }
            guard let data = FileManager.default.contents(atPath: text) else { throw QuantError(text, "cannot read text file") }
            guard let s = String(data: data, encoding: .utf8) else { throw QuantError(text, "is not valid UTF-8") }
            let ids = joinDocuments.map { Perplexity.encodeDocuments(s, separator: $0, tokenizer: tok) } ?? tok.encode(s)
            let bytes: Data
            if format == "u32" {
                var d = Data(capacity: ids.count * 4)
                for id in ids { withUnsafeBytes(of: UInt32(bitPattern: id).littleEndian) { d.append(contentsOf: $0) } }
                bytes = d
            } else {
                struct Out: Encodable { var count: Int; var ids: [Int32] }
                bytes = Data((jsonLine(Out(count: ids.count, ids: ids)) + "\n").utf8)
            }
            if let output {
                guard FileManager.default.createFile(atPath: output, contents: bytes) else { throw QuantError(output, "cannot write") }
                printError("\(ids.count) tokens → \(output)")
            } else {
                FileHandle.standardOutput.write(bytes)
            }
        }
    }
}

/// --screen K (generate, chat, bench): top-k-only logits through a 4-bit screen of the classifier.
enum ScreenHelp {
    static let text = ArgumentHelp("Top-k-only logits: score the vocabulary with a 4-bit copy of the classifier built at load, then recompute its K best rows exactly and pass only those on (large vocabularies, e.g. Gemma 3's 262k rows, decode faster). Greedy output is the full classifier's whenever its argmax is among the K (`run perplexity --screen-verify K` counts how often it is not). Needs --temperature 0 or --top-k ≤ K.", valueName: "K")

    static func validate(_ screen: Int?, _ sampling: SamplingOptions) throws {
        guard let k = screen else { return }
        guard (1 ... 4096).contains(k) else { throw ValidationError("--screen must be 1...4096, got \(k)") }
        guard sampling.temperature == 0 || (1 ... k).contains(sampling.topK) else {
            throw ValidationError("--screen \(k) passes only \(k) logits on: use it with --temperature 0 or --top-k 1...\(k) (top-p alone needs every logit)")
        }
    }
}
