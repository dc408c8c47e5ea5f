import CKernels
import Foundation

/// A contiguous run of cached rows: `count` positions firstPos, firstPos + posStep, ...,
/// whose key (value) rows start at `k` (`v`) and are `KVCache.rowBytes` apart.
package struct KVRun {
    package var k: UnsafeRawPointer
    package var v: UnsafeRawPointer
    package var count: Int
    package var firstPos: Int
    package var posStep: Int

    package init(k: UnsafeRawPointer, v: UnsafeRawPointer, count: Int, firstPos: Int, posStep: Int) {
        self.k = k; self.v = v; self.count = count; self.firstPos = firstPos; self.posStep = posStep
    }
}

/// Keys and values of past positions, per layer. Allocated once, at construction.
package protocol KVCache: AnyObject {
    /// The most positions the cache accepts (Int.max: unbounded, every layer is a ring).
    var capacity: Int { get }
    /// The most keys one query can see (the size of the scores scratch).
    var maxVisible: Int { get }
    /// Bytes allocated for keys and values.
    var bytes: Int { get }
    var kvType: KVType { get }
    /// Bytes of one position's row (nKVHead head vectors in `kvType`).
    var rowBytes: Int { get }
    /// Stores the key and value (kvDim floats each) of absolute position `pos` in `layer`.
    /// Positions must be stored in increasing order from 0 (a restart at 0 begins a new sequence),
    /// or from the length a `truncate` left.
    func store(layer: Int, pos: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>)
    /// One past the last position stored (in layer 0) since the sequence began or was truncated.
    var length: Int { get }
    /// The most trailing positions `truncate` can discard exactly (Int.max: any number).
    var rollbackLimit: Int { get }
    /// Forgets positions `length ..< self.length` (rejected speculative tokens): the next store
    /// is at `length`, and every query from there on sees exactly what it would have seen had
    /// those positions never been stored. Throws when more than `rollbackLimit` positions would go.
    func truncate(to length: Int) throws
    /// The most runs `visibleRuns` writes.
    var maxRuns: Int { get }
    /// Writes the runs (at most `maxRuns`) of cached keys a query at `pos` sees, in position
    /// order, into `runs`; returns how many.
    func visibleRuns(layer: Int, pos: Int, into runs: UnsafeMutablePointer<KVRun>) -> Int
    /// True when every position 0 ... pos of `layer` has its own slot (storing pos overwrites
    /// nothing), so a batch of positions ending at pos can be stored before any of its queries
    /// attends; true also promises that `visibleRuns` only reads the cache (threads may call it
    /// at once).
    func keepsEveryPosition(layer: Int, through pos: Int) -> Bool
}

package extension KVCache {
    /// Unless a cache says otherwise: store and attend token by token.
    func keepsEveryPosition(layer: Int, through pos: Int) -> Bool { false }
}


/// One layer's storage: slots [0, S) hold sink positions 0..<S; dense layers put position j in
/// slot j; banded and strided layers keep a ring of R = W + U slots for positions ≥ S (position j
/// in slot S + (j - S) % R) and strided layers also keep every K-th position j ≥ S in its own slot
/// (after the ring, in position order). Slots are a function of the position, so nothing else
/// is tracked: positions arrive in order and a query sees only positions already written.
///
/// The U undo slots make rollback exact. Storing position j overwrites position j - R. After
/// positions n ..< m are stored and then discarded, positions n - R ..< m - R are lost; a query
/// at q ≥ n sees window positions > q - W ≥ n - W, so none of them is needed while
/// m - 1 - R < n - W + 1, i.e. m - n ≤ U + 1. (Dense and every-K-th slots belong to one position
/// each: a later store of the same position rewrites them.)
struct LayerKV {
    let pattern: AttentionPattern
    let sinks: Int      // S for windowed layers, 0 for dense
    let window: Int     // visible window W (windowed layers)
    let ring: Int       // ring slots R = W + U
    let stride: Int     // K (strided layers)
    let firstStride: Int // index (j / K) of the first multiple of K ≥ S
    let slots: Int
    let k: UnsafeMutableRawPointer
    let v: UnsafeMutableRawPointer
    let rowBytes: Int

    func slot(_ j: Int) -> Int {
        switch pattern {
        case .dense: return j
        case .banded, .strided: return j < sinks ? j : sinks + (j - sinks) % ring
        }
    }
}

/// The cache for a per-layer attention pattern, sized by `KVBudget` and allocated once.
package final class PatternKVCache: KVCache {
    package let capacity: Int
    package let maxVisible: Int
    /// Sinks, every-K-th, and a window split at most once by the ring's end.
    package var maxRuns: Int { 4 }
    package let bytes: Int
    package let kvType: KVType
    package let rowBytes: Int
    package let patterns: [AttentionPattern]
    package let sinks: Int
    /// Extra ring slots per windowed layer (see `LayerKV`): truncate discards up to undo + 1 positions.
    package let undo: Int
    package let rollbackLimit: Int
    package private(set) var length = 0
    let nKVHead: Int
    let headDim: Int
    let layers: [LayerKV]
    private let storage: UnsafeMutableRawPointer

    /// - Parameters:
    ///   - positions: the most positions dense and strided layers must hold (their
    ///     allocation grows with it); an all-banded cache ignores it and is unbounded.
    ///   - rollback: the most trailing positions `truncate` must discard exactly (speculative
    ///     decoding with k drafts needs k); windowed layers get rollback - 1 extra ring slots.
    package init(patterns: [AttentionPattern], sinks: Int, kvType: KVType, nKVHead: Int, headDim: Int, positions: Int,
                 rollback: Int = 1) {
        self.patterns = patterns
        self.sinks = sinks
        let undo = max(0, rollback - 1)
        self.undo = undo
        let windowed = patterns.contains { $0.window != nil }
        rollbackLimit = windowed ? undo + 1 : Int.max
        self.kvType = kvType
        self.nKVHead = nKVHead
        self.headDim = headDim
        rowBytes = nKVHead * kvType.headBytes(headDim)
        let bounded = patterns.allSatisfy { if case .banded = $0 { return true }; return false }
        capacity = bounded ? Int.max : positions
        let slotCounts = patterns.map { p -> Int in
            switch p {
            case .dense: return positions
            case .banded(let w): return sinks + w + undo
            // The ring is always W + U slots here: the every-K-th slots follow it.
            case .strided(let w, let k): return sinks + w + undo + KVBudget.strideSlots(stride: k, sinks: sinks, tokens: positions)
            }
        }
        let total = slotCounts.reduce(0, +) * 2 * rowBytes
        bytes = total
        // Not zero-filled: attention reads only slots a store has written (visibleRuns), and
        // untouched pages cost neither time at load nor resident memory.
        storage = .allocate(byteCount: max(total, 1), alignment: 64)
        var off = 0
        var ls: [LayerKV] = []
        for (p, n) in zip(patterns, slotCounts) {
            let s = p.window == nil ? 0 : sinks
            var w = 0, kk = 1
            switch p {
            case .dense: break
            case .banded(let ww): w = ww
            case .strided(let ww, let k): w = ww; kk = k
            }
            ls.append(LayerKV(pattern: p, sinks: s, window: w, ring: w == 0 ? 0 : w + undo, stride: kk, firstStride: (s + kk - 1) / kk, slots: n,
                              k: storage + off, v: storage + off + n * rowBytes, rowBytes: rowBytes))
            off += 2 * n * rowBytes
        }
        layers = ls
        maxVisible = slotCounts.max() ?? 0
    }

    deinit { storage.deallocate() }

    /// Bytes the first `positions` positions make resident: each layer's key and value slots
    /// (a ring's at most), rounded out to whole pages (the storage is not zero-filled, so
    /// untouched pages are never resident).
    package func residentBytes(positions: Int) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        return layers.reduce(0) { t, l in t + 2 * ((min(max(0, positions), l.slots) * rowBytes + page - 1) / page + 1) * page }
    }

    /// Gives the storage's whole pages back to the kernel (a server slot whose request ended):
    /// they read as zeros if touched again, and attention reads only positions stored since.
    package func releasePages() {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (Int(bitPattern: storage) + page - 1) / page * page, hi = (Int(bitPattern: storage) + bytes) / page * page
        if hi > lo { _ = madvise(UnsafeMutableRawPointer(bitPattern: lo), hi - lo, Int32(MADV_DONTNEED)) }
        length = 0
    }

    package func truncate(to n: Int) throws {
        guard n >= 0, n <= length else {
            throw ModelError("cannot truncate the KV cache to \(n) positions: it holds \(length)")
        }
        guard length - n <= rollbackLimit else {
            throw ModelError("cannot roll the KV cache back \(length - n) positions: its rings keep \(undo) undo slots (exact for \(rollbackLimit))")
        }
        length = n
    }

    package func store(layer: Int, pos: Int, k kIn: UnsafePointer<Float>, v vIn: UnsafePointer<Float>) {
        precondition(pos >= 0 && pos < capacity, "position \(pos) outside the KV cache (capacity \(capacity))")
        if layer == 0 { length = pos + 1 }
        let L = layers[layer]
        let s = L.slot(pos)
        let t = kvType.code, nh = Int64(nKVHead), hd = Int64(headDim)
        qlm_kv_store_row(t, kIn, L.k + s * rowBytes, nh, hd)
        qlm_kv_store_row(t, vIn, L.v + s * rowBytes, nh, hd)
        if case .strided = L.pattern, pos >= L.sinks, pos % L.stride == 0 {
            let ss = L.sinks + L.ring + pos / L.stride - L.firstStride
            qlm_kv_store_row(t, kIn, L.k + ss * rowBytes, nh, hd)
            qlm_kv_store_row(t, vIn, L.v + ss * rowBytes, nh, hd)
        }
    }

    package func keepsEveryPosition(layer: Int, through pos: Int) -> Bool {
        let L = layers[layer]
        switch L.pattern {
        case .dense: return pos < capacity
        case .banded, .strided: return pos < L.sinks + L.ring   // the ring has not wrapped
        }
    }

    package func visibleRuns(layer: Int, pos p: Int, into runs: UnsafeMutablePointer<KVRun>) -> Int {
        let L = layers[layer]
        var n = 0
        let rb = rowBytes
        // Appends slots [slot, slot + count) holding positions first, first + step, ...; merges
        // with the previous run when both slots and positions continue it.
        func add(slot: Int, count: Int, first: Int, step: Int) {
            guard count > 0 else { return }
            if n > 0 {
                let r = runs[n - 1]
                let lastSlotEnd = (r.k - UnsafeRawPointer(L.k)) / rb + r.count
                if r.posStep == 1, step == 1, lastSlotEnd == slot, r.firstPos + r.count == first {
                    runs[n - 1].count += count
                    return
                }
            }
            runs[n] = KVRun(k: UnsafeRawPointer(L.k + slot * rb), v: UnsafeRawPointer(L.v + slot * rb),
                            count: count, firstPos: first, posStep: step)
            n += 1
        }
        switch L.pattern {
        case .dense:
            add(slot: 0, count: p + 1, first: 0, step: 1)
        case .banded, .strided:
            let s = L.sinks, w = L.window, r = L.ring
            add(slot: 0, count: min(s, p + 1), first: 0, step: 1)
            let lo = max(s, p - w + 1)          // first window position
            if case .strided = L.pattern {
                // Every K-th position j with s ≤ j < lo (j ≥ lo is in the window already).
                let hiIdx = lo - 1 >= 0 ? (lo - 1) / L.stride : -1
                let count = hiIdx - L.firstStride + 1
                if count > 0 {
                    add(slot: s + r, count: count, first: L.firstStride * L.stride, step: L.stride)
                }
            }
            if lo <= p {
                let a = L.slot(lo), len = p - lo + 1
                let first = min(len, s + r - a)  // up to the end of the ring
                add(slot: a, count: first, first: lo, step: 1)
                add(slot: s, count: len - first, first: lo + first, step: 1)
            }
        }
        return n
    }
}
