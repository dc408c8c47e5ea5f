import CZstd
import Foundation
import Quant
#if canImport(Glibc)
import Glibc
#endif

/// What a run allocates besides the weights, decided before loading.
package struct MemorySettings: Sendable, Equatable {
    /// Bytes of the KV cache (the cache's own `bytes`, for the positions this run needs).
    package var kvBytes: Int
    /// Tokens per forward pass (activation scratch scales with it).
    package var maxBatch: Int
    /// Logit rows computed per product (at most maxBatch are allocated).
    package var logitChunk: Int

    package init(kvBytes: Int, maxBatch: Int, logitChunk: Int = 16) {
        self.kvBytes = kvBytes; self.maxBatch = maxBatch; self.logitChunk = logitChunk
    }
}

/// Which tensors stay resident and which stream through a fixed set of buffers, under a memory
/// budget. A pure function of the file's tensor table and metadata, the settings, the budget and
/// the process's baseline (`make`), so it is decided (and tested) without touching any weight.
///
/// The budget is the whole process's peak resident set: `budget = baseline + margin + planned`,
/// where `baseline` is what the process holds before any weight is read (VmRSS at plan time:
/// shared libraries, heap, the loaded tokenizer), `margin` (`defaultMarginBytes`) absorbs what
/// grows after plan time without being planned (thread stacks, library code first touched by
/// the kernels, the sampler and the report, allocator rounding), and `planned` is everything below.
///
/// Always resident: every block's 1-D tensors (norms, biases) and the small tensors outside
/// the blocks (GPT-2's position table, the final norm). Always allocated: the KV cache and the
/// scratch. What else stays resident is chosen to minimise the bytes streamed per token:
///
/// - the output matrix (classifier: GPT-2's tied `wte`, Llama's `output` or tied
///   `tok_embeddings`): resident, or streamed in row chunks through the layer buffers after the
///   last layer (every token reads it whole);
/// - an untied input embedding table: resident, or read one row per token (`RowReader`: pread of
///   the row, or the one zstd chunk holding it) — it costs a row (or a chunk) per token, so it is
///   the first thing to leave memory; a tied table follows the classifier;
/// - the layers' matrices: the first layers stay resident while they fit; the others stream, in
///   order, every forward pass, through two layer buffers (one computed, one filled by the
///   background loader).
///
/// Every combination of {classifier, embedding table} resident or streamed is planned (layers
/// filling the rest); the one streaming the fewest stored bytes per token wins, ties going to
/// the one keeping more resident (classifier first, then the embedding table).
package struct MemoryPlan: Sendable, Equatable {
    /// Room left for what the plan cannot see: thread stacks and malloc arenas of the compute
    /// pool and the loader thread, library and kernel code first touched after plan time, the
    /// sampler's vocabulary-sized buffers and the result's arrays, page rounding of allocations.
    /// Measured: peak RSS exceeds baseline + planned by 0–1.7 MiB on GPT-2 medium (docs/benchmarks.md:
    /// the plan also counts pages never touched, e.g. unused logit rows); 3 MiB leaves over 1 MiB spare.
    package static let defaultMarginBytes = 3 << 20

    package var model: String
    package var budget: Int?
    /// The process's resident set when the plan was made (VmRSS), and the margin on top of it.
    package var baselineBytes: Int
    package var marginBytes: Int
    /// Tensors loaded once and kept (names, table order), and their bytes.
    package var residentTensors: [String]
    package var residentBytes: Int
    /// Layers whose matrices are resident / streamed.
    package var residentLayers: [Int]
    package var streamedLayers: [Int]
    /// Layer tensors streamed through the buffers (names, table order).
    package var streamedTensors: [String]
    /// The output matrix (classifier) and, when it streams, its row chunks (each fits a buffer).
    package var outputTensor: String
    package var outputChunks: [Range<Int>]
    /// The input embedding table and whether its rows are read per token instead of kept.
    package var embeddingTensor: String
    package var embeddingStreams: Bool
    /// The row lookup's buffers: one row (raw) or one zstd chunk plus its compressed bytes.
    package var embeddingBufferBytes: Int
    /// Layer buffers (0 when nothing streams through them) and the bytes of each (the largest working set).
    package var bufferCount: Int
    package var bufferBytes: Int
    /// The loader's buffer for one compressed zstd chunk (0 for raw files or no streaming).
    package var stagingBytes: Int
    package var kvBytes: Int
    /// Activations, logits and the products' scratch.
    package var scratchBytes: Int
    /// Everything above: resident + buffers + staging + embedding lookup + KV + scratch.
    package var totalBytes: Int
    /// The smallest budget this model and these settings run in (baseline and margin included).
    package var minimumBytes: Int
    /// Stored (read from the file, chunk index included) and raw bytes of the streamed matrices
    /// (layers and a streamed classifier): what each forward pass streams.
    package var streamedStoredBytesPerPass: Int
    package var streamedRawBytesPerPass: Int
    /// The planner's estimate of what one decoded token streams (per pass + one embedding row lookup).
    package var estimatedStoredBytesPerToken: Int

    package var streams: Bool { bufferCount > 0 }
    /// The streamer drops each item's file pages from the page cache once read
    /// (POSIX_FADV_DONTNEED): set when the auto budget streams because memory is short, where
    /// the pages would only be reclaimed under the limit (a cgroup charges them); an explicit
    /// budget on a roomy host keeps them, so repeated passes may come from the cache.
    package var dropReadPages = false
    /// Streamed raw layers and classifier chunks are read with O_DIRECT into block-aligned
    /// buffers sized for their file spans (`directSpan`): no page-cache copy, nothing charged to
    /// a memory cgroup's page cache. Set by `make(directReads:)` (the auto budget, when it streams).
    package var directReads = false
    /// What the budget leaves unplanned (nil: no budget): room for a short-lived buffer (bench's probes).
    package var slackBytes: Int? { budget.map { $0 - baselineBytes - marginBytes - totalBytes } }
    package var outputStreams: Bool { !outputChunks.isEmpty }

    /// The classifier's and the input embedding's tensor names.
    package static func outputAndEmbedding(_ metadata: ModelMetadata) throws -> (output: String, embedding: String) {
        let names = try Architectures.named(metadata.architecture).tensorNames
        return (names.output(tied: metadata.hparams.tiedEmbeddings), names(.tokenEmbedding))
    }

    static func aligned(_ n: Int) -> Int { (n + 63) / 64 * 64 }

    /// Rows per zstd chunk of `t`, as the converter cut them (the chunk size it records).
    static func rowsPerChunk(_ t: TensorInfo, chunkBytes: Int?) -> Int {
        min(t.rows, ZstdChunks.rowsPerChunk(rowBytes: t.rowBytes, chunkBytes: chunkBytes ?? ZstdChunks.defaultChunkBytes,
                                            rowGroup: t.type.rowGroup))
    }

    /// Rows one raw read must cover to decode any row: a row group (q4_0x8), else one row.
    static func rawRowUnit(_ t: TensorInfo) -> Int { min(t.rows, t.type.rowGroup) }

    /// Bytes the loader stages for one zstd chunk of `t` (an upper bound: zstd's compress bound
    /// of the chunk's raw bytes, with the chunk size the converter records).
    /// A filtered file (`zstd_filter` other than none) also stages the chunk's decoded rows
    /// before the filter is undone.
    static func stagingBound(_ t: TensorInfo, chunkBytes: Int?, filtered: Bool = false) -> Int {
        guard t.encoding == .zstd else { return 0 }
        let raw = rowsPerChunk(t, chunkBytes: chunkBytes) * t.rowBytes
        return filtered ? aligned(ZSTD_compressBound(raw)) + raw : ZSTD_compressBound(raw)
    }

    /// The row lookup's buffers for `t`: one row, or one zstd chunk and its compressed bytes.
    static func rowLookupBytes(_ t: TensorInfo, chunkBytes: Int?, filtered: Bool = false) -> Int {
        guard t.encoding == .zstd else { return aligned(rawRowUnit(t) * t.rowBytes) }
        return aligned(rowsPerChunk(t, chunkBytes: chunkBytes) * t.rowBytes) + aligned(stagingBound(t, chunkBytes: chunkBytes, filtered: filtered))
    }

    /// Stored bytes one embedding lookup reads (a row; for zstd a chunk, on average).
    static func rowLookupStored(_ t: TensorInfo, chunkBytes: Int?) -> Int {
        guard t.encoding == .zstd else { return rawRowUnit(t) * t.rowBytes }
        let rpc = rowsPerChunk(t, chunkBytes: chunkBytes), n = (t.rows + rpc - 1) / rpc
        return t.storedLength / max(1, n)
    }

    /// Row chunks of the output matrix that fit a buffer of `bufferBytes` (whole zstd chunks).
    static func outputChunks(_ t: TensorInfo, bufferBytes: Int, chunkBytes: Int?) -> [Range<Int>] {
        let unit = t.encoding == .zstd ? rowsPerChunk(t, chunkBytes: chunkBytes) : rawRowUnit(t)
        let rows = max(unit, bufferBytes / max(1, unit * t.rowBytes) * unit)
        return stride(from: 0, to: t.rows, by: rows).map { $0 ..< min(t.rows, $0 + rows) }
    }

    /// O_DIRECT's alignment of file offsets, lengths and buffer addresses (the logical block
    /// size of any disk Linux runs on divides it).
    package static let directAlignment = 4096

    /// Bytes an O_DIRECT read of `ranges` (file byte ranges) covers: from the block holding the
    /// first byte to the end of the block holding the last (gaps between the ranges included).
    static func directSpan(_ ranges: [Range<Int>]) -> Int {
        guard let lo = ranges.map(\.lowerBound).min(), let hi = ranges.map(\.upperBound).max() else { return 0 }
        let a = directAlignment
        return (hi + a - 1) / a * a - lo / a * a
    }

    /// A transparent huge page (x86-64, arm64 with 4 KiB pages).
    package static let hugePageBytes = 2 << 20

    /// A direct-read layer buffer rounded up to whole huge pages when that costs at most an
    /// eighth more: the streamer then asks for transparent huge pages (`MADV_HUGEPAGE`), and an
    /// O_DIRECT read into one pins one page per 2 MiB instead of 512 and reaches the disk in far
    /// fewer segments (1.91 MiB reads of SmolLM2 Q4_0, no compute: 3.2-3.5 GB/s and 23-41 us of
    /// CPU per read vs 1.5-3.1 GB/s and 71-99 us into 4 KiB pages, docs/benchmarks-log.md). A
    /// huge page is charged whole, so the plan counts the rounded size; smaller buffers stay as
    /// they are (a huge page would cost more than it saves).
    package static func hugeRounded(_ n: Int) -> Int {
        let h = hugePageBytes, up = (n + h - 1) / h * h
        return (up - n) * 8 <= n ? up : n
    }

    /// A block-aligned read buffer of `bytes` (not zero-filled); whole huge pages start on one and
    /// ask for transparent huge pages (where THP is off or refused: 4 KiB pages, as before).
    /// Free it with `deallocate()`.
    package static func allocateReadBuffer(_ bytes: Int) -> UnsafeMutableRawPointer {
        let huge = bytes > 0 && bytes % hugePageBytes == 0
        let base = UnsafeMutableRawPointer.allocate(byteCount: max((bytes + directAlignment - 1) / directAlignment * directAlignment, 64),
                                                    alignment: huge ? hugePageBytes : directAlignment)
        if huge { _ = madvise(base, bytes, MADV_HUGEPAGE) }
        return base
    }

    /// What an O_DIRECT read of a row range of `t` may cover beyond the rows themselves: the
    /// start rounded down and the end rounded up to the alignment.
    static let directSlack = 2 * directAlignment

    package static func make(model: String, tensors: [TensorInfo], metadata: ModelMetadata,
                            settings: MemorySettings, budget: Int?, baseline: Int = 0,
                            margin: Int = defaultMarginBytes, shape: ModelShape? = nil,
                            directReads: Bool = false) throws -> MemoryPlan {
        let hp = metadata.hparams, chunkBytes = metadata.quantization.zstdChunkBytes
        let names = try Architectures.named(metadata.architecture).tensorNames
        // The architecture's shape (the loader passes it); the metadata's plain d_model / n_head otherwise.
        let sh = shape ?? ModelShape(nLayer: hp.nLayer, dModel: hp.dModel, nHead: hp.nHead, nKVHead: hp.nKVHead, headDim: hp.headDim,
                                     dFF: hp.dFF, nCtx: hp.nCtx, vocabSize: hp.vocabSize)
        let filtered = (metadata.quantization.zstdFilter ?? "none") != "none"
        let tokenizerTensor = metadata.tokenizer.tensor
        let (outName, embName) = try outputAndEmbedding(metadata)
        let tied = outName == embName
        var small: [TensorInfo] = []
        var out: TensorInfo?, emb: TensorInfo?
        var layerMatrices = [[TensorInfo]](repeating: [], count: hp.nLayer)
        for t in tensors where t.name != tokenizerTensor {
            if t.shape.count >= 2, let l = names.layerIndex(t.name), l < hp.nLayer {
                layerMatrices[l].append(t)
            } else if t.name == outName {
                out = t
            } else if t.name == embName {
                emb = t
            } else {
                small.append(t)
            }
        }
        guard let out else { throw ModelError("\(model) has no \(outName) tensor") }
        let embInfo = emb ?? out
        let layerBytes = layerMatrices.map { $0.reduce(0) { $0 + aligned($1.rawLength) } }
        let layerStored = layerMatrices.map { $0.reduce(0) { $0 + $1.storedLength } }
        // Direct reads (`directReads`, raw tensors): a streamed layer is one O_DIRECT read of its
        // file span into its buffer, each tensor at its offset in that span, so the buffer holds the
        // span (the block-aligned range from its first matrix to its last, the norms between included).
        func direct(_ ts: [TensorInfo]) -> Bool { directReads && !ts.isEmpty && ts.allSatisfy { $0.encoding == .raw } }
        let layerBuffer = layerMatrices.enumerated().map { l, ts in
            direct(ts) ? directSpan(ts.map { $0.offset ..< $0.offset + $0.rawLength }) : layerBytes[l]
        }
        let maxLayer = layerBuffer.max() ?? 0
        let layerStaging = layerMatrices.joined().map { stagingBound($0, chunkBytes: chunkBytes, filtered: filtered) }.max() ?? 0
        let smallBytes = small.reduce(0) { $0 + aligned($1.rawLength) }
        let scratch = RunState.byteCount(sh, maxBatch: settings.maxBatch, logitChunk: settings.logitChunk)
            + Compute.scratchBytes(maxCols: max(sh.dModel, sh.qDim, sh.dFF), maxBatch: max(settings.maxBatch, 16))
        let fixed = smallBytes + settings.kvBytes + scratch
        let limit = budget.map { $0 - baseline - margin }

        // One candidate: which of {classifier, embedding table} stay resident, layers filling the rest.
        struct Candidate {
            var outResident: Bool, embResident: Bool
            var keepLayers: Int, buffers: Bool, bufferBytes: Int, staging: Int, embBuffer: Int
            var total: Int, minimum: Int, streamedPerToken: Int
            /// What the minimum consists of: resident tensors, and whether it uses the buffers.
            var minimumResident: Int, minimumBuffered: Bool
        }
        func candidate(outResident: Bool, embResident: Bool) -> Candidate? {
            var residentBase = smallBytes
            if outResident { residentBase += aligned(out.rawLength) }
            if !tied && embResident { residentBase += aligned(embInfo.rawLength) }
            var base = fixed - smallBytes + residentBase
            let embBuffer = embResident ? 0 : rowLookupBytes(embInfo, chunkBytes: chunkBytes, filtered: filtered)
            let embCost = embResident ? 0 : rowLookupStored(embInfo, chunkBytes: chunkBytes)
            base += embBuffer
            let allLayers = layerBytes.reduce(0, +)
            // Without buffers (possible only with a resident classifier): every layer resident.
            let unbuffered = outResident ? base + allLayers : nil
            // With two buffers (the classifier's chunks need at least one zstd chunk or one row).
            let outUnit = out.encoding == .zstd ? rowsPerChunk(out, chunkBytes: chunkBytes) * out.rowBytes : rawRowUnit(out) * out.rowBytes
            var bufferBytes = max(maxLayer, outResident ? 0 : aligned(outUnit) + (direct([out]) ? directSlack : 0))
            if directReads { bufferBytes = (bufferBytes + directAlignment - 1) / directAlignment * directAlignment }
            let staging = max(layerStaging, outResident ? 0 : stagingBound(out, chunkBytes: chunkBytes, filtered: filtered))
            var buffered = base + 2 * bufferBytes + staging
            let room = limit ?? .max
            // Whole huge pages where the budget takes them (the minimum is that of the exact size).
            let minimumBufferedBytes = buffered
            if directReads, case let huge = hugeRounded(bufferBytes), huge > bufferBytes, buffered + 2 * (huge - bufferBytes) <= room {
                buffered += 2 * (huge - bufferBytes)
                bufferBytes = huge
            }
            let minimumBuffered = minimumBufferedBytes < (unbuffered ?? .max)
            let minimum = min(unbuffered ?? .max, minimumBufferedBytes)
            let minimumResident = residentBase + (minimumBuffered ? 0 : allLayers)
            if let unbuffered, unbuffered <= room {
                return Candidate(outResident: outResident, embResident: embResident, keepLayers: hp.nLayer, buffers: false,
                                 bufferBytes: 0, staging: 0, embBuffer: embBuffer, total: unbuffered, minimum: minimum,
                                 streamedPerToken: embCost, minimumResident: minimumResident, minimumBuffered: minimumBuffered)
            }
            guard buffered <= room else {
                return Candidate(outResident: outResident, embResident: embResident, keepLayers: -1, buffers: true,
                                 bufferBytes: bufferBytes, staging: staging, embBuffer: embBuffer, total: buffered,
                                 minimum: minimum, streamedPerToken: .max, minimumResident: minimumResident,
                                 minimumBuffered: minimumBuffered)
            }
            var left = room - buffered, keep = 0, total = buffered
            while keep < hp.nLayer, layerBytes[keep] <= left { left -= layerBytes[keep]; total += layerBytes[keep]; keep += 1 }
            let streamed = layerStored[keep...].reduce(0, +) + (outResident ? 0 : out.storedLength) + embCost
            return Candidate(outResident: outResident, embResident: embResident, keepLayers: keep, buffers: true,
                             bufferBytes: bufferBytes, staging: staging, embBuffer: embBuffer, total: total,
                             minimum: minimum, streamedPerToken: streamed, minimumResident: minimumResident,
                             minimumBuffered: minimumBuffered)
        }
        // Preference order for ties: classifier resident first, then the embedding table.
        let options: [(Bool, Bool)] = tied ? [(true, true), (false, false)] : [(true, true), (true, false), (false, true), (false, false)]
        let candidates = options.compactMap { candidate(outResident: $0.0, embResident: $0.1) }
        let minimumPlan = candidates.min { $0.minimum < $1.minimum }!
        let minimum = baseline + margin + minimumPlan.minimum
        let feasible = candidates.filter { $0.keepLayers >= 0 }
        guard let best = feasible.min(by: { $0.streamedPerToken < $1.streamedPerToken }) else {
            let m = minimumPlan
            var parts = "baseline \(mib(baseline)) MiB + margin \(mib(margin)) MiB + resident \(mib(m.minimumResident)) MiB"
            if m.minimumBuffered { parts += " + 2 layer buffers \(mib(2 * m.bufferBytes)) MiB" }
            parts += " + KV \(mib(settings.kvBytes)) MiB + scratch \(mib(scratch + (m.minimumBuffered ? m.staging : 0) + m.embBuffer)) MiB"
            if !m.outResident { parts += "; the classifier streams" }
            if !m.embResident && !tied { parts += "; embedding rows are read per token" }
            throw ModelError("--memory-budget \(MemoryBudget.format(budget!)) is below the minimum for \(model) with these settings: "
                + "\(mib(minimum)) MiB (\(parts))")
        }

        var plan = MemoryPlan(
            model: model, budget: budget, baselineBytes: baseline, marginBytes: margin, residentTensors: [], residentBytes: 0,
            residentLayers: Array(0 ..< best.keepLayers), streamedLayers: Array(best.keepLayers ..< hp.nLayer),
            streamedTensors: [], outputTensor: outName,
            outputChunks: best.outResident ? [] : outputChunks(out, bufferBytes: best.bufferBytes - (direct([out]) ? directSlack : 0),
                                                                chunkBytes: chunkBytes),
            embeddingTensor: embName, embeddingStreams: !best.embResident, embeddingBufferBytes: best.embBuffer,
            bufferCount: best.buffers ? 2 : 0, bufferBytes: best.bufferBytes, stagingBytes: best.staging,
            kvBytes: settings.kvBytes, scratchBytes: scratch, totalBytes: best.total, minimumBytes: minimum,
            streamedStoredBytesPerPass: 0, streamedRawBytesPerPass: 0, estimatedStoredBytesPerToken: best.streamedPerToken)
        plan.directReads = directReads && best.buffers
        for t in tensors where t.name != tokenizerTensor {
            if t.shape.count >= 2, let l = names.layerIndex(t.name), l < hp.nLayer, l >= best.keepLayers {
                plan.streamedTensors.append(t.name)
                plan.streamedStoredBytesPerPass += t.storedLength
                plan.streamedRawBytesPerPass += t.rawLength
            } else if t.name == outName && !best.outResident {
                plan.streamedStoredBytesPerPass += t.storedLength
                plan.streamedRawBytesPerPass += t.rawLength
            } else if t.name == embName && !best.embResident {
                continue
            } else {
                plan.residentTensors.append(t.name)
                plan.residentBytes += aligned(t.rawLength)
            }
        }
        precondition(plan.totalBytes == plan.residentBytes + plan.bufferCount * plan.bufferBytes + plan.stagingBytes
            + plan.embeddingBufferBytes + plan.kvBytes + plan.scratchBytes)
        return plan
    }
}

/// The plan and what streaming did, as --json reports it.
package struct MemoryReport: Codable, Sendable {
    package var budgetBytes: Int?
    /// The process's resident set at plan time and the margin the plan leaves on top of it.
    package var baselineBytes: Int
    package var marginBytes: Int
    package var plannedBytes: Int
    /// Everything the plan keeps in memory (= plannedBytes: tensors, buffers, KV, scratch).
    package var plannedResidentBytes: Int
    package var residentTensorBytes: Int
    package var bufferCount: Int
    package var bufferBytes: Int
    package var kvBytes: Int
    package var scratchBytes: Int
    package var minimumBudgetBytes: Int
    package var streamedLayers: Int
    /// Row chunks the classifier streams in per token (0: resident).
    package var classifierChunks: Int
    /// The input embedding is read a row per token instead of kept.
    package var embeddingStreamed: Bool
    /// Bytes read from the file per decoded token (stored: compressed for zstd): streamed layers,
    /// a streamed classifier and embedding row lookups.
    package var streamedBytesPerToken: Double
    /// The same, decoded (what the buffers receive).
    package var streamedRawBytesPerToken: Double
    /// Seconds per decoded token the layer loader spent reading (nil: nothing streams through
    /// the buffers). Against the seconds per token: near 1, the reads are the limit; below, compute is.
    package var loaderReadSecondsPerToken: Double?

    enum CodingKeys: String, CodingKey {
        case budgetBytes = "budget_bytes", baselineBytes = "baseline_bytes", marginBytes = "margin_bytes"
        case classifierChunks = "classifier_chunks", embeddingStreamed = "embedding_streamed"
        case plannedBytes = "planned_bytes", plannedResidentBytes = "planned_resident_bytes"
        case residentTensorBytes = "resident_tensor_bytes", bufferCount = "buffer_count", bufferBytes = "buffer_bytes"
        case kvBytes = "kv_bytes", scratchBytes = "scratch_bytes", minimumBudgetBytes = "minimum_budget_bytes"
        case streamedLayers = "streamed_layers", streamedBytesPerToken = "streamed_bytes_per_token"
        case streamedRawBytesPerToken = "streamed_raw_bytes_per_token"
        case loaderReadSecondsPerToken = "loader_read_seconds_per_token"
    }

    package init(plan: MemoryPlan, streamedBytesPerToken: Double, streamedRawBytesPerToken: Double) {
        budgetBytes = plan.budget
        baselineBytes = plan.baselineBytes
        marginBytes = plan.marginBytes
        classifierChunks = plan.outputChunks.count
        embeddingStreamed = plan.embeddingStreams
        plannedBytes = plan.totalBytes
        plannedResidentBytes = plan.totalBytes
        residentTensorBytes = plan.residentBytes
        bufferCount = plan.bufferCount
        bufferBytes = plan.bufferBytes
        kvBytes = plan.kvBytes
        scratchBytes = plan.scratchBytes + plan.stagingBytes + plan.embeddingBufferBytes
        minimumBudgetBytes = plan.minimumBytes
        streamedLayers = plan.streamedLayers.count
        self.streamedBytesPerToken = streamedBytesPerToken
        self.streamedRawBytesPerToken = streamedRawBytesPerToken
    }
}
