import Foundation
import Quant

/// Streams the matrices of the plan's streamed layers through a fixed set of layer buffers.
///
/// Streamed layer j (the j-th streamed layer, in order) always lives in buffer j % bufferCount,
/// at fixed offsets, so the model binds its `Matrix` values to buffer addresses once, at load,
/// and the forward pass only brackets each layer with `acquire(layer)` / `release(layer)`.
/// A background thread fills the buffers in layer order, cyclically (after the last streamed
/// layer comes the first one again, for the next forward pass): it starts on layer j + 1 while
/// layer j is being computed, and waits while the buffer it needs still holds a layer not yet
/// released. Reads use pread (TensorReader), never the memory map.
final class LayerStreamer {
    private struct Slot {
        enum State: Equatable { case empty, loading(Int), ready(Int), inUse(Int), done(Int) }
        var state: State = .empty
        let base: UnsafeMutableRawPointer
    }

    private struct StreamedTensor {
        let info: TensorInfo
        let chunks: TensorReader.Chunks?
        let offset: Int   // inside the layer buffer
    }

    /// Everything the loader thread and the consumer share, behind `cond`.
    private final class Shared: @unchecked Sendable {
        let cond = NSCondition()
        var slots: [Slot] = []
        var next = 0          // the streamed index the loader fills next
        var epoch = 0         // bumped when the consumer leaves the expected order
        var stop = false
        var exited = false
        var failure: Error?
        var started = false
    }

    let layers: [Int]                         // model layer index of streamed index j
    private let streamIndex: [Int: Int]       // model layer -> j
    private let tensors: [[StreamedTensor]]   // per j
    private let pointers: [String: UnsafeRawPointer]
    let bufferCount: Int
    let bufferBytes: Int
    private let storedPerLayer: [Int]
    private let rawPerLayer: [Int]
    private let shared = Shared()
    private let reader: TensorReader
    /// Bytes of streamed layers handed to the model (counted at acquire): stored (read from
    /// the file) and raw. Only the consumer thread touches these.
    private(set) var streamedStoredBytes = 0
    private(set) var streamedRawBytes = 0

    init(file: QLMFile, plan: MemoryPlan) throws {
        bufferCount = plan.bufferCount
        bufferBytes = plan.bufferBytes
        precondition(bufferCount >= 2 && !plan.streamedLayers.isEmpty)
        layers = plan.streamedLayers
        streamIndex = Dictionary(uniqueKeysWithValues: layers.enumerated().map { ($1, $0) })
        reader = try TensorReader(path: file.path)
        let arch = file.metadata.architecture
        var perLayer = [[StreamedTensor]](repeating: [], count: layers.count)
        var maxChunk = 0
        for name in plan.streamedTensors {
            let t = try file.info(name)
            guard let l = MemoryPlan.layerIndex(name, architecture: arch), let j = streamIndex[l] else { continue }
            let chunks = t.encoding == .zstd ? try reader.chunks(of: t) : nil
            maxChunk = max(maxChunk, chunks?.chunks.map(\.length).max() ?? 0)
            let offset = perLayer[j].last.map { MemoryPlan.aligned($0.offset + $0.info.rawLength) } ?? 0
            guard offset + t.rawLength <= bufferBytes else {
                throw ModelError("internal: layer \(l) does not fit its planned buffer of \(bufferBytes) bytes")
            }
            perLayer[j].append(StreamedTensor(info: t, chunks: chunks, offset: offset))
        }
        reader.reserveStaging(maxChunk)
        tensors = perLayer
        storedPerLayer = perLayer.map { $0.reduce(0) { $0 + $1.info.storedLength } }
        rawPerLayer = perLayer.map { $0.reduce(0) { $0 + $1.info.rawLength } }
        var ptrs: [String: UnsafeRawPointer] = [:]
        var slots: [Slot] = []
        for _ in 0 ..< bufferCount {
            // Not zero-filled: pages become resident as the loader fills them.
            slots.append(Slot(base: .allocate(byteCount: max(bufferBytes, 64), alignment: 64)))
        }
        for (j, list) in perLayer.enumerated() {
            for t in list { ptrs[t.info.name] = UnsafeRawPointer(slots[j % bufferCount].base + t.offset) }
        }
        pointers = ptrs
        shared.slots = slots
    }

    deinit {
        let s = shared
        s.cond.lock()
        s.stop = true
        s.cond.broadcast()
        while s.started && !s.exited { s.cond.wait() }
        s.cond.unlock()
        for slot in s.slots { slot.base.deallocate() }
    }

    /// Where a streamed tensor's bytes are while its layer is acquired.
    func pointer(for name: String) -> UnsafeRawPointer? { pointers[name] }

    /// The staging buffer the loader decompresses from.
    var stagingBytes: Int { reader.stagingBytes }

    /// Starts the background loader (it begins with the first streamed layers).
    func start() {
        let s = shared
        s.cond.lock()
        guard !s.started else { s.cond.unlock(); return }
        s.started = true
        s.cond.unlock()
        let reader = self.reader, tensors = self.tensors, k = bufferCount
        let thread = Thread { LayerStreamer.loaderLoop(s, reader, tensors, k) }
        thread.name = "quantlm-layer-loader"
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Blocks until model layer `layer`'s matrices are in its buffer. No-op for resident layers.
    func acquire(layer: Int) throws {
        guard let j = streamIndex[layer] else { return }
        start()
        let s = shared, b = j % bufferCount
        s.cond.lock()
        defer { s.cond.unlock() }
        while true {
            if let e = s.failure {
                // Report once; the next acquire starts over from the layer it asks for.
                s.failure = nil
                s.epoch += 1
                s.next = j
                for i in s.slots.indices { if case .ready = s.slots[i].state { s.slots[i].state = .empty } }
                s.cond.broadcast()
                throw e
            }
            switch s.slots[b].state {
            case .ready(j):
                s.slots[b].state = .inUse(j)
                streamedStoredBytes += storedPerLayer[j]
                streamedRawBytes += rawPerLayer[j]
                return
            case .loading(j):
                s.cond.wait()
            default:
                var slotFree = false
                switch s.slots[b].state { case .empty, .done: slotFree = true; default: break }
                if s.next != j || !slotFree {
                    // Out of the expected order (a pass was abandoned): drop prefetched layers, restart at j.
                    s.epoch += 1
                    s.next = j
                    for i in s.slots.indices { if case .ready = s.slots[i].state { s.slots[i].state = .empty } }
                    s.cond.broadcast()
                }
                s.cond.wait()
            }
        }
    }

    /// The model is done with `layer`; its buffer may be refilled.
    func release(layer: Int) {
        guard let j = streamIndex[layer] else { return }
        let s = shared, b = j % bufferCount
        s.cond.lock()
        if s.slots[b].state == .inUse(j) { s.slots[b].state = .done(j) }
        s.cond.broadcast()
        s.cond.unlock()
    }

    private static func loaderLoop(_ s: Shared, _ reader: TensorReader, _ tensors: [[StreamedTensor]], _ k: Int) {
        let m = tensors.count
        s.cond.lock()
        while !s.stop {
            let j = s.next, b = j % k
            var slotFree = false
            switch s.slots[b].state { case .empty, .done: slotFree = true; default: break }
            guard s.failure == nil, slotFree else { s.cond.wait(); continue }
            s.slots[b].state = .loading(j)
            let epoch = s.epoch, base = s.slots[b].base
            s.cond.unlock()
            // Let the kernel read the following layer into the page cache meanwhile.
            let after = tensors[(j + 1) % m]
            if let first = after.first, let last = after.last {
                reader.willNeed(offset: first.info.offset, count: last.info.offset + last.info.storedLength - first.info.offset)
            }
            var failure: Error?
            do {
                for t in tensors[j] { try reader.read(t.info, chunks: t.chunks, into: base + t.offset) }
            } catch {
                failure = error
            }
            s.cond.lock()
            if epoch != s.epoch {
                s.slots[b].state = .empty          // the consumer restarted elsewhere meanwhile
            } else if let failure {
                s.slots[b].state = .empty
                s.failure = failure
            } else {
                s.slots[b].state = .ready(j)
                s.next = (j + 1) % m
            }
            s.cond.broadcast()
        }
        s.exited = true
        s.cond.broadcast()
        s.cond.unlock()
    }
}
