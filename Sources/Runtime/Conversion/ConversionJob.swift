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
        package var maxTokens = 16384
        package var ctx = 512
        /// Globs of matrices quantized without GPTQ.
        package var skip: [String] = []
        package var damp = 0.01
        /// Collect each stage's statistics from the partly quantized model instead of the float one.
        package var sequential = false
        /// GPTQ error compensation (needs H = Σ x xᵀ per matrix). Off: importance-weighted
        /// rounding alone (the per-column mean squares, an importance matrix).
        package var gptq = true
        /// Importance-weighted rounding for matrices without GPTQ (types with a weighted quantizer).
        package var importance = true
        /// The matrix type of the temporary model the text runs through (`float` order; the
        /// sequential order always uses f32). q8_0x8: ~2x the f32 forward's speed, the final KL
        /// not worse on SmolLM2 q4_0 (docs/quantization.md).
        package var forwardType = QuantType.q8_0x8
        /// With a size target: tokens of the calibration text (chunks of `ctx`) that measure each
        /// matrix group's KL per unit error for the planner (MixSensitivity); 0 = every matrix's
        /// relative error weighs alike.
        package var sensitivityTokens = 512
        /// Layer bands per matrix kind in those groups.
        package var sensitivityBands = 5
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
        /// One line per matrix group whose sensitivity the size target measured.
        case sensitivity(String)
    }

    package struct Report: Sendable {
        package var summary: ConvertSummary
        package var policy: QuantPolicy
        package var calibrationNote: String?
        package var calibrationSeconds: Double?
        /// With a size target: the plan (types per matrix, predicted bytes).
        package var plan: MixPlanner.Plan?
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
    /// A size target: the written file at most this many bytes (`--max-size`) ...
    package var maxSize: Int?
    /// ... or every numeric tensor's stored bits per parameter at most this (`--target-bpw`).
    package var targetBPW: Double?
    /// The types a size target chooses from (nil: MixPlanner.defaultCandidates; with GGUF output,
    /// those of them ggml has).
    package var mixTypes: [QuantType]?
    /// Write GGUF instead of .qlm (GGUF inputs only: their metadata and tokenizer are copied;
    /// every tensor's type must be one ggml has).
    package var gguf = false
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

    /// The calibration file as text: an unreadable file or bytes that are not UTF-8 are a
    /// one-line error naming the file.
    package static func readCalibrationText(_ path: String) throws -> String {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw QuantError(path, "cannot read calibration text: \(error.localizedDescription)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw QuantError(path, "calibration text is not UTF-8")
        }
        return text
    }

    /// - Parameters:
    ///   - progress: (bytes converted, bytes in all), after each tensor.
    ///   - calibrationProgress: (forward passes done, passes in all) while calibrating.
    package func run(note: @escaping (Note) -> Void = { _ in }, progress: @escaping (Int, Int) -> Void = { _, _ in },
                     calibrationProgress: ((Int, Int) -> Void)? = nil) throws -> Report {
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
        var ggufSource: GGUFFile?
        if gguf {
            do { ggufSource = try GGUFFile(input) } catch {
                throw QuantError(input.path, "GGUF export needs a GGUF input (its metadata and tokenizer are copied): \(error)")
            }
        }
        guard let tokSource = ckpt.tokenizer else { throw QuantError(input.path, "no tokenizer found; pass --tokenizer") }
        let payload = try TokenizerPayloads.make(tokSource, vocabSize: ckpt.hparams.vocabSize)
        var options = ConvertOptions(policy: policy, zstdLevel: zstdLevel, chunkBytes: chunkBytes, threads: threads)
        options.zstdFilter = zstdFilter

        var calibrationNote: String?, calibrationSeconds: Double?
        var statistics: Calibration.Result?
        var sensitivity: MixSensitivity.Result?
        if let cal = calibration {
            let text = try Self.readCalibrationText(cal.file)
            let sep = Self.documentSeparator
            let total = Perplexity.splitDocuments(text, separator: sep).count
            let docs = cal.documents ?? Calibration.defaultDocuments(total: total)
            let skip = cal.skip
            let name = URL(fileURLWithPath: cal.file).lastPathComponent
            let r = cal.sequential && cal.gptq
                ? try Calibration.collectSequential(checkpoint: ckpt, tokenizer: payload, text: text, separator: sep, documents: docs,
                                                    maxTokens: cal.maxTokens, ctx: cal.ctx, threads: threads, policy: policy, damp: cal.damp,
                                                    compensate: { n in !skip.contains { QuantPolicy.matches($0, n) } },
                                                    log: { note(.calibrationStage($0)) })
                : try Calibration.collect(checkpoint: ckpt, tokenizer: payload, text: text, separator: sep, documents: docs,
                                          maxTokens: cal.maxTokens, ctx: cal.ctx, threads: threads, hessians: cal.gptq,
                                          forwardType: cal.forwardType, source: cal.file, progress: calibrationProgress)
            let used = r.mode == "chunks"
                ? "\(r.documentsUsed) of \(r.chunksAvailable) chunks of \(cal.ctx) tokens (\(r.tokens) tokens)"
                : "documents \(r.documents.lowerBound)..<\(r.documents.upperBound) of \(total) (\(r.documentsUsed) used, \(r.tokens) tokens, ctx \(cal.ctx))"
            var methods: [String] = []
            if cal.gptq { methods.append("GPTQ (\(cal.sequential ? "sequential" : "float")), damp \(cal.damp)") }
            if cal.importance { methods.append("importance-weighted rounding") }
            let what = "\(methods.joined(separator: " + ")); calibration \(name) \(used)"
            let phases = cal.sequential && cal.gptq ? ""
                : String(format: " (%@ temporary model %.2f s, forward passes %.2f s of which statistics %.2f s)",
                         r.forwardType.name, r.modelSeconds, r.forwardSeconds, r.statisticsSeconds)
            note(.calibration("\(what); \(r.hessians.count) matrices with H, \(r.importance.count) with importance, \(String(format: "%.2f", r.seconds)) s\(phases)"))
            if cal.gptq { options.hessians = r.hessians.filter { h in !skip.contains { QuantPolicy.matches($0, h.key) } } }
            if cal.importance { options.importance = r.importance }
            options.gptqDamp = cal.damp
            options.calibrationNote = what
            calibrationNote = what
            calibrationSeconds = r.seconds
            statistics = r
            if (maxSize != nil || targetBPW != nil) && cal.sensitivityTokens > 0 {
                let free = Set(ckpt.tensors.filter { t in
                    t.shape.count >= 2 && !policy.overrides.contains { QuantPolicy.matches($0.glob, t.name) }
                }.map(\.name))
                let s = try MixSensitivity.measure(checkpoint: ckpt, tokenizer: payload, matrices: free, importance: r.importance,
                                                   text: text, separator: sep, documents: docs, maxTokens: cal.sensitivityTokens,
                                                   ctx: cal.ctx, probe: .q4_0, bands: cal.sensitivityBands, threads: threads,
                                                   source: cal.file, log: { note(.sensitivity($0)) })
                note(.calibration("sensitivity: \(s.groups.count) groups (\(cal.sensitivityBands) layer bands per kind), KL of each at q4_0 over \(s.positions) positions of the calibration text, \(String(format: "%.2f", s.seconds)) s"))
                sensitivity = s
            }
        }
        var plan: MixPlanner.Plan?
        if maxSize != nil || targetBPW != nil {
            let p = try planMix(ckpt, policy: policy, tokenizerBytes: payload.blob.count, importance: statistics?.importance,
                                weights: sensitivity?.weights, gguf: ggufSource)
            let user = policy.overrides
            policy = QuantPolicy(defaultType: policy.defaultType,
                                 overrides: user + ckpt.tensors.compactMap { t in p.types[t.name].map { (t.name, $0) } })
            options.policy = policy
            let target = maxSize.map { "max-size \($0) bytes" } ?? "target-bpw \(targetBPW!)"
            options.mixNote = "\(target): \(p.summary); tensors \(p.tensorBytes) bytes (smallest reachable \(p.minimumTensorBytes)), chosen by importance-weighted error per byte\(statistics == nil ? " (no calibration: unweighted)" : "")\(sensitivity == nil ? "" : ", each matrix's error weighted by its group's KL per unit error on the calibration text")"
            note(.preset("size target \(options.mixNote!)"))
            plan = p
        }
        if gguf {
            for t in ckpt.tensors {
                let type = policy.type(for: t).type
                if GGUFExport.ggmlType(for: type) == nil {
                    throw QuantError(input.path, "tensor \(t.name) would be \(type.name), which ggml lacks; GGUF export needs ggml's types (\(MixPlanner.defaultCandidates.filter { GGUFExport.ggmlType(for: $0) != nil }.map(\.name).joined(separator: ", ")), f16, f32)")
                }
            }
        }
        let qlmOut = gguf ? output.deletingLastPathComponent().appendingPathComponent(".\(output.lastPathComponent).\(getpid()).qlm") : output
        defer { if gguf { try? FileManager.default.removeItem(at: qlmOut) } }
        var summary = try Converter.convert(ckpt, tokenizer: payload, options: options, to: qlmOut, progress: progress)
        if let src = ggufSource {
            let names = Dictionary(uniqueKeysWithValues: ckpt.tensors.map { ($0.name, $0.key.description) })
            try GGUFExport.write(QLMFile(qlmOut), like: src, ggufNames: names, to: output)
            summary.output = output.path
            summary.bytesOut = (try? FileManager.default.attributesOfItem(atPath: output.path)[.size] as? Int) ?? summary.bytesOut
        }
        var plain: [String] = []
        if calibration != nil {
            let matrices = Set(ckpt.tensors.filter { $0.shape.count >= 2 }.map(\.name))
            plain = matrices.subtracting(summary.gptqTensors).sorted()
        }
        var report = Report(summary: summary, policy: policy, calibrationNote: calibrationNote, calibrationSeconds: calibrationSeconds,
                            plainMatrices: plain, seconds: Date().timeIntervalSince(start))
        report.plan = plan
        return report
    }

    /// Bytes a .qlm file holds beyond its numeric tensors, for --max-size: the tokenizer blob,
    /// then the metadata (its JSON grows with one override per tensor), table and alignment.
    package static func overheadBytes(tokenizerBytes: Int, tensors: Int) -> Int { tokenizerBytes + 65536 + 256 * tensors }

    /// The same for a GGUF export (`GGUFExport.write` copies the source's key/values and tensor
    /// infos, types changed): the source's bytes before its data section, a margin for the
    /// quantized_by key it sets, and each tensor's alignment padding at most.
    package static func overheadBytes(ggufLike source: GGUFFile) -> Int {
        source.dataOffset + 256 + source.tensors.count * (source.alignment - 1)
    }

    func planMix(_ ckpt: Checkpoint, policy: QuantPolicy, tokenizerBytes: Int, importance: [String: [Float]]?,
                 weights: [String: Double]? = nil, gguf source: GGUFFile? = nil) throws -> MixPlanner.Plan {
        let overhead = source.map(Self.overheadBytes(ggufLike:))
            ?? Self.overheadBytes(tokenizerBytes: tokenizerBytes, tensors: ckpt.tensors.count + 1)
        let params = ckpt.tensors.reduce(0) { $0 + $1.elementCount }
        let budget = maxSize.map { $0 - overhead } ?? Int((targetBPW ?? 0) * Double(params) / 8)
        let candidates = mixTypes ?? MixPlanner.defaultCandidates.filter { !gguf || GGUFExport.ggmlType(for: $0) != nil }
        let p = try MixPlanner.plan(ckpt, policy: policy, candidates: candidates, importance: importance, weights: weights,
                                    budget: budget, threads: threads)
        if p.minimumTensorBytes > budget {
            let types = candidates.map(\.name).joined(separator: ", ")
            if let m = maxSize {
                throw QuantError(input.path, "--max-size \(m) bytes is below the smallest size reachable with \(types): \(p.minimumTensorBytes + overhead) bytes (\(formatMB(p.minimumTensorBytes + overhead)))")
            }
            throw QuantError(input.path, "--target-bpw \(targetBPW!) is below the smallest reachable with \(types): \(String(format: "%.3f", Double(p.minimumTensorBytes) * 8 / Double(params))) bits/weight")
        }
        return p
    }

    private func formatMB(_ b: Int) -> String { String(format: "%.2f MB", Double(b) / 1e6) }
}
