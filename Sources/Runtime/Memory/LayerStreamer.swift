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
/// Background loader threads fill the buffers in layer order, cyclically (after the last streamed
/// layer comes the first one again, for the next forward pass): they start on layer j + 1 while
/// layer j is being computed, and wait while the buffer they need still holds a layer not yet
/// released. Reads use pread (TensorReader), never the memory map. With O_DIRECT reads an item's
/// span is cut into block-aligned pieces (none under `TensorReader.defaultMinPieceBytes`) and
/// the loader threads (QUANTLM_STREAM_PIECES of them) take the pieces in order, one each, across
/// item boundaries: the next item's first piece is issued as soon as its buffer is released,
/// while the current item's last piece is still being read, so the disk always has a read
/// queued, whatever the compute threads delay a loader thread's wake-up by. The consumer may ask for
/// items out of this order (a batch that wants no logits skips the classifier; several groups
/// of logit rows read it several times): the loader then drops what it prefetched and restarts
/// at the item asked for, so results never depend on the order, only the speed does.
final class LayerStreamer {
    private struct Slot {
        enum State: Equatable { case empty, loading(Int), ready(Int), inUse(Int), done(Int) }
        var state: State = .empty
        let base: UnsafeMutableRawPointer
        /// Pieces of the loading item not yet read (this epoch's claim).
        var piecesLeft = 0
        /// Pieces being read into this buffer, of any epoch: it is not refilled before they land.
        var inFlight = 0
        /// Every piece of the loading item was read with O_DIRECT.
        var allDirect = true
        var free: Bool { inFlight == 0 && (state == .empty || { if case .done = state { return true } else { return false } }()) }
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
        var nextPiece = 0     // its next piece to read (0: the item is not claimed yet)
        var epoch = 0         // bumped when the consumer leaves the expected order
        var stop = false
        var exited = 0        // loader threads that have stopped
        var failure: Error?
        var started = false
        var directItems = 0   // items the loader read with O_DIRECT
        var readNanos: UInt64 = 0   // time with at least one read in flight (and decompressing)
        var reading = 0       // pieces being read now, by every loader thread
        var busySince: UInt64 = 0
        var counting = true   // acquires count streamed bytes (not the disk probe's)
        var paused = false    // the disk probe waits for the reads in flight before it starts
        var directOK = true   // the file system takes O_DIRECT reads (cleared on the first refusal)

        /// The clear of every prefetched item when the consumer restarts at item `j`.
        func restart(at j: Int) {
            epoch += 1
            next = j
            nextPiece = 0
            for i in slots.indices {
                switch slots[i].state {
                case .ready, .loading: slots[i].state = .empty   // in-flight pieces still hold the buffer (`inFlight`)
                default: break
                }
            }
            cond.broadcast()
        }
    }

    let layers: [Int]                         // model layer index of streamed index j
    private let streamIndex: [Int: Int]       // model layer -> j
    private let tensors: [[StreamedTensor]]   // per item j
    /// Per item j: the block-aligned file range one O_DIRECT read fills its buffer from (each
    /// tensor then sits at its file offset less the range's start), or nil: tensor by tensor.
    private let directRanges: [DirectRead?]
    /// The aligned range, how much of it must be read (to the item's last byte: the file may end
    /// before the range), and the block-aligned pieces it is cut into (offsets from its start).
    private struct DirectRead {
        var range: Range<Int>; var need: Int; var pieces: [Range<Int>]
        /// Bytes of piece `p` that must exist (the file may end inside the last one).
        func needOf(_ p: Int) -> Int { max(0, min(pieces[p].count, need - pieces[p].lowerBound)) }
    }
    /// Loader threads: the reads in flight (1 unless items are read with O_DIRECT).
    let loaderThreads: Int
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
        let inFlight = try TensorReader.directPieces(), minPiece = try TensorReader.minPieceBytes()
        var ranges = [DirectRead?](repeating: nil, count: perLayer.count)
        for (j, start) in spanStart {
            let end = perLayer[j].map { $0.fileRange.upperBound }.max() ?? start
            let range = start ..< (end + align - 1) / align * align
            guard range.count <= bufferBytes else {
                throw ModelError("internal: item \(j)'s file span of \(range.count) bytes does not fit the planned buffer of \(bufferBytes) bytes")
            }
            ranges[j] = DirectRead(range: range, need: end - start, pieces: TensorReader.cut(range.count, pieces: inFlight, minPieceBytes: minPiece))
        }
        directRanges = ranges
        // The loader threads read the pieces themselves (one pread each): no split inside the reader.
        if !spanStart.isEmpty { reader.openDirect(pieces: 1) }
        loaderThreads = spanStart.isEmpty ? 1 : inFlight
        tensors = perLayer
        storedPerLayer = stored
        rawPerLayer = raw
        var ptrs: [String: UnsafeRawPointer] = [:]
        var slots: [Slot] = []
        for _ in 0 ..< bufferCount {
            // Not zero-filled: pages become resident as the loader fills them (huge pages for
            // buffers the plan rounded to whole ones, `MemoryPlan.hugeRounded`).
            slots.append(Slot(base: MemoryPlan.allocateReadBuffer(bufferBytes)))
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
        while s.started && s.exited < loaderThreads { s.cond.wait() }
        s.cond.unlock()
        for slot in s.slots { slot.base.deallocate() }
    }

    /// Where a streamed tensor's bytes are while its layer is acquired.
    func pointer(for name: String) -> UnsafeRawPointer? { pointers[name] }

    /// Items (layers, classifier chunks) read so far with O_DIRECT reads of their span.
    var directItemsRead: Int {
        shared.cond.lock(); defer { shared.cond.unlock() }
        return shared.directItems
    }

    /// Seconds the loader has spent with at least one read in flight so far (not waiting for a free buffer).
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
        for t in 0 ..< loaderThreads {
            let thread = Thread { LayerStreamer.loaderLoop(s, reader, tensors, direct, k, drop: drop, thread: t) }
            thread.name = t == 0 ? "quantlm-layer-loader" : "quantlm-layer-loader-\(t)"
            thread.stackSize = t == 0 ? 1 << 20 : 1 << 18
            thread.start()
        }
    }

    /// The disk's speed for the loader's own reads, measured between forward passes: the
    /// streamed items in order from the first, around again until `bytes` are read, each
    /// acquired and released at once, so the loader reads them exactly as in a pass (its
    /// buffers, pieces and threads in flight, item boundaries included) with nothing computed
    /// meanwhile; no memory beyond the plan's. What it had prefetched is dropped (the next
    /// acquire reads it again); the bytes are not counted as streamed. GB/s of the items' file
    /// spans read (the direct ranges; a tensor-by-tensor item its stored bytes), the largest item
    /// read, the reads in flight. nil when no item is read with O_DIRECT. Only while nothing is
    /// acquired (between passes).
    func probeDisk(bytes: Int) throws -> (gbPerSecond: Double, chunkBytes: Int, pieces: Int)? {
        guard directRanges.contains(where: { $0 != nil }), reader.direct else { return nil }
        let itemBytes = directRanges.indices.map { directRanges[$0]?.range.count ?? storedPerLayer[$0] }
        start()
        let s = shared
        s.cond.lock()
        for slot in s.slots {
            if case .inUse(let j) = slot.state {
                s.cond.unlock()
                throw ModelError("internal: disk probe while streamed item \(j) is acquired")
            }
        }
        // Start from the first item with nothing prefetched and nothing in flight.
        s.paused = true
        s.restart(at: 0)
        while s.slots.contains(where: { $0.inFlight > 0 }) { s.cond.wait() }
        s.counting = false
        s.paused = false
        let t0 = monotonicNanos()   // the loader threads start on the probe's first item now
        s.cond.broadcast()
        s.cond.unlock()
        defer {
            s.cond.lock()
            s.counting = true
            s.restart(at: 0)
            s.cond.unlock()
        }
        var done = 0, j = 0
        while done < bytes {
            try acquire(item: j)
            release(item: j)
            done += itemBytes[j]
            j = (j + 1) % itemBytes.count
        }
        let seconds = Double(monotonicNanos() - t0) * 1e-9
        s.cond.lock()
        let directOK = s.directOK
        s.cond.unlock()
        guard directOK else { return nil }   // the file system refused O_DIRECT meanwhile
        return (Double(done) / max(seconds, 1e-9) / 1e9, directRanges.compactMap { $0?.range.count }.max()!, loaderThreads)
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
                s.restart(at: j)
                throw e
            }
            switch s.slots[b].state {
            case .ready(j):
                s.slots[b].state = .inUse(j)
                if s.counting {
                    streamedStoredBytes += storedPerLayer[j]
                    streamedRawBytes += rawPerLayer[j]
                }
                return
            case .loading(j):
                s.cond.wait()
            default:
                var slotFree = false
                switch s.slots[b].state { case .empty, .done: slotFree = true; default: break }
                if s.next != j || s.nextPiece != 0 || !slotFree {
                    // Out of the expected order (a pass was abandoned): drop prefetched layers, restart at j.
                    s.restart(at: j)
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

    /// One loader thread. Each takes the next piece in order (item `s.next`, piece
    /// `s.nextPiece`) as soon as that item's buffer is free (its first piece) or already
    /// claimed for it (the others), reads it, and the thread landing an item's last piece marks it
    /// ready. An item read tensor by tensor (zstd, no O_DIRECT) is one piece, read by thread 0
    /// only (the reader's staging buffer and zstd context are its own).
    private static func loaderLoop(_ s: Shared, _ reader: TensorReader, _ tensors: [[StreamedTensor]], _ direct: [DirectRead?],
                                   _ k: Int, drop: Bool, thread: Int) {
        let m = tensors.count
        s.cond.lock()
        while !s.stop {
            let j = s.next, b = j % k, p = s.nextPiece
            // An item claimed as O_DIRECT stays cut into its pieces (read buffered after a refusal).
            let d = p > 0 || s.directOK ? direct[j] : nil
            let pieces = d?.pieces.count ?? 1
            guard s.failure == nil, !s.paused, d != nil || thread == 0, p > 0 || s.slots[b].free else { s.cond.wait(); continue }
            if p == 0 {
                s.slots[b].state = .loading(j)
                s.slots[b].piecesLeft = pieces
                s.slots[b].allDirect = true
            }
            s.nextPiece = p + 1
            if s.nextPiece == pieces { s.nextPiece = 0; s.next = (j + 1) % m }
            s.slots[b].inFlight += 1
            if s.reading == 0 { s.busySince = monotonicNanos() }
            s.reading += 1
            let epoch = s.epoch, base = s.slots[b].base
            s.cond.unlock()
            // Buffered reads: let the kernel read the following item into the page cache meanwhile
            // (a direct read would not use those pages).
            let after = tensors[(j + 1) % m]
            if p == 0, direct[(j + 1) % m] == nil || d == nil, let first = after.first?.fileRange, let last = after.last?.fileRange {
                reader.willNeed(offset: first.lowerBound, count: last.upperBound - first.lowerBound)
            }
            var failure: Error?
            var read = false
            do {
                if let d {
                    // One O_DIRECT read of the piece (the disk DMAs into the buffer; nothing passes
                    // through the page cache); where the file system refuses it, the same bytes buffered.
                    let piece = d.pieces[p], need = d.needOf(p)
                    read = try reader.readDirectPiece(into: base + piece.lowerBound, range: piece.shifted(d.range.lowerBound), atLeast: need)
                    if !read {
                        if need > 0 { try reader.readFully(base + piece.lowerBound, count: need, offset: d.range.lowerBound + piece.lowerBound) }
                        if drop { reader.dontNeed(offset: d.range.lowerBound + piece.lowerBound, count: need) }
                    }
                } else {
                    for t in tensors[j] {
                        try reader.read(t.info, chunks: t.chunks, rows: t.rows, into: base + t.offset)
                        if drop { reader.dontNeed(offset: t.fileRange.lowerBound, count: t.fileRange.count) }
                    }
                }
            } catch {
                failure = error
            }
            s.cond.lock()
            s.reading -= 1
            if s.reading == 0 { s.readNanos += monotonicNanos() - s.busySince }
            s.slots[b].inFlight -= 1
            if d != nil && !read && failure == nil { s.directOK = false }   // refused: tensor by tensor from now on
            if epoch != s.epoch || s.slots[b].state != .loading(j) {
                // The consumer restarted elsewhere meanwhile (`restart` emptied the slot), or
                // another piece of this item failed.
            } else if let failure {
                s.slots[b].state = .empty
                s.failure = failure
            } else {
                s.slots[b].allDirect = s.slots[b].allDirect && read
                s.slots[b].piecesLeft -= 1
                if s.slots[b].piecesLeft == 0 {
                    s.slots[b].state = .ready(j)
                    if s.slots[b].allDirect { s.directItems += 1 }
                }
            }
            s.cond.broadcast()
        }
        s.exited += 1
        s.cond.broadcast()
        s.cond.unlock()
    }
}

private extension Range where Bound == Int {
    func shifted(_ by: Int) -> Range<Int> { lowerBound + by ..< upperBound + by }
}

/// CLOCK_MONOTONIC in nanoseconds (wall time, whatever thread asks).
@inline(__always) func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
