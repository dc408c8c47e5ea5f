import Foundation
import Quant
#if canImport(Glibc)
import Glibc
#endif

/// Streams the matrices of the plan's streamed layers, then the row chunks of a streamed
/// classifier, through a fixed set of layer buffers.
///
/// Item j (the j-th streamed layer, in order; then classifier chunk k as item
/// streamedLayers.count + k) always lives in buffer j % bufferCount,
/// at fixed offsets, so the model binds its `Matrix` values to buffer addresses once, at load,
/// and the forward pass only brackets each layer with `acquire(layer)` / `release(layer)`.
/// A background thread fills the buffers in layer order, cyclically (after the last streamed
/// layer comes the first one again, for the next forward pass): it starts on layer j + 1 while
/// layer j is being computed, and waits while the buffer it needs still holds a layer not yet
/// released. Reads use pread (TensorReader), never the memory map. The consumer may ask for
/// items out of this order (a batch that wants no logits skips the classifier; several groups
/// of logit rows read it several times): the loader then drops what it prefetched and restarts
/// at the item asked for, so results never depend on the order, only the speed does.
final class LayerStreamer {
    private struct Slot {
        enum State: Equatable { case empty, loading(Int), ready(Int), inUse(Int), done(Int) }
        var state: State = .empty
        let base: UnsafeMutableRawPointer
    }

    private struct StreamedTensor {
        let info: TensorInfo
        let chunks: TensorReader.Chunks?
        let rows: Range<Int>   // the tensor's rows this piece holds
        let offset: Int        // inside the layer buffer
        /// The file range to prefetch.
        var fileRange: Range<Int> {
            guard let chunks else {
                return info.offset + rows.lowerBound * info.rowBytes ..< info.offset + rows.upperBound * info.rowBytes
            }
            let rpc = chunks.rowsPerChunk
            let first = chunks.chunks[rows.lowerBound / rpc], last = chunks.chunks[(rows.upperBound - 1) / rpc]
            return info.offset + first.offset ..< info.offset + last.offset + last.length
        }
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
        var paused = false    // a disk probe holds the buffers (`probeDisk`)
        var directItems = 0   // items the loader read with one O_DIRECT read
        var readNanos: UInt64 = 0   // time the loader spent reading (and decompressing) items
    }

    let layers: [Int]                         // model layer index of streamed index j
    private let streamIndex: [Int: Int]       // model layer -> j
    private let tensors: [[StreamedTensor]]   // per item j
    /// Per item j: the block-aligned file range one O_DIRECT read fills its buffer from (each
    /// tensor then sits at its file offset less the range's start), or nil: tensor by tensor.
    private let directRanges: [DirectRead?]
    /// The aligned range, and how much of it must be read (to the item's last byte: the file may end before the range).
    private struct DirectRead { var range: Range<Int>; var need: Int }
    private let pointers: [String: UnsafeRawPointer]
    /// Streamed classifier chunks: rows and where they are while acquired.
    let outputChunks: [(rows: Range<Int>, pointer: UnsafeRawPointer)]
    let bufferCount: Int
    let bufferBytes: Int
    private let storedPerLayer: [Int]
    private let rawPerLayer: [Int]
    private let shared = Shared()
    private let reader: TensorReader
    private let fileBytes: Int
    private let dropReadPages: Bool
    /// Bytes of streamed layers handed to the model (counted at acquire): stored (read from
    /// the file) and raw. Only the consumer thread touches these.
    private(set) var streamedStoredBytes = 0
    private(set) var streamedRawBytes = 0

    init(file: QLMFile, plan: MemoryPlan) throws {
        bufferCount = plan.bufferCount
        bufferBytes = plan.bufferBytes
        dropReadPages = plan.dropReadPages
        precondition(bufferCount >= 2 && (!plan.streamedLayers.isEmpty || plan.outputStreams))
        layers = plan.streamedLayers
        streamIndex = Dictionary(uniqueKeysWithValues: layers.enumerated().map { ($1, $0) })
        reader = try TensorReader(path: file.path)
        fileBytes = file.map.count
        let names = try Architectures.named(file.metadata.architecture, file: file.path).tensorNames
        var perLayer = [[StreamedTensor]](repeating: [], count: layers.count + plan.outputChunks.count)
        var stored = [Int](repeating: 0, count: perLayer.count), raw = stored
        var maxChunk = 0
        // Direct reads: each raw item's tensors at their offsets inside the item's aligned file span.
        let align = MemoryPlan.directAlignment
        var spanStart: [Int: Int] = [:]   // item -> aligned start of its span
        if plan.directReads {
            var lo: [Int: Int] = [:]
            var raw: [Int: Bool] = [:]
            for name in plan.streamedTensors {
                let t = try file.info(name)
                guard let l = names.layerIndex(name), let j = streamIndex[l] else { continue }
                lo[j] = min(lo[j] ?? .max, t.offset)
                raw[j] = (raw[j] ?? true) && t.encoding == .raw
            }
            for (j, start) in lo where raw[j] == true { spanStart[j] = start / align * align }
        }
        for name in plan.streamedTensors {
            let t = try file.info(name)
            guard let l = names.layerIndex(name), let j = streamIndex[l] else { continue }
            let chunks = t.encoding == .zstd ? try reader.chunks(of: t) : nil
            maxChunk = max(maxChunk, chunks?.stagingNeed ?? 0)
            let offset = spanStart[j].map { t.offset - $0 }
                ?? perLayer[j].last.map { MemoryPlan.aligned($0.offset + $0.rows.count * $0.info.rowBytes) } ?? 0
            guard offset + t.rawLength <= bufferBytes else {
                throw ModelError("internal: layer \(l) does not fit its planned buffer of \(bufferBytes) bytes")
            }
            perLayer[j].append(StreamedTensor(info: t, chunks: chunks, rows: 0 ..< t.rows, offset: offset))
            stored[j] += t.storedLength
            raw[j] += t.rawLength
        }
        if plan.outputStreams {
            // The classifier's row chunks, each at the start of its buffer. Stored bytes per
            // chunk: its rows (raw) or its zstd frames; the first also carries the chunk index,
            // so a pass adds up to the tensor's stored length, as a streamed layer's does.
            let t = try file.info(plan.outputTensor)
            let chunks = t.encoding == .zstd ? try reader.chunks(of: t) : nil
            maxChunk = max(maxChunk, chunks?.stagingNeed ?? 0)
            var framed = 0
            for (k, rows) in plan.outputChunks.enumerated() {
                let j = layers.count + k
                let start = t.offset + rows.lowerBound * t.rowBytes
                if plan.directReads && t.encoding == .raw { spanStart[j] = start / align * align }
                let offset = spanStart[j].map { start - $0 } ?? 0
                guard offset + rows.count * t.rowBytes <= bufferBytes else {
                    throw ModelError("internal: classifier rows \(rows) do not fit the planned buffer of \(bufferBytes) bytes")
                }
                if let chunks {
                    let rpc = chunks.rowsPerChunk
                    guard rows.lowerBound % rpc == 0, rows.upperBound % rpc == 0 || rows.upperBound == t.rows else {
                        throw ModelError("internal: classifier rows \(rows) are not whole zstd chunks of \(rpc) rows")
                    }
                    stored[j] = chunks.chunks[rows.lowerBound / rpc ..< (rows.upperBound + rpc - 1) / rpc].reduce(0) { $0 + $1.length }
                } else {
                    stored[j] = rows.count * t.rowBytes
                }
                framed += stored[j]
                raw[j] = rows.count * t.rowBytes
                perLayer[j].append(StreamedTensor(info: t, chunks: chunks, rows: rows, offset: offset))
            }
            stored[layers.count] += t.storedLength - framed
        }
        reader.reserveStaging(maxChunk)
        var ranges = [DirectRead?](repeating: nil, count: perLayer.count)
        for (j, start) in spanStart {
            let end = perLayer[j].map { $0.fileRange.upperBound }.max() ?? start
            let range = start ..< (end + align - 1) / align * align
            guard range.count <= bufferBytes else {
                throw ModelError("internal: item \(j)'s file span of \(range.count) bytes does not fit the planned buffer of \(bufferBytes) bytes")
            }
            ranges[j] = DirectRead(range: range, need: end - start)
        }
        directRanges = ranges
        if !spanStart.isEmpty { reader.openDirect(pieces: try TensorReader.directPieces()) }
        tensors = perLayer
        storedPerLayer = stored
        rawPerLayer = raw
        var ptrs: [String: UnsafeRawPointer] = [:]
        var slots: [Slot] = []
        for _ in 0 ..< bufferCount {
            // Not zero-filled: pages become resident as the loader fills them.
            slots.append(Slot(base: .allocate(byteCount: max((bufferBytes + align - 1) / align * align, 64), alignment: align)))
        }
        for (j, list) in perLayer.enumerated() where j < layers.count {
            for t in list { ptrs[t.info.name] = UnsafeRawPointer(slots[j % bufferCount].base + t.offset) }
        }
        pointers = ptrs
        let nLayers = layers.count, k = bufferCount
        outputChunks = plan.outputChunks.enumerated().map { c, rows in
            (rows, UnsafeRawPointer(slots[(nLayers + c) % k].base + perLayer[nLayers + c][0].offset))
        }
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

    /// Items (layers, classifier chunks) read so far with one O_DIRECT read of their span.
    var directItemsRead: Int {
        shared.cond.lock(); defer { shared.cond.unlock() }
        return shared.directItems
    }

    /// Seconds the loader has spent reading items so far (busy, not waiting for a free buffer).
    var readSeconds: Double {
        shared.cond.lock(); defer { shared.cond.unlock() }
        return Double(shared.readNanos) * 1e-9
    }

    /// The staging buffer the loader decompresses from.
    var stagingBytes: Int { reader.stagingBytes }

    /// Starts the background loader (it begins with the first streamed layers).
    func start() {
        let s = shared
        s.cond.lock()
        guard !s.started else { s.cond.unlock(); return }
        s.started = true
        s.cond.unlock()
        let reader = self.reader, tensors = self.tensors, k = bufferCount, drop = dropReadPages, direct = directRanges
        let thread = Thread { LayerStreamer.loaderLoop(s, reader, tensors, direct, k, drop: drop) }
        thread.name = "quantlm-layer-loader"
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// The disk's speed for the loader's own reads, measured between forward passes: `bytes` of
    /// the file range the streamed items span (the bytes every pass reads), front to back and
    /// from its start again at its end, in chunks of one layer buffer, through the loader's
    /// O_DIRECT descriptor cut into the loader's pieces, into this streamer's first buffer: no
    /// memory beyond the plan's, the same bytes, read size and reads in flight as the loader,
    /// nothing computed meanwhile. The loader pauses and what it had
    /// prefetched is dropped (the next acquire reads it again). nil when items are not read with
    /// O_DIRECT. Only while nothing is acquired (between passes).
    func probeDisk(bytes: Int) throws -> (gbPerSecond: Double, chunkBytes: Int, pieces: Int)? {
        guard directRanges.contains(where: { $0 != nil }) else { return nil }
        let s = shared
        s.cond.lock()
        for slot in s.slots {
            if case .inUse(let j) = slot.state {
                s.cond.unlock()
                throw ModelError("internal: disk probe while streamed item \(j) is acquired")
            }
        }
        s.paused = true
        s.epoch += 1
        s.cond.broadcast()
        func loading() -> Bool { s.slots.contains { if case .loading = $0.state { return true } else { return false } } }
        while loading() { s.cond.wait() }
        for i in s.slots.indices { s.slots[i].state = .empty }
        let base = s.slots[0].base
        s.cond.unlock()
        defer {
            s.cond.lock()
            s.paused = false
            s.epoch += 1
            s.next = 0
            s.cond.broadcast()
            s.cond.unlock()
        }
        guard reader.direct else { return nil }
        let a = MemoryPlan.directAlignment, chunk = max(a, bufferBytes / a * a)
        // The direct items' span, whole blocks inside the file only (no buffered tail).
        let lo = directRanges.compactMap { $0?.range.lowerBound }.min()!
        let hi = min(directRanges.compactMap { $0?.range.upperBound }.max()!, fileBytes / a * a)
        guard hi > lo else { return nil }
        var done = 0, at = lo
        let t0 = monotonicNanos()
        while done < bytes {
            let n = min(chunk, hi - at)
            guard try reader.readDirect(into: base, range: at ..< at + n, atLeast: n) else { return nil }
            done += n
            at += n
            if at >= hi { at = lo }
        }
        let seconds = Double(monotonicNanos() - t0) * 1e-9
        return (Double(done) / max(seconds, 1e-9) / 1e9, chunk, reader.piecesFor(chunk))
    }

    /// Blocks until model layer `layer`'s matrices are in its buffer. No-op for resident layers.
    func acquire(layer: Int) throws {
        guard let j = streamIndex[layer] else { return }
        try acquire(item: j)
    }

    /// Blocks until classifier chunk `k` is in its buffer.
    func acquireOutput(chunk k: Int) throws { try acquire(item: layers.count + k) }
    func releaseOutput(chunk k: Int) { release(item: layers.count + k) }

    private func acquire(item j: Int) throws {
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
        release(item: j)
    }

    private func release(item j: Int) {
        let s = shared, b = j % bufferCount
        s.cond.lock()
        if s.slots[b].state == .inUse(j) { s.slots[b].state = .done(j) }
        s.cond.broadcast()
        s.cond.unlock()
    }

    private static func loaderLoop(_ s: Shared, _ reader: TensorReader, _ tensors: [[StreamedTensor]], _ direct: [DirectRead?],
                                   _ k: Int, drop: Bool) {
        let m = tensors.count
        s.cond.lock()
        while !s.stop {
            let j = s.next, b = j % k
            var slotFree = false
            switch s.slots[b].state { case .empty, .done: slotFree = true; default: break }
            guard s.failure == nil, !s.paused, slotFree else { s.cond.wait(); continue }
            s.slots[b].state = .loading(j)
            let epoch = s.epoch, base = s.slots[b].base
            s.cond.unlock()
            // Buffered reads: let the kernel read the following item into the page cache meanwhile
            // (a direct read would not use those pages).
            let after = tensors[(j + 1) % m]
            if direct[(j + 1) % m] == nil || !reader.direct, let first = after.first?.fileRange, let last = after.last?.fileRange {
                reader.willNeed(offset: first.lowerBound, count: last.upperBound - first.lowerBound)
            }
            var failure: Error?
            var read = false
            let t0 = monotonicNanos()
            do {
                // One O_DIRECT read of the item's span (the disk DMAs into the buffer; nothing passes
                // through the page cache); where the file system refuses it, tensor by tensor.
                if let d = direct[j] { read = try reader.readDirect(into: base, range: d.range, atLeast: d.need) }
                if !read {
                    for t in tensors[j] {
                        try reader.read(t.info, chunks: t.chunks, rows: t.rows, into: base + t.offset)
                        if drop { reader.dontNeed(offset: t.fileRange.lowerBound, count: t.fileRange.count) }
                    }
                }
            } catch {
                failure = error
            }
            let t1 = monotonicNanos()
            s.cond.lock()
            s.readNanos += t1 - t0
            if epoch != s.epoch {
                s.slots[b].state = .empty          // the consumer restarted elsewhere meanwhile
            } else if let failure {
                s.slots[b].state = .empty
                s.failure = failure
            } else {
                s.slots[b].state = .ready(j)
                s.next = (j + 1) % m
                if read { s.directItems += 1 }
            }
            s.cond.broadcast()
        }
        s.exited = true
        s.cond.broadcast()
        s.cond.unlock()
    }
}

/// CLOCK_MONOTONIC in nanoseconds (wall time, whatever thread asks).
@inline(__always) func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
