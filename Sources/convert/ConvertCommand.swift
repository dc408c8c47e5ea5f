import ArgumentParser
import Foundation
import Quant
import Runtime

@main
struct ConvertCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a float checkpoint into a block-quantized QuantLM (.qlm) file.",
        discussion: """
        Inputs: \(Convert.inputHelp) A Hugging Face directory holds config.json, model.safetensors (f32/f16/bf16) or a sharded index, and tokenizer.json (GPT-2: vocab.json + merges.txt also work); GGUF tensors may be F32/F16/BF16, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, K-quants or IQ4_NL/IQ4_XS; a llama2.c .bin takes its tokenizer.bin with --tokenizer.

        Types: \(QuantType.namesForHelp).
        Presets: \(QuantPreset.namesForHelp).
        Norms and biases stay f32; every matrix gets --type unless a --keep pattern says otherwise. `convert model --help` lists every option.

        Examples:
          convert stories260K.bin --tokenizer tok512.bin \\
              -o stories-q8.qlm --type q8_0
          convert gpt2/ -o gpt2-q4.qlm --type q4_0 \\
              --keep 'wte.weight=q8_0' --zstd 3
          convert model.Q4_1.gguf -o model.qlm --type keep
          convert inspect gpt2-q4.qlm --json
          convert verify gpt2-q4.qlm
        """,
        subcommands: [Convert.self, Inspect.self, Verify.self, ZstdBench.self],
        defaultSubcommand: Convert.self
    )
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Convert a checkpoint (the default subcommand: `convert INPUT -o OUT.qlm`)."
    )

    @Argument(help: ArgumentHelp(Convert.inputHelp))
    var input: String

    /// The input kinds, with the model types and GGUF architectures the registry knows.
    static let inputHelp: String = {
        let f = Architectures.formats
        let hf = f.compactMap(\.hf).flatMap(\.modelTypes).joined(separator: ", ")
        let gguf = f.compactMap(\.gguf).map(\.architecture).joined(separator: ", ")
        return "A Hugging Face checkpoint directory (model_type \(hf)), a GGUF file (\(gguf)), or a llama2.c .bin file."
    }()

    @Option(name: .shortAndLong, help: "Output .qlm path (written atomically; .gguf with --format gguf).")
    var output: String

    @Option(name: .long, help: "Output format: qlm, or gguf (GGUF inputs only, every tensor in a type ggml has: f32, f16, q8_0, q4_0, q4_1, ...; the input's metadata and tokenizer are copied) for llama.cpp.")
    var format: String = "qlm"

    // The type list is the C type table's (name, bits per weight, summary): a new type appears here by itself.
    @Option(name: .long, help: ArgumentHelp("Type for matrices: \(QuantType.namesForHelp); or keep (GGUF: every tensor keeps its stored type where QuantLM has it, blocks copied unchanged; others become q8_0, and are listed).", valueName: "TYPE"))
    var type: String = "q8_0"

    @Option(name: .long, help: "Store tensors as independent zstd chunks at this level (1-22); omit for raw.")
    var zstd: Int?

    @Option(name: .long, help: ArgumentHelp("zstd chunk byte layout (\(ZstdFilterChoice.namesForHelp)): planes puts the blocks' scale bytes in byte planes before the codes; auto tries every layout on each tensor's first chunk and keeps the smallest (slower); none writes plain QZC1 chunks.", valueName: "FILTER"))
    var zstdFilter: String = "planes"

    @Option(name: .long, help: "Bytes of raw rows per zstd chunk (rows are never split).")
    var zstdChunk: Int = 1 << 20

    @Option(name: .long, help: "Tokenizer: llama2.c tokenizer.bin, or a directory with GPT-2 vocab files.")
    var tokenizer: String?

    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp("Keep tensors matching GLOB at TYPE (repeatable; first match wins).", valueName: "GLOB=TYPE"))
    var keep: [String] = []

    @Option(name: .long, help: ArgumentHelp("Preset: per-tensor types chosen for you (\(QuantPreset.namesForHelp)). Overrides --type; --keep patterns still win.", valueName: "NAME"))
    var preset: String?

    @Option(name: .long, help: ArgumentHelp("Calibration: collect each matrix's input statistics by running this UTF-8 text through the float model (a plain text: one token stream cut into chunks of --calibrate-ctx; with '<|endoftext|>' lines: documents). Use text you will NOT evaluate on.", valueName: "FILE"))
    var calibrate: String?

    @Option(name: .long, help: ArgumentHelp("Documents mode: calibration documents A:B (0-based, B exclusive; default: the second half of the file's documents).", valueName: "A:B"))
    var calibrateDocs: String?

    @Option(name: .long, help: "Calibrate on this many tokens (chunks mode: that many tokens' worth of chunks, spread evenly over the text).")
    var calibrateTokens: Int = 16384

    @Option(name: .long, help: "Calibration chunk length (documents mode: each document is truncated to it), BOS first.")
    var calibrateCtx: Int = 512

    @Option(name: .long, help: "With --calibrate: 'gptq' (GPTQ error compensation where the type has it, importance-weighted rounding elsewhere) or 'imatrix' (importance-weighted rounding only: per-column mean squares, no H).")
    var calibrateMethod: String = "gptq"

    @Option(name: .long, help: ArgumentHelp("With --calibrate (float order): the matrix type of the temporary model the calibration text runs through: q8_0x8 (its matrices as q8_0, ~2x faster) or f32 (the float model itself).", valueName: "TYPE"))
    var calibrateForward: String = "q8_0x8"

    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp("With --calibrate: quantize tensors matching GLOB without GPTQ (repeatable).", valueName: "GLOB"))
    var gptqSkip: [String] = []

    @Option(name: .long, help: "GPTQ dampening (fraction of mean(diag H) added to the diagonal).")
    var gptqDamp: Double = 0.01

    @Option(name: .long, help: "With --calibrate: 'sequential' collects each stage's statistics from the model whose earlier matrices are already quantized; 'float' collects all from the float model.")
    var gptqOrder: String = "float"

    @Option(name: .long, help: ArgumentHelp("Size target: choose a type per matrix (from --mix-types) so the file is at most SIZE bytes (90M = 90,000,000; Ki/Mi/Gi are powers of 1024), minimizing the importance-weighted rounding error (from --calibrate's text; unweighted without it). --keep patterns still win.", valueName: "SIZE"))
    var maxSize: String?

    @Option(name: .long, help: ArgumentHelp("Size target as bits per parameter of all numeric tensors (as `bits/weight in memory` reports), chosen like --max-size.", valueName: "B"))
    var targetBpw: Double?

    @Option(name: .long, help: ArgumentHelp("Types a size target chooses from, comma-separated (default: every quantized weight type stored row by row).", valueName: "T1,T2,..."))
    var mixTypes: String?

    @Option(name: .long, help: ArgumentHelp("With a size target and --calibrate: tokens of the calibration text that measure each matrix group's KL per unit rounding error, the planner's weights (0: every matrix's relative error weighs alike).", valueName: "N"))
    var mixSensitivityTokens: Int = 512

    @Option(name: .long, help: ArgumentHelp("Layer bands per matrix kind in those sensitivity groups.", valueName: "N"))
    var mixSensitivityBands: Int = 5

    @Option(name: .long, help: "Threads for quantization (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Flag(name: .long, help: "Print the summary as one JSON object.")
    var json = false

    @Flag(name: .shortAndLong, help: "No progress bar.")
    var quiet = false

    func validate() throws {
        guard type == "keep" || QuantType(name: type).map(QuantType.weightTypes.contains) == true else {
            throw ValidationError("unknown --type '\(type)'; choose one of: \(QuantType.namesForHelp)")
        }
        if let p = preset, QuantPreset(name: p) == nil {
            throw ValidationError("unknown --preset '\(p)'; choose one of: \(QuantPreset.namesForHelp)")
        }
        if let d = calibrateDocs, parseDocs(d) == nil { throw ValidationError("--calibrate-docs must be A:B with 0 <= A < B, got '\(d)'") }
        if calibrate == nil && calibrateDocs != nil { throw ValidationError("--calibrate-docs needs --calibrate FILE") }
        guard calibrateTokens >= 1, calibrateCtx >= 2 else { throw ValidationError("--calibrate-tokens must be >= 1 and --calibrate-ctx >= 2") }
        guard gptqOrder == "float" || gptqOrder == "sequential" else { throw ValidationError("--gptq-order must be float or sequential") }
        guard calibrateForward == "f32" || calibrateForward == "q8_0x8" else { throw ValidationError("--calibrate-forward must be f32 or q8_0x8, got '\(calibrateForward)'") }
        guard calibrateMethod == "gptq" || calibrateMethod == "imatrix" else { throw ValidationError("--calibrate-method must be gptq or imatrix, got '\(calibrateMethod)'") }
        guard gptqDamp > 0, gptqDamp < 10 else { throw ValidationError("--gptq-damp must be in (0, 10)") }
        if let z = zstd, !(1 ... 22).contains(z) { throw ValidationError("--zstd level must be 1...22, got \(z)") }
        guard ZstdFilterChoice(name: zstdFilter) != nil else {
            throw ValidationError("unknown --zstd-filter '\(zstdFilter)'; choose one of: \(ZstdFilterChoice.namesForHelp)")
        }
        guard zstdChunk >= 4096 else { throw ValidationError("--zstd-chunk must be at least 4096 bytes") }
        guard (1 ... 256).contains(threads) else { throw ValidationError("--threads must be 1...256") }
        if let m = maxSize, MixPlanner.parseSize(m) == nil { throw ValidationError("--max-size must be a size like 90M, 88000000 or 85Mi, got '\(m)'") }
        if let b = targetBpw, !(b > 0 && b < 64) { throw ValidationError("--target-bpw must be in (0, 64), got \(b)") }
        if maxSize != nil && targetBpw != nil { throw ValidationError("give --max-size or --target-bpw, not both") }
        if let m = mixTypes, parseTypes(m) == nil {
            throw ValidationError("--mix-types takes weight types separated by commas (\(QuantType.weightTypes.map(\.name).joined(separator: ", "))), got '\(m)'")
        }
        if mixTypes != nil && maxSize == nil && targetBpw == nil { throw ValidationError("--mix-types needs --max-size or --target-bpw") }
        guard mixSensitivityTokens >= 0 else { throw ValidationError("--mix-sensitivity-tokens must be >= 0, got \(mixSensitivityTokens)") }
        guard mixSensitivityBands >= 1 else { throw ValidationError("--mix-sensitivity-bands must be >= 1, got \(mixSensitivityBands)") }
        guard format == "qlm" || format == "gguf" else { throw ValidationError("--format must be qlm or gguf, got '\(format)'") }
        if format == "gguf" {
            guard output.hasSuffix(".gguf") else { throw ValidationError("--format gguf: --output should end in .gguf (got '\(output)')") }
            guard zstd == nil else { throw ValidationError("--format gguf stores raw tensors; drop --zstd") }
        } else {
            guard output.hasSuffix(".qlm") else { throw ValidationError("--output should end in .qlm (got '\(output)')") }
        }
    }

    func run() throws {
        var job = ConversionJob(input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output), type: type)
        job.tokenizer = tokenizer.map { URL(fileURLWithPath: $0) }
        job.keep = keep
        job.preset = preset
        job.zstdLevel = zstd
        job.zstdFilter = ZstdFilterChoice(name: zstdFilter)!
        job.chunkBytes = zstdChunk
        job.threads = threads
        job.gguf = format == "gguf"
        job.maxSize = maxSize.flatMap(MixPlanner.parseSize)
        job.targetBPW = targetBpw
        job.mixTypes = mixTypes.flatMap(parseTypes)
        if let cal = calibrate {
            var c = ConversionJob.CalibrationRequest(file: cal)
            c.documents = calibrateDocs.flatMap(parseDocs)
            c.maxTokens = calibrateTokens
            c.ctx = calibrateCtx
            c.skip = gptqSkip
            c.damp = gptqDamp
            c.sequential = gptqOrder == "sequential"
            c.gptq = calibrateMethod == "gptq"
            c.forwardType = QuantType(name: calibrateForward)!
            c.sensitivityTokens = mixSensitivityTokens
            c.sensitivityBands = mixSensitivityBands
            job.calibration = c
        }
        var bar: ProgressBar? = nil, calBar: ProgressBar? = nil
        let report = try job.run(note: { n in
            switch n {
            case .preset(let line): if !json { print(line) }
            case .calibrationStage(let line): if !quiet && !json { printError("calibration \(line)") }
            case .calibration(let line): printError("calibration: \(line)")
            case .sensitivity(let line): if !json { printError(line) }
            }
        }, progress: { done, total in
            if bar == nil { bar = ProgressBar("converting", total: Double(total), unit: "B", enabled: !quiet && !json) }
            bar?.update(Double(done))
        }, calibrationProgress: { done, total in
            if calBar == nil { calBar = ProgressBar("calibrating", total: Double(total), unit: " chunks", enabled: !quiet && !json) }
            calBar?.update(Double(done))
            if done == total { calBar?.finish() }
        })
        bar?.finish()
        let summary = report.summary
        if report.policy.keepSourceTypes && !json {
            let conv = summary.convertedTensors.sorted { $0.key < $1.key }
            print("--type keep: \(summary.passthroughTensors.count) tensors copied unchanged; \(conv.count) converted (type QuantLM lacks)\(conv.isEmpty ? "" : ":")")
            for (n, how) in conv { print("  \(n): \(how)") }
        }
        if !summary.rowFallbackTensors.isEmpty && !json {
            let how = Dictionary(grouping: summary.rowFallbackTensors.values, by: { $0 }).map { "\($0.value.count) \($0.key)" }.sorted()
            print("rows not whole \(report.policy.defaultType.name) blocks (\(report.policy.defaultType.blockSize) weights): \(summary.rowFallbackTensors.count) matrices stored as the fallback (\(how.joined(separator: ", ")))")
        }
        if calibrate != nil && calibrateMethod == "gptq" {
            let plain = report.plainMatrices
            printError("GPTQ: \(summary.gptqTensors.count) matrices compensated\(plain.isEmpty ? "" : "; plain (no calibration data or type without GPTQ): " + plain.joined(separator: " "))")
        }
        if json {
            var s = summary
            s.seconds = report.seconds
            print(jsonLine(s))
            return
        }
        print("""
        wrote \(summary.output): \(summary.tensors) tensors, \(summary.parameters) parameters
          in   \(formatBytes(summary.bytesIn)) of float weights
          out  \(formatBytes(summary.bytesOut)) file; tensors \(formatBytes(summary.rawTensorBytes)) raw, \(formatBytes(summary.storedTensorBytes)) stored
          bits/weight \(String(format: "%.3f", summary.bitsPerWeight)) in memory, \(String(format: "%.3f", summary.storedBitsPerWeight)) on disk (compression ratio \(String(format: "%.3f", summary.compressionRatio)))
          \(String(format: "%.2f", summary.seconds)) s, \(String(format: "%.0f", summary.mbPerSecond)) MB/s
        """)
        if let c = report.calibrationSeconds { print(String(format: "  total %.2f s including %.2f s of calibration", report.seconds, c)) }
        if !quiet && report.policy.defaultType == .q4_0 {
            printError("note: --type q4_0x8 stores these same q4_0 numbers in 8-row groups, which decode and prefill faster on x86 (docs/benchmarks.md)")
        }
    }
}

func parseTypes(_ s: String) -> [QuantType]? {
    let ts = s.split(separator: ",").map { QuantType(name: $0.trimmingCharacters(in: .whitespaces)) }
    guard !ts.isEmpty, ts.allSatisfy({ $0.map(QuantType.weightTypes.contains) == true }) else { return nil }
    return ts.map { $0! }
}

func parseDocs(_ s: String) -> Range<Int>? {
    let p = s.split(separator: ":", omittingEmptySubsequences: false)
    guard p.count == 2, let a = Int(p[0]), let b = Int(p[1]), a >= 0, b > a else { return nil }
    return a ..< b
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a .qlm file's metadata and tensor table.",
        discussion: "Example: convert inspect model.qlm --json | python3 -m json.tool"
    )

    @Argument(help: "The .qlm file.")
    var file: String

    @Flag(name: .long, help: "Print one JSON object (metadata, tensors, totals).")
    var json = false

    struct TensorRow: Encodable {
        var name: String, type: String, encoding: String, shape: [Int]
        var offset: Int, storedLength: Int, rawLength: Int, checksum: String, bitsPerWeight: Double
        enum CodingKeys: String, CodingKey {
            case name, type, encoding, shape, offset, checksum
            case storedLength = "stored_length", rawLength = "raw_length", bitsPerWeight = "bits_per_weight"
        }
    }

    struct Report: Encodable {
        var file: String, fileBytes: Int, metadata: ModelMetadata, tensors: [TensorRow]
        var parameters: Int, bitsPerWeight: Double, storedBitsPerWeight: Double
        enum CodingKeys: String, CodingKey {
            case file, metadata, tensors, parameters
            case fileBytes = "file_bytes", bitsPerWeight = "bits_per_weight", storedBitsPerWeight = "stored_bits_per_weight"
        }
    }

    func run() throws {
        do {
            let f = try QLMFile(URL(fileURLWithPath: file))
            let numeric = f.tensors.filter { $0.type != .u8 }
            let params = numeric.reduce(0) { $0 + $1.elementCount }
            let raw = numeric.reduce(0) { $0 + $1.rawLength }, stored = numeric.reduce(0) { $0 + $1.storedLength }
            let rows = f.tensors.map { t in
                TensorRow(name: t.name, type: t.type.name, encoding: t.encoding.description, shape: t.shape, offset: t.offset,
                          storedLength: t.storedLength, rawLength: t.rawLength, checksum: String(format: "%08x", t.checksum),
                          bitsPerWeight: Double(t.rawLength * 8) / Double(t.elementCount))
            }
            let report = Report(file: file, fileBytes: f.map.count, metadata: f.metadata, tensors: rows, parameters: params,
                                bitsPerWeight: Double(raw * 8) / Double(max(params, 1)),
                                storedBitsPerWeight: Double(stored * 8) / Double(max(params, 1)))
            if json {
                print(jsonLine(report))
                return
            }
            let m = f.metadata, hp = m.hparams
            print("\(file): QuantLM v\(m.formatVersion), \(m.architecture), \(formatBytes(f.map.count))")
            print("  layers \(hp.nLayer), d_model \(hp.dModel), heads \(hp.nHead) (kv \(hp.nKVHead)), d_ff \(hp.dFF), n_ctx \(hp.nCtx), vocab \(hp.vocabSize), tied \(hp.tiedEmbeddings)")
            print("  tokenizer \(m.tokenizer.kind) (bos \(m.tokenizer.bos.map(String.init) ?? "-"), eos \(m.tokenizer.eos.map(String.init) ?? "-"))")
            if let mix = m.quantization.mix {
                print("  quantization \(m.quantization.defaultType), size target \(mix)\(m.quantization.zstdLevel.map { ", zstd level \($0)" } ?? "")")
            } else {
                print("  quantization \(m.quantization.defaultType)\(m.quantization.overrides.isEmpty ? "" : " keep " + m.quantization.overrides.joined(separator: " "))\(m.quantization.zstdLevel.map { ", zstd level \($0)" } ?? "")")
            }
            if let c = m.quantization.calibration { print("  calibration \(c)") }
            var counts: [String: (n: Int, bytes: Int)] = [:]
            for t in numeric { counts[t.type.name, default: (0, 0)].n += 1; counts[t.type.name, default: (0, 0)].bytes += t.rawLength }
            print("  mix " + counts.sorted { $0.value.bytes > $1.value.bytes }.map { "\($0.key) ×\($0.value.n) (\(formatBytes($0.value.bytes)))" }.joined(separator: ", "))
            print(String(format: "  %d parameters, %.3f bits/weight in memory, %.3f on disk", params, report.bitsPerWeight, report.storedBitsPerWeight))
            let mix = Dictionary(grouping: rows.filter { $0.name != "tokenizer" }, by: \.type)
                .sorted { $0.value.count != $1.value.count ? $0.value.count > $1.value.count : $0.key < $1.key }
            print("  types " + mix.map { "\($0.key) x\($0.value.count) (\(formatBytes($0.value.reduce(0) { $0 + $1.rawLength })))" }.joined(separator: ", "))
            for g in Set(numeric.map(\.type)).filter({ $0.rowGroup > 1 }).sorted(by: { $0.rawValue < $1.rawValue }) {
                print("  \(g.name) = \(g.plainType.name) rows in \(g.rowGroup)-row groups (the same numbers and bytes, regrouped; GGUF export writes \(g.plainType.name))")
            }
            for s in m.provenance.sources { print("  source \(s.file) \(s.bytes) bytes sha256 \(s.sha256)") }
            print("  converter \(m.provenance.converter), \(m.provenance.created)")
            print("")
            print("  " + "name".padding(toLength: 34, withPad: " ", startingAt: 0) + "type      enc   shape              stored      raw         bpw")
            for r in rows {
                let shape = r.shape.map(String.init).joined(separator: "×")
                print("  " + r.name.padding(toLength: 34, withPad: " ", startingAt: 0)
                      + r.type.padding(toLength: 10, withPad: " ", startingAt: 0)
                      + r.encoding.padding(toLength: 6, withPad: " ", startingAt: 0)
                      + shape.padding(toLength: 19, withPad: " ", startingAt: 0)
                      + String(r.storedLength).padding(toLength: 12, withPad: " ", startingAt: 0)
                      + String(r.rawLength).padding(toLength: 12, withPad: " ", startingAt: 0)
                      + String(format: "%.2f", r.bitsPerWeight))
            }
        }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every checksum of a .qlm file (and decode every zstd chunk); exit 1 on corruption."
    )

    @Argument(help: "The .qlm file.")
    var file: String

    @Flag(name: .long, help: "Print the result as JSON.")
    var json = false

    func run() throws {
        do {
            let f = try QLMFile(URL(fileURLWithPath: file))
            var failures: [String] = []
            for t in f.tensors {
                do {
                    try f.verify(t)
                    if t.encoding == .zstd { _ = try f.load(t.name) }
                } catch let e as QuantError {
                    failures.append(e.message)
                }
            }
            if json {
                struct R: Encodable { var file: String; var tensors: Int; var ok: Bool; var failures: [String] }
                print(jsonLine(R(file: file, tensors: f.tensors.count, ok: failures.isEmpty, failures: failures)))
            } else if failures.isEmpty {
                print("\(file): OK, \(f.tensors.count) tensors, every checksum matches")
            }
            if !failures.isEmpty {
                for m in failures { printError("error: \(file): \(m)") }
                throw ExitCode(1)
            }
        }
    }
}
