/// An element ordered by a 64-bit key.
protocol HeapKeyed { var key: UInt64 { get } }

/// A binary min-heap, smallest key first: the merge queues of the BPE tokenizers (GPT-2's
/// merge ranks, SentencePiece's scores) written once. Allocation-free once warm.
struct KeyedMinHeap<Element: HeapKeyed> {
    private var items: [Element] = []

    mutating func removeAll() { items.removeAll(keepingCapacity: true) }

    @inline(__always) mutating func push(_ e: Element) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if items[p].key <= items[i].key { break }
            items.swapAt(p, i)
            i = p
        }
    }

    mutating func pop() -> Element? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && items[l].key < items[m].key { m = l }
                if r < n && items[r].key < items[m].key { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
