import Foundation

/// The tokenizer of Karpathy's llama2.c (`run.c`), read from its `tokenizer.bin` format:
///
///     i32 max_token_length
///     vocabSize times: f32 score, i32 length, length bytes (the piece)
///
/// (little-endian). The vocabulary size is not stored; it comes from the model.
///
/// `encode` matches `run.c`'s `encode(t, text, bos=1, eos=0, ...)` exactly; `decodePiece`
/// matches `run.c`'s `decode(t, prev, token)`, and `printablePiece` its `safe_printf` filter.
package struct Llama2cTokenizer: Tokenizer {
    /// The pieces as stored in the file (e.g. `"<0x0A>"`, `" the"`, `"\n<s>\n"`).
    package let pieces: [[UInt8]]
    /// The merge scores (higher merges first).
    package let scores: [Float]
    /// The file's max_token_length field.
    package let maxTokenLength: Int
    private let lookup: [[UInt8]: Int32]
    /// Id of the single-space piece used as the dummy prefix, if the vocabulary has one.
    private let spaceID: Int32?

    package var vocabSize: Int { pieces.count }
    package var bosID: Int32? { 1 }
    package var eosID: Int32? { 2 }

    /// Parses a llama2.c tokenizer file's bytes (kept verbatim when embedded in a model file).
    package init(data: [UInt8], vocabSize: Int, source: String) throws {
        func fail(_ problem: String) -> TokenizerError { TokenizerError(file: source, problem: problem) }
        guard vocabSize > 0 else { throw fail("vocabulary size must be positive (got \(vocabSize))") }
        guard vocabSize >= 3 else { throw fail("vocabulary size \(vocabSize) is too small (needs <unk>, BOS=1, EOS=2)") }
        var pos = 0
        func readU32(_ what: @autoclosure () -> String) throws -> UInt32 {
            guard pos + 4 <= data.count else {
                throw fail("truncated: file ends at byte \(data.count) while reading \(what())")
            }
            let v = UInt32(data[pos]) | UInt32(data[pos + 1]) << 8 | UInt32(data[pos + 2]) << 16 | UInt32(data[pos + 3]) << 24
            pos += 4
            return v
        }
        let maxLen = Int32(bitPattern: try readU32("max_token_length"))
        guard maxLen > 0, maxLen <= 1 << 16 else { throw fail("implausible max_token_length \(maxLen)") }
        var pieces: [[UInt8]] = []
        var scores: [Float] = []
        pieces.reserveCapacity(vocabSize)
        scores.reserveCapacity(vocabSize)
        var lookup: [[UInt8]: Int32] = [:]
        lookup.reserveCapacity(vocabSize)
        for i in 0..<vocabSize {
            let score = Float(bitPattern: try readU32("the score of token \(i) of \(vocabSize)"))
            guard score.isFinite else { throw fail("token \(i) has non-finite score \(score)") }
            let len = Int32(bitPattern: try readU32("the length of token \(i) of \(vocabSize)"))
            guard len >= 0, len <= maxLen else {
                throw fail("token \(i) has length \(len), outside 0...\(maxLen) (max_token_length)")
            }
            guard pos + Int(len) <= data.count else {
                throw fail("truncated: file ends at byte \(data.count) inside token \(i) of \(vocabSize)")
            }
            let piece = Array(data[pos..<(pos + Int(len))])
            pos += Int(len)
            // run.c's sorted bsearch finds one of equal strings; keep the first id.
            if lookup[piece] == nil { lookup[piece] = Int32(i) }
            pieces.append(piece)
            scores.append(score)
        }
        if pos != data.count {
            throw fail("\(data.count - pos) trailing bytes after \(vocabSize) tokens (wrong vocabulary size?)")
        }
        self.pieces = pieces
        self.scores = scores
        self.maxTokenLength = Int(maxLen)
        self.lookup = lookup
        self.spaceID = lookup[[0x20]]
    }

    /// Loads a `tokenizer.bin` file.
    package init(path: String, vocabSize: Int) throws {
        try self.init(data: TokenizerLoader.readFile(path), vocabSize: vocabSize, source: path)
    }

    /// Id of a piece, or nil.
    package func id(of piece: [UInt8]) -> Int32? { lookup[piece] }

    // MARK: - Encoding

    /// `run.c` `encode(t, text, bos=1, eos=0)`: BOS, the dummy-prefix space (if text is
    /// non-empty), one token per code point (byte fallback `byte + 3` when missing), then
    /// greedy merges by highest score.
    package func encode(_ text: String) -> [Int32] {
        encode(bytes: Array(text.utf8), bos: true, eos: false)
    }

    /// `run.c` `encode` over raw bytes, with its BOS/EOS switches.
    package func encode(bytes text: [UInt8], bos: Bool, eos: Bool) -> [Int32] {
        var tokens = codePoints(text, bos: bos)
        // Merge the best-scoring adjacent pair until none is in the vocabulary (run.c rescans
        // every pair per merge: quadratic; here a heap of candidate pairs, best score first and
        // the leftmost on ties, as run.c's strict `>` scan picks, over a linked list of tokens).
        mergePairs(&tokens)
        if eos { tokens.append(2) }
        return tokens
    }

    /// `encode` with run.c's own merge loop (every merge rescans all pairs: quadratic), kept as
    /// the reference the tests and the tokenizer fuzzer compare `encode` with.
    package func encodeByRescan(bytes text: [UInt8], bos: Bool) -> [Int32] {
        var tokens = codePoints(text, bos: bos)
        var merged: [UInt8] = []
        while true {
            var best: (score: Float, id: Int32, at: Int) = (-1e10, -1, -1)
            for i in 0 ..< max(0, tokens.count - 1) {
                merged.removeAll(keepingCapacity: true)
                merged.append(contentsOf: cString(pieces[Int(tokens[i])]))
                merged.append(contentsOf: cString(pieces[Int(tokens[i + 1])]))
                if let id = lookup[merged], scores[Int(id)] > best.score { best = (scores[Int(id)], id, i) }
            }
            if best.at < 0 { return tokens }
            tokens[best.at] = best.id
            tokens.remove(at: best.at + 1)
        }
    }

    /// BOS, the dummy-prefix space (if text is non-empty), one token per code point.
    private func codePoints(_ text: [UInt8], bos: Bool) -> [Int32] {
        var tokens: [Int32] = []
        tokens.reserveCapacity(text.count + 3)
        if bos { tokens.append(1) }
        if !text.isEmpty, let spaceID { tokens.append(spaceID) }
        // Code points: a lead byte starts a new buffer; up to 4 bytes per buffer.
        var buffer: [UInt8] = []
        buffer.reserveCapacity(4)
        for (i, c) in text.enumerated() {
            if c & 0xC0 != 0x80 { buffer.removeAll(keepingCapacity: true) }
            buffer.append(c)
            let next: UInt8 = i + 1 < text.count ? text[i + 1] : 0
            if next & 0xC0 == 0x80 && buffer.count < 4 { continue }
            if let id = lookup[buffer] {
                tokens.append(id)
            } else {
                // run.c's byte fallback (byte b is id b + 3); a vocabulary too small to hold
                // that id gives <unk> (0) where run.c would read past its table.
                for b in buffer { tokens.append(Int(b) + 3 < pieces.count ? Int32(b) + 3 : 0) }
            }
            buffer.removeAll(keepingCapacity: true)
        }
        return tokens
    }

    private struct Candidate: HeapKeyed {
        /// Descending score (order-preserving bits, inverted) << 32 | the left token's position.
        var key: UInt64
        var right: Int32, leftID: Int32, rightID: Int32, merged: Int32
    }

    /// Applies run.c's merges to `tokens` in O(n log n): candidates go stale when a neighbour
    /// merges and are dropped when popped (their tokens or adjacency changed).
    private func mergePairs(_ tokens: inout [Int32]) {
        let n = tokens.count
        guard n >= 2 else { return }
        var next = [Int32](0 ..< Int32(n)).map { $0 + 1 }, prev = [Int32](0 ..< Int32(n)).map { $0 - 1 }
        var heap = KeyedMinHeap<Candidate>()
        var merged: [UInt8] = []
        func consider(_ l: Int32) {
            let r = next[Int(l)]
            guard r < n else { return }
            let a = tokens[Int(l)], b = tokens[Int(r)]
            merged.removeAll(keepingCapacity: true)
            merged.append(contentsOf: cString(pieces[Int(a)]))
            merged.append(contentsOf: cString(pieces[Int(b)]))
            guard let id = lookup[merged] else { return }
            let score = scores[Int(id)]
            guard score > -1e10 else { return } // run.c's scan starts at -1e10 with a strict >
            let bits = (score == 0 ? Float(0) : score).bitPattern
            let ordered = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
            heap.push(Candidate(key: UInt64(~ordered) << 32 | UInt64(UInt32(l)), right: r, leftID: a, rightID: b, merged: id))
        }
        for i in 0 ..< Int32(n - 1) { consider(i) }
        while let c = heap.pop() {
            let l = Int32(truncatingIfNeeded: c.key & 0xFFFF_FFFF)
            guard next[Int(l)] == c.right, tokens[Int(l)] == c.leftID, tokens[Int(c.right)] == c.rightID else { continue }
            tokens[Int(l)] = c.merged
            tokens[Int(c.right)] = -1
            let after = next[Int(c.right)]
            next[Int(l)] = after
            if after < n { prev[Int(after)] = l }
            if prev[Int(l)] >= 0 { consider(prev[Int(l)]) }
            consider(l)
        }
        tokens.removeAll { $0 < 0 }
    }

    /// A piece as C's `%s` sees it (up to the first NUL).
    private func cString(_ piece: [UInt8]) -> ArraySlice<UInt8> {
        if let z = piece.firstIndex(of: 0) { return piece[..<z] }
        return piece[...]
    }

    // MARK: - Decoding

    /// The byte a `<0xXX>` piece stands for, as `sscanf(piece, "<0x%02hhX>", &b) == 1`.
    package static func byteFallback(_ piece: [UInt8]) -> UInt8? {
        guard piece.count >= 4, piece[0] == 0x3C, piece[1] == 0x30, piece[2] == 0x78 else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        guard let h = hex(piece[3]) else { return nil }
        if piece.count >= 5, let l = hex(piece[4]) { return h << 4 | l }
        return h
    }

    /// `run.c` `decode(t, prev_token, token)`: after BOS a leading space is dropped, and
    /// `<0xXX>` pieces become the raw byte. Out-of-range ids give `[]`.
    package func decodePiece(prev: Int32, token: Int32) -> [UInt8] {
        guard token >= 0, Int(token) < pieces.count else { return [] }
        var piece = cString(pieces[Int(token)])
        if prev == 1, piece.first == 0x20 { piece = piece.dropFirst() }
        if let b = Llama2cTokenizer.byteFallback(Array(piece)) { return [b] }
        return Array(piece)
    }

    /// `run.c`'s `safe_printf` filter: a piece that is a single byte which is neither
    /// printable nor whitespace (C locale `isprint`/`isspace`) prints as nothing; output also
    /// stops at a NUL as `%s` does. Use on `decodePiece` results to reproduce run.c's output.
    package static func printablePiece(_ piece: [UInt8]) -> [UInt8] {
        guard let first = piece.first, first != 0 else { return [] }
        if piece.count == 1 {
            let isPrint = first >= 0x20 && first <= 0x7E
            let isSpace = first == 0x20 || (first >= 0x09 && first <= 0x0D)
            if !(isPrint || isSpace) { return [] }
        }
        if let z = piece.firstIndex(of: 0) { return Array(piece[..<z]) }
        return piece
    }

    /// The bytes a token stands for (byte fallbacks resolved), without run.c's
    /// after-BOS space stripping; for streaming use `decodePiece(prev:token:)`.
    package func tokenBytes(_ id: Int32) -> [UInt8] {
        decodePiece(prev: -1, token: id)
    }

    /// Decodes as run.c prints a sequence: each token through `decodePiece(prev:token:)`
    /// with the previous id (so the dummy-prefix space after BOS disappears). BOS and EOS
    /// themselves produce no bytes (run.c never prints them).
    package func decode(_ ids: [Int32]) -> [UInt8] {
        var out: [UInt8] = []
        var prev: Int32 = -1
        for id in ids {
            defer { prev = id }
            if id == 1 || id == 2 { continue }
            out.append(contentsOf: decodePiece(prev: prev, token: id))
        }
        return out
    }
}
