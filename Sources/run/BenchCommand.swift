import ArgumentParser
import CKernels
import Foundation
import Quant
import Runtime

struct BenchCmd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark a model (load, prefill, decode) or every kernel, against a bandwidth probe run alongside.",
        discussion: """
        Decoding a large model is bound by memory bandwidth: every token reads every weight once. The bench measures this machine's sequential-read bandwidth in the same run, with one probe read after each decode rep, and reports decode as a share of it: for each rep, its GB/s over the probe reads just before and after it, median over reps (bandwidth_ratio: weight bytes only; bandwidth_ratio_with_kv also counts the KV-cache bytes attention reads). Results are medians over --reps, with min and max.

        Examples:
          run bench gpt2-small-q8.qlm --prompt-tokens 128 --gen-tokens 128 --threads 2
          run bench --kernels --threads 1 --json
        """
    )

    @Argument(help: "The .qlm model (omit with --kernels).")
    var model: String?

    @Flag(name: .long, help: "Benchmark every (type × CPU path × shape) matvec and GEMM instead of a model.")
    var kernels = false

    @Option(name: .long, help: "Prompt tokens for the prefill measurement.")
    var promptTokens: Int = 128

    @Option(name: .long, help: "Tokens to decode one at a time.")
    var genTokens: Int = 128

    @Option(name: .long, help: "Repetitions (median, min and max are reported).")
    var reps: Int = 5

    @OptionGroup var resources: ResourceOptions
    var threads: Int { resources.threads }

    @Option(name: .long, help: "Bytes the bandwidth probe reads (default 1 GiB).")
    var probeBytes: Int = 1 << 30

    @Option(name: .long, help: "--kernels: shapes as ROWSxCOLS,... (default: GPT-2-small's and 4096x4096).")
    var shapes: String = "768x768,2304x768,3072x768,768x3072,50257x768,4096x4096"

    @Flag(name: .long, help: "Fault the whole file in at load (MAP_POPULATE) instead of mapping it lazily.")
    var populate = false

    @OptionGroup var attention: AttentionOptions

    @Option(name: .long, help: "Top-k-only logits through a 4-bit screen of the classifier (as run generate --screen K; decode is greedy here). The screen is built by the first forward pass, which the time-to-first-token includes.")
    var screen: Int?

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    @Flag(name: .long, help: "Time with the thread's CPU time instead of the wall clock (--threads 1 only): on a host busy with other jobs, time spent descheduled is not counted (the probe is timed the same way).")
    var cpuTime = false

    func validate() throws {
        if !kernels && model == nil { throw ValidationError("give a model file, or --kernels") }
        guard reps >= 1, reps <= 100 else { throw ValidationError("--reps must be 1...100") }
        guard promptTokens >= 1, genTokens >= 1 else { throw ValidationError("--prompt-tokens and --gen-tokens must be ≥ 1") }
        guard probeBytes >= 1 << 20 else { throw ValidationError("--probe-bytes must be at least 1 MiB") }
        if cpuTime && (kernels || threads != 1) { throw ValidationError("--cpu-time needs --threads 1 and a model (it times the calling thread only)") }
        _ = try parsedShapes()
    }

    func parsedShapes() throws -> [(Int, Int)] {
        try shapes.split(separator: ",").map { s in
            let p = s.lowercased().split(separator: "x")
            guard p.count == 2, let r = Int(p[0]), let c = Int(p[1]), r > 0, c > 0, r * c <= 1 << 28 else {
                throw ValidationError("--shapes: '\(s)' is not ROWSxCOLS")
            }
            return (r, c)
        }
    }

    func run() throws {
        do {
            if kernels {
                let probe = BandwidthProbe.measure(threads: threads, bytes: probeBytes)
                let rows = Bench.kernels(threads: threads, shapes: try parsedShapes(), probe: probe) { s in
                    if !json { printError("  \(s)") }
                }
                if json {
                    struct Out: Encodable { var cpu_paths: [String]; var bandwidth: BandwidthProbe; var kernels: [KernelBenchRow] }
                    let paths = (0 ..< 3).filter { qlm_path_supported(Int32($0)) != 0 }.map { String(cString: qlm_path_name(Int32($0))) }
                    print(jsonLine(Out(cpu_paths: paths, bandwidth: probe, kernels: rows)))
                    return
                }
                print(String(format: "bandwidth probe: %.1f GB/s (%d threads, median of 5; min %.1f, max %.1f)",
                             probe.gbPerSecond.median, threads, probe.gbPerSecond.min, probe.gbPerSecond.max))
                var t: [[String]] = [["kind", "type", "path", "shape", "GB/s", "GFLOP/s", "of bandwidth"]]
                for r in rows {
                    t.append([r.kind, r.type, r.path, "\(r.rows)×\(r.cols)" + (r.tokens > 1 ? "×\(r.tokens)" : ""),
                              String(format: "%.1f", r.gbPerSecond), String(format: "%.1f", r.gflops),
                              r.kind == "matvec" ? String(format: "%.2f", r.bandwidthRatio) : ""])
                }
                print(TextTable.render(t))
                return
            }
            BenchClock.threadCPUTime = cpuTime
            let r = try Bench.model(path: model!, threads: threads, promptTokens: promptTokens, genTokens: genTokens,
                                    reps: reps, probeBytes: probeBytes, memoryBudget: try resources.budget(),
                                    populate: populate, attention: attention.config, screen: screen)
            if json {
                print(jsonLine(r))
                return
            }
            func s(_ st: Stat, _ f: String = "%.1f") -> String {
                String(format: "\(f) (min \(f), max \(f))", st.median, st.min, st.max)
            }
            print("""
            \(r.model): \(r.architecture), \(formatBytes(r.fileBytes)), \(r.threads) threads, \(r.reps) reps (median (min, max))
              load             \(s(r.loadMilliseconds, "%.2f")) ms; first token \(s(r.firstTokenMilliseconds, "%.2f")) ms
              prefill          \(s(r.prefillTokensPerSecond)) tok/s over \(r.promptTokens) tokens, \(String(format: "%.1f", r.prefillGFLOPS)) GFLOP/s
              decode           \(s(r.decodeTokensPerSecond)) tok/s over \(r.genTokens) tokens
              weights/token    \(formatBytes(r.weightBytesPerToken))
              effective        \(String(format: "%.2f", r.effectiveGBPerSecond)) GB/s; \(String(format: "%.2f", r.bandwidthRatio)) of the probe read around each rep (median; probe \(s(r.bandwidth.gbPerSecond)) GB/s)
              decode ms/token  products \(String(format: "%.3f", r.decodeBreakdown.products)), attention \(String(format: "%.3f", r.decodeBreakdown.attention)), other \(String(format: "%.3f", r.decodeBreakdown.other))
              prefill ms       products \(String(format: "%.1f", r.prefillBreakdown.products)), attention \(String(format: "%.1f", r.prefillBreakdown.attention)), other \(String(format: "%.1f", r.prefillBreakdown.other))
              KV cache         \(formatBytes(r.kvCacheBytes)); attention reads \(formatBytes(Int(r.kvBytesPerToken)))/token: weights + KV = \(String(format: "%.2f", r.bandwidthRatioWithKV)) of the probe
              peak RSS         \(formatBytes(r.memory.peakRSS)) (anon \(formatBytes(r.memory.rssAnon)), file \(formatBytes(r.memory.rssFile)) now; sampled peaks anon \(formatBytes(r.memory.peakRSSAnon)), file \(formatBytes(r.memory.peakRSSFile)))
              memory           \(budgetSummary(r.memoryPlan)); process peak RSS \(formatBytes(r.processPeakRSS)) (probes included)
            """)
            if let d = r.diskProbe, let share = r.streamedShareOfDiskProbe {
                print(String(format: "  disk             %@ read of the file: %.2f GB/s (min %.2f, max %.2f); decode streams %@/token = %.2f of it",
                             d.oDirect ? "O_DIRECT" : "buffered", d.gbPerSecond.median, d.gbPerSecond.min, d.gbPerSecond.max,
                             formatBytes(Int(r.memoryPlan.streamedBytesPerToken)), share))
            }
        }
    }
}
