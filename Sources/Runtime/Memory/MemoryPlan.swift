import CZstd
import Foundation
import Quant

/// What a run allocates besides the weights, decided before loading.
public struct MemorySettings: Sendable, Equatable {
    /// Bytes of the KV cache (the cache's own `bytes`, for the positions this run needs).
    public var kvBytes: Int
    /// Tokens per forward pass (activation scratch scales with it).
    public var maxBatch: Int
    /// Logit rows computed per product (at most maxBatch are allocated).
    public var logitChunk: Int

    public init(kvBytes: Int, maxBatch: Int, logitChunk: Int = 16) {
        self.kvBytes = kvBytes; self.maxBatch = maxBatch; self.logitChunk = logitChunk
    }
}

/// Which tensors stay resident and which layers stream through a fixed set of buffers, under a
/// memory budget. A pure function of the file's tensor table and metadata, the settings and the
/// budget (`make`), so it is decided (and tested) without touching any weight.
///
/// Resident always: every tensor outside the transformer blocks (embeddings, final norm,
/// classifier) and every block's 1-D tensors (norms, biases). A block's matrices are its
/// "working set". If everything fits, nothing streams. Otherwise two layer buffers (one being
/// computed, one being filled by the background loader) plus as many whole layers kept resident
/// as the rest of the budget holds (the first ones); the other layers stream, in order, every
/// forward pass.
public struct MemoryPlan: Sendable, Equatable {
    public var model: String
    public var budget: Int?
    /// Tensors loaded once and kept (names, table order), and their bytes.
    public var residentTensors: [String]
    public var residentBytes: Int
    /// Layers whose matrices are resident / streamed.
    public var residentLayers: [Int]
    public var streamedLayers: [Int]
    /// Tensors streamed through the buffers (names, table order).
    public var streamedTensors: [String]
    /// Layer buffers (0 when nothing streams) and the bytes of each (the largest working set).
    public var bufferCount: Int
    public var bufferBytes: Int
    /// The loader's buffer for one compressed zstd chunk (0 for raw files or no streaming).
    public var stagingBytes: Int
    public var kvBytes: Int
    /// Activations, logits and the products' scratch.
    public var scratchBytes: Int
    /// Everything above: resident + buffers + staging + KV + scratch.
    public var totalBytes: Int
    /// The smallest budget this model and these settings run in.
    public var minimumBytes: Int
    /// Stored (read from the file) and raw bytes of the streamed matrices: what each forward pass streams.
    public var streamedStoredBytesPerPass: Int
    public var streamedRawBytesPerPass: Int

    public var streams: Bool { bufferCount > 0 }

    /// The layer index of a tensor inside a transformer block, from its canonical name.
    public static func layerIndex(_ name: String, architecture: Architecture) -> Int? {
        let prefix = architecture == .gpt2 ? "h." : "layers."
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let l = Int(rest[..<dot]), l >= 0 else { return nil }
        return l
    }

    static func aligned(_ n: Int) -> Int { (n + 63) / 64 * 64 }

    /// Bytes the loader stages for one zstd chunk of `t` (an upper bound: zstd's compress bound
    /// of the chunk's raw bytes, with the chunk size the converter records).
    static func stagingBound(_ t: TensorInfo, chunkBytes: Int?) -> Int {
        guard t.encoding == .zstd else { return 0 }
        let rpc = max(1, (chunkBytes ?? ZstdChunks.defaultChunkBytes) / max(1, t.rowBytes))
        return ZSTD_compressBound(min(t.rows, rpc) * t.rowBytes)
    }

    public static func make(model: String, tensors: [TensorInfo], metadata: ModelMetadata,
                            settings: MemorySettings, budget: Int?) throws -> MemoryPlan {
        let hp = metadata.hparams, arch = metadata.architecture
        let tokenizerTensor = metadata.tokenizer.tensor
        var resident: [TensorInfo] = []
        var layerMatrices = [[TensorInfo]](repeating: [], count: hp.nLayer)
        for t in tensors where t.name != tokenizerTensor {
            if t.shape.count >= 2, let l = layerIndex(t.name, architecture: arch), l < hp.nLayer {
                layerMatrices[l].append(t)
            } else {
                resident.append(t)
            }
        }
        let layerBytes = layerMatrices.map { $0.reduce(0) { $0 + aligned($1.rawLength) } }
        let maxLayer = layerBytes.max() ?? 0
        let staging = layerMatrices.joined().map { stagingBound($0, chunkBytes: metadata.quantization.zstdChunkBytes) }.max() ?? 0
        let fixedResident = resident.reduce(0) { $0 + aligned($1.rawLength) }
        let scratch = RunState.byteCount(hp, maxBatch: settings.maxBatch, logitChunk: settings.logitChunk)
            + Compute.scratchBytes(maxCols: max(hp.dModel, hp.dFF), maxBatch: max(settings.maxBatch, 16))
        let fixed = fixedResident + settings.kvBytes + scratch
        let allResident = fixed + layerBytes.reduce(0, +)
        let streamMinimum = fixed + 2 * maxLayer + staging
        let minimum = hp.nLayer >= 3 ? min(allResident, streamMinimum) : allResident

        var plan = MemoryPlan(
            model: model, budget: budget, residentTensors: [], residentBytes: 0, residentLayers: [], streamedLayers: [],
            streamedTensors: [], bufferCount: 0, bufferBytes: 0, stagingBytes: 0, kvBytes: settings.kvBytes,
            scratchBytes: scratch, totalBytes: 0, minimumBytes: minimum, streamedStoredBytesPerPass: 0, streamedRawBytesPerPass: 0)

        var keepLayers = hp.nLayer
        if let budget, budget < allResident {
            guard budget >= minimum else {
                throw ModelError("--memory-budget \(MemoryBudget.format(budget)) is below the minimum for \(model) with these settings: "
                    + "\(mib(minimum)) MiB (resident \(mib(fixedResident)) MiB + 2 layer buffers \(mib(2 * maxLayer)) MiB + "
                    + "KV \(mib(settings.kvBytes)) MiB + scratch \(mib(scratch + staging)) MiB)")
            }
            // Two buffers, then whole layers resident while they fit.
            var room = budget - streamMinimum
            keepLayers = 0
            while keepLayers < hp.nLayer, layerBytes[keepLayers] <= room {
                room -= layerBytes[keepLayers]
                keepLayers += 1
            }
            plan.bufferCount = 2
            plan.bufferBytes = maxLayer
            plan.stagingBytes = staging
        }
        plan.residentLayers = Array(0 ..< keepLayers)
        plan.streamedLayers = Array(keepLayers ..< hp.nLayer)
        let residentLayerSet = Set(plan.residentLayers)
        for t in tensors where t.name != tokenizerTensor {
            if t.shape.count >= 2, let l = layerIndex(t.name, architecture: arch), l < hp.nLayer, !residentLayerSet.contains(l) {
                plan.streamedTensors.append(t.name)
                plan.streamedStoredBytesPerPass += t.storedLength
                plan.streamedRawBytesPerPass += t.rawLength
            } else {
                plan.residentTensors.append(t.name)
                plan.residentBytes += aligned(t.rawLength)
            }
        }
        plan.totalBytes = plan.residentBytes + plan.bufferCount * plan.bufferBytes + plan.stagingBytes + plan.kvBytes + plan.scratchBytes
        return plan
    }
}

/// The plan and what streaming did, as --json reports it.
public struct MemoryReport: Codable, Sendable {
    public var budgetBytes: Int?
    public var plannedBytes: Int
    /// Everything the plan keeps in memory (= plannedBytes: tensors, buffers, KV, scratch).
    public var plannedResidentBytes: Int
    public var residentTensorBytes: Int
    public var bufferCount: Int
    public var bufferBytes: Int
    public var kvBytes: Int
    public var scratchBytes: Int
    public var minimumBudgetBytes: Int
    public var streamedLayers: Int
    /// Bytes read from the file into the layer buffers per decoded token (stored: compressed for zstd).
    public var streamedBytesPerToken: Double
    /// The same, decoded (what the buffers receive).
    public var streamedRawBytesPerToken: Double

    enum CodingKeys: String, CodingKey {
        case budgetBytes = "budget_bytes", plannedBytes = "planned_bytes", plannedResidentBytes = "planned_resident_bytes"
        case residentTensorBytes = "resident_tensor_bytes", bufferCount = "buffer_count", bufferBytes = "buffer_bytes"
        case kvBytes = "kv_bytes", scratchBytes = "scratch_bytes", minimumBudgetBytes = "minimum_budget_bytes"
        case streamedLayers = "streamed_layers", streamedBytesPerToken = "streamed_bytes_per_token"
        case streamedRawBytesPerToken = "streamed_raw_bytes_per_token"
    }

    public init(plan: MemoryPlan, streamedBytesPerToken: Double, streamedRawBytesPerToken: Double) {
        budgetBytes = plan.budget
        plannedBytes = plan.totalBytes
        plannedResidentBytes = plan.totalBytes
        residentTensorBytes = plan.residentBytes
        bufferCount = plan.bufferCount
        bufferBytes = plan.bufferBytes
        kvBytes = plan.kvBytes
        scratchBytes = plan.scratchBytes + plan.stagingBytes
        minimumBudgetBytes = plan.minimumBytes
        streamedLayers = plan.streamedLayers.count
        self.streamedBytesPerToken = streamedBytesPerToken
        self.streamedRawBytesPerToken = streamedRawBytesPerToken
    }
}
