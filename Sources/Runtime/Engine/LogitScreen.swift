import CKernels
import Foundation
import Quant

/// Top-k-only logits through a screening copy of the classifier (`--screen K`).
///
/// A large-vocabulary classifier dominates decode (Gemma 3: 262,144 rows, about 2/3 of the
/// bytes a token reads at q8_0). The screen is a 4-bit (q4_0x8) copy made from the classifier
/// at load: each logits row is first computed from it (half the bytes), its K largest rows are
/// then recomputed exactly from the classifier itself, and only those K logits are passed on
/// (every other logit is -inf). The K exact values are bit-identical to the full product (the
/// same kernel per row), so greedy decoding and top-k sampling with k <= K give the full
/// classifier's result whenever its argmax (its top k) is among the screen's K candidates;
/// `verify` counts how often it is not. Not for perplexity or top-p/temperature-only sampling,
/// which need every logit (`verify` passes the full logits on and only counts).
///
/// One screen per loaded weights, shared by the sequences built over them; its buffers are used
/// by one forward pass at a time (the server decodes every slot from one thread).
package final class LogitScreen {
    package let k: Int
    package let verify: Bool
    package let matrix: Matrix
    private let storage: UnsafeMutableRawPointer
    private let ids: UnsafeMutablePointer<Int32>      // [k] candidates of the current row
    private let vals: UnsafeMutablePointer<Float>     // [k] their screen logits (a min-heap)
    private let full: UnsafeMutablePointer<Float>?    // [vocab] verify: the full product
    /// Verify: rows scored, and rows whose full-classifier argmax was not among the K candidates.
    package private(set) var rowsChecked = 0
    package private(set) var argmaxMissed = 0
    /// Seconds spent building the screen at load.
    package let buildSeconds: Double
    /// Reads classifier row `id` into a buffer (pread), instead of touching it through the map:
    /// K scattered rows per token would otherwise fault in pages (and the 64 KiB around each)
    /// that stay resident (measured on Gemma 3: 300 tokens x 64 candidates left 110 MB of the
    /// 178 MB table resident). nil: rows are read in place. Called as (first row, rows, buffer):
    /// one row, or a row-grouped classifier's whole 8-row group.
    var rowSource: ((Int, Int, UnsafeMutableRawPointer) throws -> Void)? {
        didSet { if rowSource != nil, rowBuffer == nil { rowBuffer = .allocate(byteCount: rowGroup * rowBytes, alignment: 64) } }
    }
    private var rowBuffer: UnsafeMutableRawPointer?
    private let rowBytes: Int, rowGroup: Int
    /// Row-grouped classifiers (q8_0x8, q4_0x8): a candidate row rebuilt as a plain row, which a
    /// 1-row product of the same type reads as such (the same arithmetic as the full product).
    private let plainRow: UnsafeMutableRawPointer?

    /// Builds the 4-bit copy of `classifier` (rows = vocabulary) with `threads` threads;
    /// `release` is told each range of rows once it has been read.
    package init(of classifier: Matrix, k: Int, verify: Bool = false, threads: Int, file: String,
                 release: ((Range<Int>) -> Void)? = nil) throws {
        guard k >= 1, k <= classifier.rows else {
            throw ModelError("--screen \(k): must be 1...\(classifier.rows) (the vocabulary)")
        }
        let start = Date()
        let type = QuantType.q4_0x8, rows = classifier.rows, n = classifier.cols
        guard n % 32 == 0 else { throw QuantError(file, "classifier width \(n) is not a multiple of 32: no 4-bit screen") }
        let rs = type.rowSize(n)
        storage = UnsafeMutableRawPointer.allocate(byteCount: rows * rs, alignment: 64)
        let chunk = 4096   // rows per pass (a multiple of the 8-row group): 10 MB of floats at d = 640
        let tmp = UnsafeMutablePointer<Float>.allocate(capacity: chunk * n)
        defer { tmp.deallocate() }
        var r0 = 0
        while r0 < rows {
            let m = min(chunk, rows - r0)
            for i in 0 ..< m {
                qlm_get_row(classifier.type.rawValue, classifier.data, Int64(rows), Int64(n), Int64(r0 + i), tmp + i * n)
            }
            let bad = qlm_quantize_rows(type.rawValue, tmp, storage + r0 * rs, Int64(m), Int64(n), Int32(max(1, threads)))
            guard bad == -1 else {
                storage.deallocate()
                throw QuantError(file, "classifier row \(r0 + Int(max(0, bad))) cannot be quantized for the screen (non-finite?)")
            }
            release?(r0 ..< r0 + m)
            r0 += m
        }
        matrix = Matrix(name: classifier.name + ".screen", type: type, rows: rows, cols: n, data: UnsafeRawPointer(storage))
        self.k = k
        self.verify = verify
        ids = .allocate(capacity: k)
        vals = .allocate(capacity: k)
        full = verify ? .allocate(capacity: rows) : nil
        rowBytes = classifier.rowBytes
        rowGroup = classifier.type.rowGroup
        plainRow = rowGroup > 1 ? .allocate(byteCount: rowBytes, alignment: 64) : nil
        buildSeconds = Date().timeIntervalSince(start)
    }

    deinit {
        storage.deallocate(); ids.deallocate(); vals.deallocate(); full?.deallocate(); rowBuffer?.deallocate(); plainRow?.deallocate()
    }

    package var byteCount: Int { matrix.byteCount }

    /// Turns `row` (the screen's logits, vocab wide) into the top-k-only logits of `x` under
    /// `classifier`: the K best screen rows recomputed exactly, every other entry -inf. Verify:
    /// `row` ends holding the full classifier's logits, and a miss is counted when their argmax
    /// is not a candidate.
    func rescore(_ row: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, classifier: Matrix, compute: Compute) throws {
        let vocab = classifier.rows
        selectTopK(row, vocab)
        if let full {
            compute.linear(classifier, x, T: 1, out: full)
            var best = 0
            for i in 1 ..< vocab where full[i] > full[best] { best = i }
            rowsChecked += 1
            var hit = false
            for j in 0 ..< k where Int(ids[j]) == best { hit = true; break }
            if !hit { argmaxMissed += 1 }
            row.update(from: full, count: vocab)
            return
        }
        row.update(repeating: -.infinity, count: vocab)
        let rs = classifier.rowBytes, g = rowGroup, groupedRows = vocab / g * g
        for j in 0 ..< k {
            let id = Int(ids[j])
            var data = classifier.data + id * rs
            if let plainRow, id < groupedRows {
                // inside an 8-row group the row's blocks are interleaved with its neighbours'
                let first = id / g * g
                var group = classifier.data + first * rs
                if let rowSource, let rowBuffer {
                    try rowSource(first, g, rowBuffer)
                    group = UnsafeRawPointer(rowBuffer)
                }
                qlm_plain_row(classifier.type.rawValue, group, Int64(g), Int64(classifier.cols), Int64(id - first), plainRow)
                data = UnsafeRawPointer(plainRow)
            } else if let rowSource, let rowBuffer {
                try rowSource(id, 1, rowBuffer)
                data = UnsafeRawPointer(rowBuffer)
            }
            let one = Matrix(name: classifier.name, type: classifier.type, rows: 1, cols: classifier.cols, data: data)
            compute.linear(one, x, T: 1, out: row + id)
        }
    }

    /// ids/vals := the k largest entries of v (ties: the lower index), as a min-heap on value.
    private func selectTopK(_ v: UnsafePointer<Float>, _ n: Int) {
        var size = 0
        // heap order: (value, -index) smallest at the root, so a larger index loses a tie
        @inline(__always) func less(_ a: Int, _ b: Int) -> Bool {
            vals[a] < vals[b] || (vals[a] == vals[b] && ids[a] > ids[b])
        }
        @inline(__always) func swapAt(_ a: Int, _ b: Int) {
            let tv = vals[a]; vals[a] = vals[b]; vals[b] = tv
            let ti = ids[a]; ids[a] = ids[b]; ids[b] = ti
        }
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < size && less(l, m) { m = l }
                if r < size && less(r, m) { m = r }
                if m == i { return }
                swapAt(i, m); i = m
            }
        }
        for i in 0 ..< n {
            let x = v[i]
            if size < k {
                vals[size] = x; ids[size] = Int32(i); size += 1
                var c = size - 1
                while c > 0 {
                    let p = (c - 1) / 2
                    if less(c, p) { swapAt(c, p); c = p } else { break }
                }
            } else if x > vals[0] {   // NaN never enters
                vals[0] = x; ids[0] = Int32(i)
                siftDown(0)
            }
        }
    }
}
