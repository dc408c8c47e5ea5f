import Foundation

/// The server's admission by KV bytes under a memory budget. Every slot's KV cache is allocated
/// for its whole context but not filled: pages become resident only as positions are stored, so
/// what a request costs is the pages `prompt + max_tokens` positions touch (`need`), and a slot
/// gives them back when its request ends (`PatternKVCache.releasePages`). The plan counts one
/// pool for all slots (`poolBytes`); a request is admitted when the pool holds its need beside
/// the other slots' holdings, waits (oldest first) while it does not, and the server answers
/// 429 when neither a slot the pool can take nor room in the queue is left.
package struct KVAdmission: Sendable {
    /// The pool (nil: no budget, every slot may fill its whole context).
    package let poolBytes: Int?
    /// Bytes one slot's cache makes resident for a number of positions (pages rounded up).
    private let bytesFor: @Sendable (Int) -> Int
    /// What each slot holds now (its admitted request's need; 0 when free).
    package private(set) var held: [Int]

    package init(poolBytes: Int?, slots: Int, bytesFor: @escaping @Sendable (Int) -> Int) {
        self.poolBytes = poolBytes
        self.bytesFor = bytesFor
        held = [Int](repeating: 0, count: slots)
    }

    /// The pool the plan counts for `parallel` slots of `fullSlotBytes` each (a whole context):
    /// all of it without a budget; under one, a quarter of the budget, at least one request of
    /// `minimumSlotBytes` for each of up to `floorSlots` slots (more slots than the pool holds
    /// wait for one to finish), never more than all of it.
    package static let floorSlots = 4
    package static func poolBytes(budget: Int?, parallel: Int, fullSlotBytes: Int, minimumSlotBytes: Int) -> Int {
        let full = parallel * fullSlotBytes
        guard let budget else { return full }
        return min(full, max(min(parallel, floorSlots) * minimumSlotBytes, budget / 4))
    }

    /// Resident KV bytes a request of `positions` positions (prompt + completion, capped at the
    /// slot's context) needs.
    package func need(positions: Int) -> Int { bytesFor(positions) }

    /// True when slot `slot` can take a request needing `need` beside the others' holdings.
    package func fits(_ need: Int, slot: Int) -> Bool {
        guard let pool = poolBytes else { return true }
        return held.enumerated().reduce(0) { $0 + ($1.offset == slot ? 0 : $1.element) } + need <= pool
    }

    /// How many of the free slots `free` could take a request needing `need` each, one after another.
    package func admissible(_ need: Int, free: [Int]) -> Int {
        guard let pool = poolBytes else { return free.count }
        var left = pool - held.reduce(0, +), n = 0
        for _ in free where need <= left { left -= need; n += 1 }
        return n
    }

    /// A request can never run: its need exceeds the whole pool.
    package func neverFits(_ need: Int) -> Bool { poolBytes.map { need > $0 } ?? false }

    package mutating func take(slot: Int, need: Int) { held[slot] = need }
    package mutating func release(slot: Int) { held[slot] = 0 }
}
