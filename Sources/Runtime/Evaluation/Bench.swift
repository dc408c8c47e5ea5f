import CKernels
import Foundation
import Quant

/// Median, min and max of repeated measurements.
package struct Stat: Codable, Sendable {
    package var median: Double
    package var min: Double
    package var max: Double

    package init(_ xs: [Double]) {
        let s = xs.sorted()
        median = s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
        min = s.first ?? 0
        max = s.last ?? 0
    }
}

/// The clock of `run bench`: wall time, or (`--cpu-time`, one thread) the calling thread's CPU
/// time, which a host busy with other jobs does not inflate (time spent descheduled is not counted).
package enum BenchClock {
    nonisolated(unsafe) package static var threadCPUTime = false
    @inline(__always) static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(threadCPUTime ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

@inline(__always) func now() -> Double { Double(BenchClock.nanoseconds()) * 1e-9 }

/// Sequential-read bandwidth of this machine, measured in the same run as what it is compared with.
package struct BandwidthProbe: Codable, Sendable {
    package var bytes: Int
    package var threads: Int
    /// GB/s (1e9 bytes per second).
    package var gbPerSecond: Stat

    enum CodingKeys: String, CodingKey { case bytes, threads, gbPerSecond = "gb_per_second" }

    package static func measure(threads: Int, bytes: Int = 1 << 30, reps: Int = 5) -> BandwidthProbe {
        let reader = BandwidthReader(threads: threads, bytes: bytes)
        return BandwidthProbe(bytes: bytes, threads: threads, gbPerSecond: Stat((0 ..< reps).map { _ in reader.read() }))
    }
}

/// The probe's buffer and pool, kept so single reads can be interleaved with what they are
/// compared with (the host's bandwidth drifts by tens of percent within seconds).
package final class BandwidthReader {
    let n: Int
    let buf: UnsafeMutablePointer<Float>
    let pool: OpaquePointer?
    var sink = 0.0

    package init(threads: Int, bytes: Int) {
        n = max(16, bytes / 4)
        buf = UnsafeMutablePointer<Float>.allocate(capacity: n)
        buf.initialize(repeating: 1, count: n)
        pool = threads > 1 ? qlm_pool_create(Int32(threads)) : nil
        sink += qlm_probe_read(pool, buf, n) // warm
    }

    deinit {
        if let pool { qlm_pool_destroy(pool) }
        if sink == -1 { print(sink) }
        buf.deallocate()
    }

    /// One sequential read of the buffer: GB/s (1e9 bytes per second).
    package func read() -> Double {
        let t0 = now()
        sink += qlm_probe_read(pool, buf, n)
        return Double(n * 4) / (now() - t0) / 1e9
    }
}

package struct DecodeBreakdown: Codable, Sendable {
    package var products: Double
    package var attention: Double
    package var other: Double
}

package struct ModelBenchReport: Codable, Sendable {
    package var model: String
    package var architecture: String
    package var threads: Int
    package var fileBytes: Int
    package var promptTokens: Int
    package var genTokens: Int
    package var reps: Int
    package var loadMilliseconds: Stat
    /// Load plus one forward pass.
    package var firstTokenMilliseconds: Stat
    package var prefillTokensPerSecond: Stat
    package var decodeTokensPerSecond: Stat
    /// Weight bytes a decoded token reads (every matrix once, the embedding row aside).
    package var weightBytesPerToken: Int
    /// weightBytesPerToken × median decode tokens/s.
    package var effectiveGBPerSecond: Double
    package var bandwidth: BandwidthProbe
    /// How close decode is to the memory-bandwidth bound: for each rep, its decode GB/s (weight
    /// bytes) ÷ the probe reads just before and after it (their mean); the median over reps.
    /// The probe runs between the reps, so each ratio compares the same minute of the host.
    package var bandwidthRatio: Double
    /// KV-cache bytes a decoded token's attention reads (keys and values of every position it
    /// sees, every layer), averaged over the decoded positions: traffic the weight figure omits.
    package var kvBytesPerToken: Double
    /// The same per-rep ratio counting weight + KV bytes per token.
    package var bandwidthRatioWithKV: Double
    /// Each rep's decode tokens/s, and the probe GB/s around it (the inputs of the two ratios).
    package var decodeTokensPerSecondPerRep: [Double]
    package var probeGBPerSecondAroundRep: [Double]
    /// Where a decoded token's time goes (median over reps, ms per token): the products
    /// (activation quantization + pool dispatch + kernel), attention, and everything else
    /// (norms, residuals, embedding, sampling). Measured in the same decode runs (two clock
    /// reads per product and per attention call).
    package var decodeBreakdown: DecodeBreakdown
    /// The same split of a prefill (ms for the whole prompt, median over reps).
    package var prefillBreakdown: DecodeBreakdown
    /// Prefill arithmetic: 2 × parameters in matrices × prompt tokens per second.
    package var prefillGFLOPS: Double
    package var kvCacheBytes: Int
    package var memory: MemoryStats
    /// VmHWM at the end of the run, the probes' buffers included (under a budget: within it).
    package var processPeakRSS: Int
    /// The memory plan; streamed bytes per token are those of the decode runs ÷ their tokens.
    package var memoryPlan: MemoryReport
    /// When layers stream: the disk's speed for the loader's reads, and the streamed GB/s
    /// (streamed bytes per token × decode tok/s) over it: 1 means decode streams as fast as the
    /// disk reads; time per token ÷ (streamed bytes per token ÷ the probe) is its inverse.
    /// With O_DIRECT streaming the probe is the loader's own pattern (`pattern` "loader":
    /// its buffers, read size and pieces in flight, `Weights.probeDisk`) read before the first rep
    /// and after each, and the share is per rep against the reads just before and after it,
    /// median over reps (`streamedShareOfDiskProbePerRep`); otherwise the file's 4 MiB reads
    /// before the first load and after the model is released, against the median decode.
    package var diskProbe: DiskProbe?
    package var streamedShareOfDiskProbe: Double?
    package var streamedShareOfDiskProbePerRep: [Double]?
    /// The file's 4 MiB reads before the load and after the release (`pattern` "file") and the
    /// median decode's share of them, beside a loader-pattern probe (a cross-check of the probe).
    package var diskProbeFile: DiskProbe?
    package var streamedShareOfDiskProbeFile: Double?

    enum CodingKeys: String, CodingKey {
        case model, architecture, threads, fileBytes = "file_bytes", promptTokens = "prompt_tokens", genTokens = "gen_tokens", reps
 case loadMilliseconds = "load_ms", firstTokenMilliseconds = "first_token_ms",
             prefillTokensPerSecond = "prefill_tokens_per_second"
        case decodeTokensPerSecond = "decode_tokens_per_second", weightBytesPerToken = "weight_bytes_per_token"
        case effectiveGBPerSecond = "effective_gb_per_second", bandwidth, bandwidthRatio = "bandwidth_ratio"
        case kvBytesPerToken = "kv_bytes_per_token", bandwidthRatioWithKV = "bandwidth_ratio_with_kv"
        case decodeTokensPerSecondPerRep = "decode_tokens_per_second_per_rep", probeGBPerSecondAroundRep = "probe_gb_per_second_around_rep"
        case decodeBreakdown = "decode_ms_per_token", prefillBreakdown = "prefill_ms"
        case prefillGFLOPS = "prefill_gflops", kvCacheBytes = "kv_cache_bytes", memory, memoryPlan = "memory_plan"
        case processPeakRSS = "process_peak_rss_bytes", diskProbe = "disk_probe", streamedShareOfDiskProbe = "streamed_share_of_disk_probe"
        case streamedShareOfDiskProbePerRep = "streamed_share_of_disk_probe_per_rep"
        case diskProbeFile = "disk_probe_file", streamedShareOfDiskProbeFile = "streamed_share_of_disk_probe_file"
    }
}

package struct KernelBenchRow: Codable, Sendable {
    package var kind: String        // "matvec" or "gemm"
    package var type: String
    package var path: String
    package var rows: Int
    package var cols: Int
    package var tokens: Int
    package var threads: Int
    package var gbPerSecond: Double
    package var gflops: Double
    package var bandwidthRatio: Double

    enum CodingKeys: String, CodingKey {
        case kind, type, path, rows, cols, tokens, threads, gbPerSecond = "gb_per_second", gflops, bandwidthRatio = "bandwidth_ratio"
    }
}

package enum Bench {
    /// Bytes each loader-pattern disk probe read takes (`Weights.probeDisk`): ~0.1-0.2 s at this
    /// host's 1.3-2.7 GB/s, beside a 1-4 s decode rep; the streamed span is read again from its start at its end.
    package static let loaderProbeBytes = 256 << 20

    /// Loads the model `reps` times, then runs prefill of `promptTokens` and greedy decode of
    /// `genTokens` `reps` times, against a bandwidth probe measured in the same run.
    package static func model(path: String, threads: Int, promptTokens: Int, genTokens: Int, reps: Int,
                             probeBytes: Int = 1 << 30, memoryBudget: BudgetSetting = .none, populate: Bool = false,
                             attention: AttentionConfig = AttentionConfig(), screen: Int? = nil) throws -> ModelBenchReport {
        var loads: [Double] = [], firsts: [Double] = []
        var lm: LoadedModel?
        // The disk probe (O_DIRECT reads of the model file through a 4 MiB buffer) runs before
        // the first load, when the budget's memory is not yet taken (afterwards a budget leaves
        // too little for a buffer that reaches the disk's sequential speed), and again once the
        // model is released, so it brackets the decode on a disk whose speed drifts.
        let disk = memoryBudget != .none ? try DiskProbe.measure(path: path, reads: 3) : nil
        for _ in 0 ..< reps {
            // A model that streams is loaded once: a second load would plan against the heap the
            // first one left (SmolLM2 Q4_0 in 1/3 of its file: 16.3 MiB baseline instead of 11.2,
            // which the cgroup cannot hold), and what is timed is the decode.
            if let l = lm, l.plan.streams { break }
            lm = nil
            // Under a budget the next load plans against the anonymous memory the last one
            // left: give the freed heap back first.
            if memoryBudget != .none { _ = glibcMallocTrim(0) }
            let t0 = now()
            // Under a budget (auto included) the KV cache holds exactly the benchmark's positions.
            var o = LoadOptions(threads: threads, maxBatch: max(1, min(promptTokens, 512)),
                                populate: populate, attention: attention, memoryBudget: memoryBudget.explicitBytes,
                                kvPositions: memoryBudget == .none ? nil : promptTokens + genTokens)
            o.autoBudget = memoryBudget == .auto
            o.screen = screen.map { ($0, false) }
            lm = try LoadedModel(path: path, options: o)
            loads.append((now() - t0) * 1000)
            // Time to first token: the load plus one forward pass (page faults of a lazy map land here).
            try lm!.model.forward([0], startPos: 0, logitRows: 0 ..< 1) { _, _ in }
            firsts.append((now() - t0) * 1000)
        }
        // The decode part, in a function of its own so that nothing but `lm` holds the model
        // afterwards (the disk probe after it reads through memory the model gave back).
        func decodePart() throws -> ModelBenchReport {
            let m = lm!.model
            let hp = m.shape
            guard promptTokens >= 1, genTokens >= 1, promptTokens + genTokens <= m.cache.capacity else {
                throw ModelError("--prompt-tokens + --gen-tokens (\(promptTokens + genTokens)) must fit the model's context of \(m.cache.capacity)")
            }
            // Deterministic token ids spread over the vocabulary.
            let prompt: [Int32] = (0 ..< promptTokens).map { Int32(($0 * 7919 + 13) % hp.vocabSize) }
            var prefill: [Double] = [], decode: [Double] = []
            var streamedDecode = (stored: 0, raw: 0)
            var loaderRead = 0.0
            var linearMs: [Double] = [], attentionMs: [Double] = [], otherMs: [Double] = []
            var preLinearMs: [Double] = [], preAttentionMs: [Double] = [], preOtherMs: [Double] = []
            let compute = m.compute
            defer { compute.timing = false }
            var memory: MemoryStats?
            var reader: BandwidthReader?
            var probeAfter: [Double] = [] // probe read right after each rep
            // Under a budget the probes' buffers come out of it: what the plan left unused.
            let room = lm!.plan.slackBytes ?? .max
            var memoryProbeBytes = probeBytes
            // The disk for the loader's own reads, before the first rep and after each one
            // (O_DIRECT streaming only; through the streamer's buffers, inside the plan).
            var diskReads: [Double] = [], diskChunk = 0, diskPieces = 1
            let loaderProbe = memoryBudget != .none && lm!.plan.streams && lm!.plan.directReads
            func diskRead() throws {
                guard let r = try lm!.weights.probeDisk(bytes: Bench.loaderProbeBytes) else { return }
                diskReads.append(r.gbPerSecond); diskChunk = r.chunkBytes; diskPieces = r.pieces
            }
            if loaderProbe { try diskRead() }

            for _ in 0 ..< reps {
                var next: Int32 = 0
                compute.linearNanos = 0; compute.attentionNanos = 0; compute.timing = true
                let t0 = now()
                try m.forward(prompt, startPos: 0, logitRows: promptTokens - 1 ..< promptTokens) { _, l in next = Sampler.argmax(l) }
                let t1 = now()
                let pl = Double(compute.linearNanos) / 1e6, pa = Double(compute.attentionNanos) / 1e6
                preLinearMs.append(pl); preAttentionMs.append(pa); preOtherMs.append((t1 - t0) * 1e3 - pl - pa)
                compute.linearNanos = 0; compute.attentionNanos = 0
                let c0 = lm!.streamedCounters, r0 = lm!.weights.streamReadSeconds
                // The sampled id goes to `next`, not into `one`: writing the array that forward()
                // is reading would copy it (one allocation per token).
                var one: [Int32] = [next]
                for i in 0 ..< genTokens {
                    try m.forward(one, startPos: promptTokens + i, logitRows: 0 ..< 1) { _, l in next = Sampler.argmax(l) }
                    one[0] = next
                }
                let t2 = now()
                compute.timing = false
                let perTok = 1e3 / Double(genTokens)
                let lin = Double(compute.linearNanos) / 1e9 * perTok, att = Double(compute.attentionNanos) / 1e9 * perTok
                linearMs.append(lin); attentionMs.append(att); otherMs.append((t2 - t1) * perTok - lin - att)
                let c1 = lm!.streamedCounters
                streamedDecode.stored += c1.stored - c0.stored
                streamedDecode.raw += c1.raw - c0.raw
                loaderRead += lm!.weights.streamReadSeconds - r0
                MemoryStats.sample()
                prefill.append(Double(promptTokens) / (t1 - t0))
                decode.append(Double(genTokens) / (t2 - t1))
                if !diskReads.isEmpty { try diskRead() }
                if memory == nil { // after the first rep (the decode loop allocates nothing more), before the probe's buffer inflates the peak
                    memory = MemoryStats.current()
                    memoryProbeBytes = max(64 << 10, min(probeBytes, room))
                    reader = BandwidthReader(threads: threads, bytes: memoryProbeBytes)
                }
                probeAfter.append(reader!.read())
            }
            // At least 5 reads for the reported bandwidth; the per-rep ratios use the adjacent ones.
            var reads = probeAfter
            while reads.count < 5 { reads.append(reader!.read()) }
            let probe = BandwidthProbe(bytes: memoryProbeBytes, threads: threads, gbPerSecond: Stat(reads))
            reader = nil
            // The streamed bytes of each rep's decode against the disk probe read right after it.
            let streamedPerToken = Double(streamedDecode.stored) / Double(reps * genTokens)
            let streams = lm!.plan.streams
            var diskProbe = streams ? disk : nil
            var diskShare = diskProbe.map { $0.share(bytesPerToken: streamedPerToken, tokensPerSecond: Stat(decode).median) }
            var diskSharePerRep: [Double]?
            if diskReads.count == reps + 1 {
                // Rep i against the loader-pattern reads just before and after it.
                let shares = (0 ..< reps).map { streamedPerToken * decode[$0] / 1e9 / (0.5 * (diskReads[$0] + diskReads[$0 + 1])) }
                diskSharePerRep = shares
                diskShare = Stat(shares).median
                diskProbe = DiskProbe(bytes: Bench.loaderProbeBytes, bufferBytes: diskChunk, oDirect: true, readsGBPerSecond: diskReads,
                                      pieces: diskPieces, pattern: "loader")
            }
            let processPeak = MemoryStats.current().peakRSS
            // Bandwidth around rep i: the reads just before and after it (rep 0: the one after).
            var around: [Double] = []
            for i in 0 ..< reps { around.append(i == 0 ? probeAfter[0] : 0.5 * (probeAfter[i - 1] + probeAfter[i])) }
            let perToken = m.weightBytesPerToken
            let dec = Stat(decode), pre = Stat(prefill)
            let eff = Double(perToken) * dec.median / 1e9
            // What each decoded position's attention read (a function of the position and the layer's
            // pattern only, so it is counted here, outside the timed loop).
            var kvRead = 0
            let runs = UnsafeMutablePointer<KVRun>.allocate(capacity: m.cache.maxRuns)
            defer { runs.deallocate() }
            for pos in promptTokens ..< promptTokens + genTokens {
                for layer in 0 ..< hp.nLayer {
                    let n = m.cache.visibleRuns(layer: layer, pos: pos, into: runs)
                    for r in 0 ..< n { kvRead += runs[r].count * 2 * m.cache.rowBytes }
                }
            }
            let kvPerToken = Double(kvRead) / Double(genTokens)
            var ratios: [Double] = [], ratiosKV: [Double] = []
            for i in 0 ..< reps {
                let gbW: Double = Double(perToken) * decode[i] / 1e9
                let gbKV: Double = (Double(perToken) + kvPerToken) * decode[i] / 1e9
                ratios.append(gbW / around[i])
                ratiosKV.append(gbKV / around[i])
            }
            let ratio = Stat(ratios).median, withKV = Stat(ratiosKV).median
            func decodeMemoryReport() -> MemoryReport {
                var r = MemoryReport(plan: lm!.plan, streamedBytesPerToken: streamedPerToken,
                                     streamedRawBytesPerToken: Double(streamedDecode.raw) / Double(reps * genTokens))
                if lm!.plan.streams { r.loaderReadSecondsPerToken = loaderRead / Double(reps * genTokens) }
                return r
            }
            let breakdown = DecodeBreakdown(products: Stat(linearMs).median, attention: Stat(attentionMs).median, other: Stat(otherMs).median)
            return ModelBenchReport(
                model: path, architecture: lm!.file.metadata.architecture, threads: threads, fileBytes: lm!.file.map.count,
                promptTokens: promptTokens, genTokens: genTokens, reps: reps, loadMilliseconds: Stat(loads), firstTokenMilliseconds: Stat(firsts),
                prefillTokensPerSecond: pre, decodeTokensPerSecond: dec, weightBytesPerToken: perToken,
                effectiveGBPerSecond: eff, bandwidth: probe, bandwidthRatio: ratio,
                kvBytesPerToken: kvPerToken, bandwidthRatioWithKV: withKV,
                decodeTokensPerSecondPerRep: decode, probeGBPerSecondAroundRep: around, decodeBreakdown: breakdown,
                prefillBreakdown: DecodeBreakdown(products: Stat(preLinearMs).median, attention: Stat(preAttentionMs).median,
                                                  other: Stat(preOtherMs).median),
                prefillGFLOPS: 2 * Double(m.matrixParameters) * pre.median / 1e9,
                kvCacheBytes: m.cache.bytes, memory: memory!, processPeakRSS: processPeak,
                memoryPlan: decodeMemoryReport(),
                diskProbe: diskProbe, streamedShareOfDiskProbe: diskShare, streamedShareOfDiskProbePerRep: diskSharePerRep)
        }
        var report = try decodePart()
        if let before = disk, report.memoryPlan.bufferCount > 0 {
            // The file's 4 MiB reads again once the model is released: bracketing the decode.
            lm = nil
            _ = glibcMallocTrim(0)
            let after = try DiskProbe.measure(path: path, reads: 3)
            let both = DiskProbe(bytes: before.bytes, bufferBytes: before.bufferBytes, oDirect: before.oDirect,
                                 readsGBPerSecond: (before.readsGBPerSecond ?? []) + (after.readsGBPerSecond ?? []),
                                 pieces: before.pieces, pattern: before.pattern)
            let share = both.share(bytesPerToken: report.memoryPlan.streamedBytesPerToken,
                                   tokensPerSecond: report.decodeTokensPerSecond.median)
            if report.streamedShareOfDiskProbePerRep == nil {
                report.diskProbe = both
                report.streamedShareOfDiskProbe = share
            } else {
                report.diskProbeFile = both
                report.streamedShareOfDiskProbeFile = share
            }
        }
        return report
    }

    /// Every (type × CPU path × shape) matvec and GEMM, weights rotated through a 1 GiB set (larger
    /// than the caches) so matvecs stream from memory.
    package static func kernels(threads: Int, shapes: [(Int, Int)], tokens: Int = 128, probe: BandwidthProbe,
                               minSeconds: Double = 0.25, progress: ((String) -> Void)? = nil) -> [KernelBenchRow] {
        let pool = threads > 1 ? qlm_pool_create(Int32(threads)) : nil
        defer { if let pool { qlm_pool_destroy(pool) } }
        let saved = qlm_get_path()
        defer { qlm_set_path(saved) }
        var rows: [KernelBenchRow] = []
        let paths = [QLM_PATH_SCALAR, QLM_PATH_AVX2, QLM_PATH_AVX512].map { Int32($0.rawValue) }.filter { qlm_path_supported($0) != 0 }
        for (r, c) in shapes {
            // Random floats, quantized per type.
            var x = [Float](repeating: 0, count: c * max(tokens, 1))
            var s: UInt64 = 0x1234_5678
            func rnd() -> Float { s = s &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: s >> 11) % 2000 - 1000) / 1000 }
            for i in x.indices { x[i] = rnd() }
            let src = (0 ..< r * c).map { _ in rnd() * 0.05 }
            for type in QuantType.weightTypes {
                let rowBytes = type.rowSize(c), size = r * rowBytes
                let copies = max(1, (1 << 30) / size) // 1 GiB: far larger than any L3
                let w = UnsafeMutableRawPointer.allocate(byteCount: size * copies, alignment: 64)
                defer { w.deallocate() }
                _ = qlm_quantize_rows(type.rawValue, src, w, Int64(r), Int64(c), 2)
                for k in 1 ..< copies { (w + k * size).copyMemory(from: w, byteCount: size) }
                let act = UnsafeMutableRawPointer.allocate(byteCount: Int(qlm_act_row_size(type.rawValue, Int64(c))) * max(tokens, 1), alignment: 64)
                defer { act.deallocate() }
                let y = UnsafeMutablePointer<Float>.allocate(capacity: r * max(tokens, 1))
                defer { y.deallocate() }
                for path in paths {
                    qlm_set_path(path)
                    let pname = String(cString: qlm_path_name(path))
                    progress?("\(type.name) \(pname) \(r)×\(c)")
                    // matvec
                    var n = 0
                    var t0 = now()
                    repeat {
                        qlm_matvec(pool, type.rawValue, w + (n % copies) * size, Int64(r), Int64(c), x, y, act)
                        n += 1
                    } while now() - t0 < minSeconds || n < 3
                    var dt = (now() - t0) / Double(n)
                    let gbs = Double(size) / dt / 1e9
                    rows.append(KernelBenchRow(kind: "matvec", type: type.name, path: pname, rows: r, cols: c, tokens: 1, threads: threads,
                                               gbPerSecond: gbs, gflops: 2 * Double(r * c) / dt / 1e9,
                                               bandwidthRatio: gbs / probe.gbPerSecond.median))
                    // GEMM
                    guard tokens > 1 else { continue }
                    n = 0
                    t0 = now()
                    repeat {
                        qlm_matmul(pool, type.rawValue, w, Int64(r), Int64(c), x, Int64(tokens), y, Int64(r), act)
                        n += 1
                    } while now() - t0 < minSeconds || n < 2
                    dt = (now() - t0) / Double(n)
                    rows.append(KernelBenchRow(kind: "gemm", type: type.name, path: pname, rows: r, cols: c, tokens: tokens, threads: threads,
                                               gbPerSecond: Double(size) / dt / 1e9, gflops: 2 * Double(r * c * tokens) / dt / 1e9,
                                               bandwidthRatio: 0))
                }
            }
        }
        return rows
    }
}

/// glibc's malloc_trim (not in the Glibc module's headers): returns freed heap to the kernel.
@_silgen_name("malloc_trim") package func glibcMallocTrim(_ pad: Int) -> Int32
