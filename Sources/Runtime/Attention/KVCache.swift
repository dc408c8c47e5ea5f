import CKernels
import Foundation

/// Keys and values of past positions, per layer. Allocated once, at construction.
public protocol KVCache: AnyObject {
    /// How many positions a layer can hold.
    var capacity: Int { get }
    /// Bytes allocated for keys and values.
    var bytes: Int { get }
    /// Forget everything (a new sequence starts at position 0).
    func reset()
    /// Stores the key and value (kvDim floats each) of absolute position `pos` in `layer`.
    func store(layer: Int, pos: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>)
    /// Pointers to the key and value rows (kvDim floats each) of absolute position `pos`.
    func key(layer: Int, pos: Int) -> UnsafePointer<Float>
    func value(layer: Int, pos: Int) -> UnsafePointer<Float>
    /// The cached keys a query at `pos` sees, as contiguous runs of rows `kvDim` floats apart,
    /// in position order: (first key row, first value row, count).
    func visibleRuns(layer: Int, pos: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Float>, Int) -> Void)
}

/// Every position of every layer, f32: [layer][position][kvDim].
public final class DenseKVCache: KVCache {
    public let capacity: Int
    let nLayer: Int
    let kvDim: Int
    private let k: UnsafeMutablePointer<Float>
    private let v: UnsafeMutablePointer<Float>

    public init(nLayer: Int, kvDim: Int, capacity: Int) {
        self.nLayer = nLayer
        self.kvDim = kvDim
        self.capacity = capacity
        let n = nLayer * capacity * kvDim
        k = .allocate(capacity: n)
        v = .allocate(capacity: n)
        k.initialize(repeating: 0, count: n)
        v.initialize(repeating: 0, count: n)
    }

    deinit {
        k.deallocate()
        v.deallocate()
    }

    public var bytes: Int { 2 * nLayer * capacity * kvDim * MemoryLayout<Float>.size }

    public func reset() {}

    @inline(__always) private func offset(_ layer: Int, _ pos: Int) -> Int { (layer * capacity + pos) * kvDim }

    public func store(layer: Int, pos: Int, k kIn: UnsafePointer<Float>, v vIn: UnsafePointer<Float>) {
        precondition(pos >= 0 && pos < capacity, "position \(pos) outside the KV cache (capacity \(capacity))")
        (k + offset(layer, pos)).update(from: kIn, count: kvDim)
        (v + offset(layer, pos)).update(from: vIn, count: kvDim)
    }

    public func key(layer: Int, pos: Int) -> UnsafePointer<Float> { UnsafePointer(k + offset(layer, pos)) }
    public func value(layer: Int, pos: Int) -> UnsafePointer<Float> { UnsafePointer(v + offset(layer, pos)) }

    @inline(__always)
    public func visibleRuns(layer: Int, pos: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Float>, Int) -> Void) {
        body(UnsafePointer(k + offset(layer, 0)), UnsafePointer(v + offset(layer, 0)), pos + 1)
    }
}
