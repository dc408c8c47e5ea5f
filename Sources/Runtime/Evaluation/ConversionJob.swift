import Foundation
import Quant

/// One conversion as `convert` asks for it, orchestrated here so the CLI only parses flags and
/// prints: open the checkpoint with its architecture's names, resolve a preset against the
/// checkpoint's tensors, optionally collect GPTQ statistics from calibration text, convert.
package struct ConversionJob: Sendable {
    /// GPTQ calibration: statistics from running `file`'s documents through the float model.
    package struct CalibrationRequest: Sendable {
        package var file: String
        /// Documents `a..<b` of the file; nil = `Calibration.defaultDocuments` (second half).
        package var documents: Range<Int>?
        package var maxTokens = 65536
        package var ctx = 512
        /// Globs of matrices quantized without GPTQ.
        package var skip: [String] = []
        package var damp = 0.01
        /// Collect each stage's statistics from the partly quantized model instead of the float one.
        package var sequential = false
        package init(file: String) { self.file = file }
    }

    /// Things worth telling the user while the job runs, in order.
    package enum Note: Sendable {
        /// "preset NAME: matrices TYPE, glob=type ..."
        case preset(String)
        /// One line per calibration stage (sequential order only).
        case calibrationStage(String)
        /// What calibration used, once it is done.
        case calibration(String)
    }

    package struct Report: Sendable {
        package var summary: ConvertSummary
        package var policy: QuantPolicy
        package var calibrationNote: String?
        package var calibrationSeconds: Double?
        /// With calibration: matrices written without GPTQ (no statistics, skipped, or a type without GPTQ).
        package var plainMatrices: [String] = []
        package var seconds: Double
    }

    package var input: URL
    package var tokenizer: URL?
    package var output: URL
    /// A weight type name, or "keep" (GGUF: keep each tensor's stored type where QuantLM has it).
    package var type: String
    /// `GLOB=TYPE` overrides; first match wins, and they beat the preset's.
    package var keep: [String] = []
    package var preset: String?
    package var calibration: CalibrationRequest?
    package var zstdLevel: Int?
    package var zstdFilter: ZstdFilterChoice = .fixed(.planes)
    package var chunkBytes = ZstdChunks.defaultChunkBytes
    package var threads = ProcessInfo.processInfo.activeProcessorCount

    package init(input: URL, output: URL, type: String) {
        self.input = input
        self.output = output
        self.type = type
    }

    package static let documentSeparator = "<|endoftext|>"

    package func run(note: @escaping (Note) -> Void = { _ in }, progress: @escaping (Int, Int) -> Void = { _, _ in }) throws -> Report {
        let start = Date()
        let overrides = try keep.map(QuantPolicy.parseOverride)
        var policy: QuantPolicy
        if type == "keep" {
            policy = .keep(overrides: overrides)
        } else if let t = QuantType(name: type), QuantType.weightTypes.contains(t) {
            policy = QuantPolicy(defaultType: t, overrides: overrides)
        } else {
            throw QuantError(input.path, "unknown type '\(type)'; choose one of: \(QuantType.namesForHelp)")
        }
        let ckpt = try Checkpoint.open(input, tokenizer: tokenizer)
        if let name = preset {
            guard let p = QuantPreset(name: name) else {
                throw QuantError(input.path, "unknown preset '\(name)'; choose one of: \(QuantPreset.namesForHelp)")
            }
            // A preset's patterns are best-effort (names differ by architecture): unused ones are dropped.
            let names = ckpt.tensors.map(\.name)
            let used = p.overrides.filter { o in names.contains { QuantPolicy.matches(o.glob, $0) } }
            policy = QuantPolicy(defaultType: p.defaultType, overrides: overrides + used)
            note(.preset("preset \(p.name): matrices \(p.defaultType.name)\(used.isEmpty ? "" : ", " + used.map { "\($0.glob)=\($0.type.name)" }.joined(separator: " "))"))
        }
        guard let tokSource = ckpt.tokenizer else { throw QuantError(input.path, "no tokenizer found; pass --tokenizer") }
        let payload = try TokenizerPayloads.make(tokSource, vocabSize: ckpt.hparams.vocabSize)
        var options = ConvertOptions(policy: policy, zstdLevel: zstdLevel, chunkBytes: chunkBytes, threads: threads)
        options.zstdFilter = zstdFilter

        var calibrationNote: String?, calibrationSeconds: Double?
        if let cal = calibration {
            let text: String
            do { text = try String(contentsOfFile: cal.file, encoding: .utf8) } catch {
                throw QuantError(cal.file, "cannot read calibration text: \(error.localizedDescription)")
            }
            let sep = Self.documentSeparator
            let total = Perplexity.splitDocuments(text, separator: sep).count
            let docs = cal.documents ?? Calibration.defaultDocuments(total: total)
            let skip = cal.skip
            let r = cal.sequential
                ? try Calibration.collectSequential(checkpoint: ckpt, tokenizer: payload, text: text, separator: sep, documents: docs,
                                                    maxTokens: cal.maxTokens, ctx: cal.ctx, threads: threads, policy: policy, damp: cal.damp,
                                                    compensate: { n in !skip.contains { QuantPolicy.matches($0, n) } },
                                                    log: { note(.calibrationStage($0)) })
                : try Calibration.collect(checkpoint: ckpt, tokenizer: payload, text: text, separator: sep, documents: docs,
                                          maxTokens: cal.maxTokens, ctx: cal.ctx, threads: threads)
            let what = "GPTQ (\(cal.sequential ? "sequential" : "float")), damp \(cal.damp); calibration \(URL(fileURLWithPath: cal.file).lastPathComponent) documents \(r.documents.lowerBound)..<\(r.documents.upperBound) of \(total) (\(r.documentsUsed) used, \(r.tokens) tokens, ctx \(cal.ctx))"
            note(.calibration("\(what); \(r.hessians.count) matrices, \(String(format: "%.2f", r.seconds)) s"))
            options.hessians = r.hessians.filter { h in !skip.contains { QuantPolicy.matches($0, h.key) } }
            options.gptqDamp = cal.damp
            options.calibrationNote = what
            calibrationNote = what
            calibrationSeconds = r.seconds
        }
        let summary = try Converter.convert(ckpt, tokenizer: payload, options: options, to: output, progress: progress)
        var plain: [String] = []
        if calibration != nil {
            let matrices = Set(ckpt.tensors.filter { $0.shape.count >= 2 }.map(\.name))
            plain = matrices.subtracting(summary.gptqTensors).sorted()
        }
        return Report(summary: summary, policy: policy, calibrationNote: calibrationNote, calibrationSeconds: calibrationSeconds,
                      plainMatrices: plain, seconds: Date().timeIntervalSince(start))
    }
}
