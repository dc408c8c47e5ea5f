import Foundation

/// Open-addressing map from a byte string to a token id; keys live in the tokenizer's piece
/// data (compared by memcmp), slots hold (hash, id). Used by SentencePieceTokenizer (its mergeable
/// pieces) and HFTokenizerJSON (merge -> token id), both keyed by exact bytes: String equality would
/// merge canonically equivalent tokens.
package struct PieceTable: Sendable {
    private var hashes: [UInt32]
    private var ids: [Int32]
    private let mask: Int

    package init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size *= 2 }
        hashes = [UInt32](repeating: 0, count: size)
        ids = [Int32](repeating: -1, count: size)
        mask = size - 1
    }

    @inline(__always) package static func hash(_ p: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in p { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h ^ (h >> 29)
    }

    /// Inserts `id` for `p` (which is token `id`'s bytes); false if `p` is already present.
    package mutating func insert(_ p: UnsafeBufferPointer<UInt8>, id: Int32, data: UnsafeBufferPointer<UInt8>, offsets: [Int32]) -> Bool {
        if get(p, data: data, offsets: offsets) != nil { return false }
        let h = Self.hash(p)
        var i = Int(truncatingIfNeeded: h) & mask
        while ids[i] >= 0 { i = (i + 1) & mask }
        ids[i] = id
        hashes[i] = UInt32(truncatingIfNeeded: h >> 32)
        return true
    }

    @inline(__always) package func get(_ p: UnsafeBufferPointer<UInt8>, data: UnsafeBufferPointer<UInt8>, offsets: [Int32]) -> Int32? {
        let h = Self.hash(p)
        let tag = UInt32(truncatingIfNeeded: h >> 32)
        return ids.withUnsafeBufferPointer { ids in
            hashes.withUnsafeBufferPointer { hs in
                offsets.withUnsafeBufferPointer { o in
                    var i = Int(truncatingIfNeeded: h) & mask
                    while true {
                        let id = ids[i]
                        if id < 0 { return nil }
                        if hs[i] == tag {
                            let s = Int(o[Int(id)]), l = Int(o[Int(id) + 1]) - s
                            if l == p.count && memcmp(data.baseAddress! + s, p.baseAddress!, l) == 0 { return id }
                        }
                        i = (i + 1) & mask
                    }
                }
            }
        }
    }
}
