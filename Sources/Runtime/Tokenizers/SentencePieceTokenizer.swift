import Foundation
import Quant

/// SentencePiece BPE from a checkpoint's vocabulary (`TokenizerData`, model "llama": GGUF's
/// `tokenizer.ggml.tokens` / `scores` / `token_type`), as Gemma and Llama 2 use it.
///
/// Encoding, per the reference implementations (sentencepiece's `bpe::Model`, llama.cpp's SPM
/// session):
/// 1. With `allowSpecial`, the text is split at control and unknown tokens (types 3 and 2,
///    e.g. `<start_of_turn>`), leftmost-longest, as llama.cpp's `parse_special` does.
/// 2. Each stretch of ordinary text gets a leading space if `add_space_prefix` says so (as
///    llama.cpp does after every special token), then every U+0020 becomes U+2581 (▁).
/// 3. It is cut into symbols: a user-defined piece (type 4, e.g. Gemma's `"\n"`, runs of
///    spaces, `<table>`; the GGUF converter stores them with real spaces, matched here as ▁,
///    so a literal ▁ in the text matches too, as in sentencepiece) where one starts,
///    leftmost-longest, and never merged; else one UTF-8 character. The adjacent pair whose
///    concatenation is a vocabulary piece (normal, user-defined or unused; never control, byte
///    or unknown) with the highest score is merged, leftmost first on equal scores, until no
///    pair is a piece.
/// 4. Unused pieces are split back into the two parts they were merged from; a character
///    that is no piece becomes its UTF-8 bytes as `<0xXX>` tokens (byte fallback), or the
///    unknown token when the vocabulary has no byte tokens (a run of them as one).
///
/// Decoding: ▁ → space, byte tokens → their byte, control tokens → nothing, the unknown token
/// → " ⁇ " (sentencepiece's surface); with `add_space_prefix` the first piece's leading space is
/// dropped. `tokenBytes` gives one token's bytes for streaming (no prefix dropping).
package struct SentencePieceTokenizer: Tokenizer {
    /// `tokenizer.ggml.token_type` values.
    package enum TokenType: UInt8, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// Pieces as in the vocabulary (▁ as its UTF-8, E2 96 81); piece i is
    /// `pieceData[pieceOffsets[i] ..< pieceOffsets[i + 1]]`.
    private let pieceData: [UInt8]
    private let pieceOffsets: [Int32]
    /// What each token decodes to (▁ → space, `<0xXX>` → the byte, control → nothing).
    private let textData: [UInt8]
    private let textOffsets: [Int32]
    package let scores: [Float]
    /// Raw token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    package let types: [UInt8]
    /// Pieces a merge may produce (normal, user-defined, unused).
    private let mergeable: PieceTable
    /// Control and unknown pieces, matched in the raw text when special tokens are allowed.
    private let controls: SpecialSet
    /// User-defined pieces (spaces as ▁), matched in the escaped text.
    private let userDefined: SpecialSet
    /// Token id of `<0xXX>` for each byte, -1 when absent.
    private let byteIDs: [Int32]
    private let hasByteFallback: Bool
    private let maxPieceBytes: Int
    /// Mergeable pieces with ▁ after their first byte (Gemma: one, ">▁</"), with those offsets.
    private let crossing: [([UInt8], [Int])]
    /// Whether encoding may cut the text into words at ▁ (byte fallback, so no runs of
    /// unknown tokens span words, and few crossing pieces to check).
    private let splitWords: Bool
    /// Words already merged (shared by copies of the tokenizer).
    private let words = WordCache()

    package let bosID: Int32?
    package let eosID: Int32?
    package let unkID: Int32?
    package let addBos: Bool
    package let addEos: Bool
    package let addSpacePrefix: Bool
    package let source: String

    package var vocabSize: Int { scores.count }

    // MARK: - Building

    package init(_ d: TokenizerData) throws {
        guard d.model == "llama" else {
            throw TokenizerError(file: d.source, problem: "SentencePieceTokenizer needs tokenizer model 'llama', not '\(d.model)'")
        }
        let n = d.tokens.count
        let scores = d.scores ?? [Float](repeating: 0, count: n)
        guard scores.count == n else { throw TokenizerError(file: d.source, problem: "\(scores.count) scores for \(n) tokens") }
        let rawTypes = d.tokenTypes ?? [Int32](repeating: 1, count: n)
        guard rawTypes.count == n else { throw TokenizerError(file: d.source, problem: "\(rawTypes.count) token types for \(n) tokens") }
        var types = [UInt8](repeating: 1, count: n)
        for (i, t) in rawTypes.enumerated() {
            guard (1...6).contains(t) else { throw TokenizerError(file: d.source, problem: "token \(i) has type \(t) (expected 1...6)") }
            types[i] = UInt8(t)
        }
        var pieces: [[UInt8]] = []
        pieces.reserveCapacity(n)
        for t in d.tokens { pieces.append(Array(t.utf8)) }
        try self.init(pieces: pieces, scores: scores, types: types, bos: d.bos, eos: d.eos, unk: d.unk,
                      addBos: d.addBos ?? false, addEos: d.addEos ?? false, addSpacePrefix: d.addSpacePrefix ?? false, source: d.source)
    }

    init(pieces: [[UInt8]], scores: [Float], types: [UInt8], bos: Int?, eos: Int?, unk: Int?,
         addBos: Bool, addEos: Bool, addSpacePrefix: Bool, source: String) throws {
        func fail(_ p: String) -> TokenizerError { TokenizerError(file: source, problem: p) }
        let n = pieces.count
        guard n > 0, n < Int(Int32.max) else { throw fail("empty vocabulary") }
        var data: [UInt8] = [], offsets: [Int32] = [0]
        var text: [UInt8] = [], textOffsets: [Int32] = [0]
        data.reserveCapacity(pieces.reduce(0) { $0 + $1.count })
        text.reserveCapacity(data.capacity)
        offsets.reserveCapacity(n + 1)
        textOffsets.reserveCapacity(n + 1)
        var byteIDs = [Int32](repeating: -1, count: 256)
        var maxLen = 0
        for (i, p) in pieces.enumerated() {
            guard !p.isEmpty, p.count <= Int(UInt16.max) else { throw fail("token \(i) has invalid length \(p.count)") }
            guard scores[i].isFinite else { throw fail("token \(i) has non-finite score \(scores[i])") }
            data.append(contentsOf: p)
            offsets.append(Int32(data.count))
            maxLen = max(maxLen, p.count)
            switch TokenType(rawValue: types[i]) {
            case .byte:
                guard let b = Self.byteValue(p) else { throw fail("byte token \(i) \(String(decoding: p, as: UTF8.self).debugDescription) is not <0xXX>") }
                if byteIDs[Int(b)] < 0 { byteIDs[Int(b)] = Int32(i) }
                text.append(b)
            case .control: break
            case .unknown: text.append(contentsOf: [0x20, 0xE2, 0x81, 0x87, 0x20])      // " ⁇ "
            case .userDefined: text.append(contentsOf: p)
            default: Self.unescape(p, into: &text)
            }
            textOffsets.append(Int32(text.count))
        }
        func check(_ v: Int?, _ what: String) throws -> Int32? {
            guard let v else { return nil }
            guard v >= 0, v < n else { throw fail("\(what) id \(v) outside 0..<\(n)") }
            return Int32(v)
        }
        bosID = try check(bos, "BOS")
        eosID = try check(eos, "EOS")
        unkID = try check(unk, "unknown-token")
        self.addBos = addBos
        self.addEos = addEos
        self.addSpacePrefix = addSpacePrefix
        self.source = source
        self.scores = scores
        self.types = types
        self.byteIDs = byteIDs
        self.hasByteFallback = byteIDs.contains { $0 >= 0 }
        self.maxPieceBytes = maxLen

        var mergeable = PieceTable(capacity: n)
        var controlEntries: [([UInt8], Int32)] = [], userEntries: [([UInt8], Int32)] = []
        try data.withUnsafeBufferPointer { d in
            for i in 0..<n {
                let s = Int(offsets[i]), len = Int(offsets[i + 1]) - s
                let p = UnsafeBufferPointer(rebasing: d[s..<(s + len)])
                switch TokenType(rawValue: types[i])! {
                case .normal, .userDefined, .unused:
                    if !mergeable.insert(p, id: Int32(i), data: d, offsets: offsets) {
                        throw fail("token \(i) \(String(decoding: p, as: UTF8.self).debugDescription) is already defined")
                    }
                default: break
                }
                switch TokenType(rawValue: types[i])! {
                case .control, .unknown: controlEntries.append((Array(p), Int32(i)))
                case .userDefined: userEntries.append((Self.escape(p), Int32(i)))
                default: break
                }
            }
        }
        self.mergeable = mergeable
        var crossing: [([UInt8], [Int])] = []
        for i in 0..<n where [TokenType.normal, .userDefined, .unused].contains(TokenType(rawValue: types[i])) {
            let p = pieces[i]
            let offsets = p.count < 4 ? [] : (1...(p.count - 3)).filter { p[$0] == 0xE2 && p[$0 + 1] == 0x96 && p[$0 + 2] == 0x81 }
            if !offsets.isEmpty { crossing.append((p, offsets)) }
        }
        self.crossing = crossing
        // Unused pieces resegment by the last pair that formed them anywhere in the text: no cutting.
        self.splitWords = hasByteFallback && crossing.count <= 64 && !types.contains(TokenType.unused.rawValue)
        self.controls = SpecialSet(controlEntries)
        self.userDefined = SpecialSet(userEntries)
        self.pieceData = data
        self.pieceOffsets = offsets
        self.textData = text
        self.textOffsets = textOffsets
    }

    /// The byte a `<0xXX>` piece stands for.
    static func byteValue(_ p: [UInt8]) -> UInt8? {
        guard p.count == 6, p[0] == 0x3C, p[1] == 0x30, p[2] == 0x78, p[5] == 0x3E,
              let h = UInt8(String(decoding: p[3..<5], as: UTF8.self), radix: 16) else { return nil }
        return h
    }

    /// `p` with every space turned into ▁ (E2 96 81).
    static func escape<C: Collection>(_ p: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(p.count)
        for c in p { if c == 0x20 { out += [0xE2, 0x96, 0x81] } else { out.append(c) } }
        return out
    }

    /// Appends `p` with every ▁ (E2 96 81) turned into a space.
    static func unescape(_ p: [UInt8], into out: inout [UInt8]) {
        var i = 0
        while i < p.count {
            if i + 2 < p.count, p[i] == 0xE2, p[i + 1] == 0x96, p[i + 2] == 0x81 { out.append(0x20); i += 3 } else { out.append(p[i]); i += 1 }
        }
    }

    // MARK: - Lookups

    /// The piece of token `id` as the vocabulary stores it (▁ not unescaped).
    package func piece(_ id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < vocabSize else { return [] }
        return Array(pieceData[Int(pieceOffsets[Int(id)])..<Int(pieceOffsets[Int(id) + 1])])
    }

    package func type(_ id: Int32) -> TokenType? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return TokenType(rawValue: types[Int(id)])
    }

    /// The id of a special (user-defined, control or unknown) token given its text, e.g.
    /// `"<end_of_turn>"`.
    package func specialID(_ text: String) -> Int32? {
        controls.id(of: Array(text.utf8)) ?? userDefined.id(of: Self.escape(text.utf8))
    }

    // MARK: - Encoding

    /// Encodes like llama.cpp's `llama_tokenize(text, add_special: true, parse_special: true)`.
    package func encode(_ text: String) -> [Int32] { encode(text, allowSpecial: true, addSpecial: true) }

    /// `allowSpecial`: match control/unknown token text (user-defined pieces always match);
    /// `addSpecial`: add BOS/EOS when `add_bos`/`add_eos` say so.
    package func encode(_ text: String, allowSpecial: Bool, addSpecial: Bool = true) -> [Int32] {
        var out: [Int32] = []
        let bytes = Array(text.utf8)
        out.reserveCapacity(bytes.count / 3 + 4)
        if addSpecial, addBos, let bosID { out.append(bosID) }
        var s = Scratch()
        pieceData.withUnsafeBufferPointer { d in
            bytes.withUnsafeBufferPointer { b in
                let n = b.count
                var i = 0, fragment = 0
                while i < n {
                    if allowSpecial, let (id, len) = controls.match(b, at: i) {
                        if fragment < i { encodeFragment(UnsafeBufferPointer(rebasing: b[fragment..<i]), &s, data: d, into: &out) }
                        out.append(id)
                        i += len
                        fragment = i
                    } else {
                        i += 1
                    }
                }
                if fragment < n { encodeFragment(UnsafeBufferPointer(rebasing: b[fragment..<n]), &s, data: d, into: &out) }
            }
        }
        if addSpecial, addEos, let eosID { out.append(eosID) }
        return out
    }

    private struct Scratch {
        var buf: [UInt8] = []
        var start: [Int32] = []
        var len: [Int32] = []
        var prev: [Int32] = []
        var next: [Int32] = []
        var fixed: [Int32] = []
        var heap = MergeHeap()
        var revMerge: [[UInt8]: ([UInt8], [UInt8])] = [:]
    }

    /// Steps 2–4 of the type comment on one stretch of ordinary text.
    ///
    /// Merges never cross a user-defined symbol, nor a ▁ that no piece has in its interior at
    /// that spot, so the text is cut there into words that are merged on their own (the order
    /// of merges inside a word is the same as in one pass over the whole text) and cached.
    private func encodeFragment(_ raw: UnsafeBufferPointer<UInt8>, _ s: inout Scratch, data d: UnsafeBufferPointer<UInt8>,
                                into out: inout [Int32]) {
        // The scratch arrays are moved out (no copy) and back, so the closures below own them.
        func take<T>(_ a: inout [T]) -> [T] { let x = a; a = []; return x }
        var buf = take(&s.buf), start = take(&s.start), len = take(&s.len), prev = take(&s.prev), next = take(&s.next)
        var fixed = take(&s.fixed)
        var heap = s.heap, revMerge = s.revMerge
        s.heap = MergeHeap(); s.revMerge = [:]
        defer { s.buf = buf; s.start = start; s.len = len; s.prev = prev; s.next = next; s.fixed = fixed; s.heap = heap; s.revMerge = revMerge }

        buf.removeAll(keepingCapacity: true)
        if addSpacePrefix { buf.append(contentsOf: [0xE2, 0x96, 0x81]) }
        for c in raw {
            if c == 0x20 { buf.append(0xE2); buf.append(0x96); buf.append(0x81) } else { buf.append(c) }
        }
        start.removeAll(keepingCapacity: true)
        len.removeAll(keepingCapacity: true)
        fixed.removeAll(keepingCapacity: true)
        var pos = 0
        let total = buf.count
        buf.withUnsafeBufferPointer { b in
            while pos < total {
                if let (id, l) = userDefined.match(b, at: pos) {
                    start.append(Int32(pos)); len.append(Int32(l)); fixed.append(id)
                    pos += l
                    continue
                }
                let lead = b[pos]
                let l = min(total - pos, lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4)
                start.append(Int32(pos)); len.append(Int32(l)); fixed.append(-1)
                pos += l
            }
        }
        let count = start.count
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        prev.append(contentsOf: repeatElement(-1, count: count))
        next.append(contentsOf: repeatElement(-1, count: count))

        buf.withUnsafeBufferPointer { buf in
            start.withUnsafeMutableBufferPointer { start in
                len.withUnsafeMutableBufferPointer { len in
                    prev.withUnsafeMutableBufferPointer { prev in
                        next.withUnsafeMutableBufferPointer { next in
                            func tryPair(_ left: Int32, _ right: Int32) {
                                guard left >= 0, right >= 0 else { return }
                                let size = Int(len[Int(left)] + len[Int(right)])
                                guard size <= maxPieceBytes else { return }
                                let at = Int(start[Int(left)])
                                let piece = UnsafeBufferPointer(rebasing: buf[at..<(at + size)])
                                guard let id = mergeable.get(piece, data: d, offsets: pieceOffsets) else { return }
                                heap.push(score: scores[Int(id)], left: left, right: right, size: Int32(size))
                                if types[Int(id)] == TokenType.unused.rawValue {
                                    let ls = Int(len[Int(left)])
                                    revMerge[Array(piece)] = (Array(buf[at..<(at + ls)]), Array(buf[(at + ls)..<(at + size)]))
                                }
                            }
                            /// BPE over symbols a ..< b (none user-defined), appending their ids.
                            func merge(_ a: Int, _ b: Int) {
                                for k in a..<b { prev[k] = Int32(k > a ? k - 1 : -1); next[k] = Int32(k + 1 < b ? k + 1 : -1) }
                                heap.removeAll()
                                if !revMerge.isEmpty { revMerge.removeAll() }
                                for k in (a + 1)..<max(b, a + 1) { tryPair(Int32(k - 1), Int32(k)) }
                                while let e = heap.pop() {
                                    let l = Int(e.left), r = Int(e.right)
                                    // Stale: a side was merged away or grew since the pair was pushed.
                                    if len[l] == 0 || len[r] == 0 || len[l] + len[r] != e.size || next[l] != e.right { continue }
                                    len[l] += len[r]
                                    len[r] = 0
                                    next[l] = next[r]
                                    if next[r] >= 0 { prev[Int(next[r])] = Int32(l) }
                                    tryPair(prev[l], Int32(l))
                                    tryPair(Int32(l), next[l])
                                }
                                var k = Int32(a)
                                var prevUnk = false
                                while k >= 0 {
                                    let at = Int(start[Int(k)])
                                    emit(UnsafeBufferPointer(rebasing: buf[at..<(at + Int(len[Int(k)]))]), &revMerge, &prevUnk, data: d, into: &out)
                                    k = next[Int(k)]
                                }
                            }
                            /// A ▁ at byte p that no piece holds in its interior there: merges cannot cross it.
                            func isWordStart(_ p: Int) -> Bool {
                                guard p + 3 <= total, buf[p] == 0xE2, buf[p + 1] == 0x96, buf[p + 2] == 0x81 else { return false }
                                for (piece, offsets) in crossing {
                                    for o in offsets where p - o >= 0 && p - o + piece.count <= total {
                                        if memcmp(buf.baseAddress! + p - o, piece, piece.count) == 0 { return false }
                                    }
                                }
                                return true
                            }
                            var k = 0
                            while k < count {
                                if fixed[k] >= 0 { out.append(fixed[k]); k += 1; continue }
                                var e = k + 1
                                while e < count && fixed[e] < 0 && !(splitWords && isWordStart(Int(start[e]))) { e += 1 }
                                if splitWords {
                                    let key = Array(buf[Int(start[k])..<Int(start[e - 1] + len[e - 1])])
                                    if let hit = words.get(key) {
                                        out.append(contentsOf: hit)
                                    } else {
                                        let m = out.count
                                        merge(k, e)
                                        words.put(key, Array(out[m...]))
                                    }
                                } else {
                                    merge(k, e)
                                }
                                k = e
                            }
                        }
                    }
                }
            }
        }
    }

    /// One final symbol: its piece id, unused pieces split back into their parts, else bytes.
    private func emit(_ piece: UnsafeBufferPointer<UInt8>, _ revMerge: inout [[UInt8]: ([UInt8], [UInt8])], _ prevUnk: inout Bool,
                      data d: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        if let id = mergeable.get(piece, data: d, offsets: pieceOffsets) {
            if types[Int(id)] == TokenType.unused.rawValue, let (a, b) = revMerge[Array(piece)] {
                a.withUnsafeBufferPointer { emit($0, &revMerge, &prevUnk, data: d, into: &out) }
                b.withUnsafeBufferPointer { emit($0, &revMerge, &prevUnk, data: d, into: &out) }
                return
            }
            out.append(id)
            prevUnk = false
            return
        }
        if let id = controls.id(of: piece) {
            out.append(id)          // sentencepiece's PieceToId also finds control/unknown pieces
            prevUnk = id == unkID
            return
        }
        if hasByteFallback {
            for b in piece {
                let id = byteIDs[Int(b)]
                if id >= 0 { out.append(id) } else if let unkID { out.append(unkID) }
            }
            prevUnk = false
        } else if let unkID {
            if !prevUnk { out.append(unkID) }      // a run of unknown characters is one unknown token
            prevUnk = true
        }
    }

    // MARK: - Decoding

    package func tokenBytes(_ id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < vocabSize else { return [] }
        return Array(textData[Int(textOffsets[Int(id)])..<Int(textOffsets[Int(id) + 1])])
    }

    package func decode(_ ids: [Int32]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        var first = true
        for id in ids where id >= 0 && Int(id) < vocabSize {
            let s = Int(textOffsets[Int(id)]), e = Int(textOffsets[Int(id) + 1])
            var from = s
            if first && types[Int(id)] != TokenType.control.rawValue {
                first = false
                if addSpacePrefix, e > s, textData[s] == 0x20, types[Int(id)] != TokenType.byte.rawValue { from += 1 }
            }
            out.append(contentsOf: textData[from..<e])
        }
        return out
    }

    // MARK: - Serialization

    /// First 8 bytes of a serialized SentencePiece tokenizer.
    package static let serializationMagic: [UInt8] = Array("QLMSPM\u{0}\u{1}".utf8)

    /// The `spm` blob of a .qlm file (docs/format.md, *Tokenizer tensor*).
    package func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(pieceData.count + 7 * vocabSize + 64)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func id(_ v: Int32?) { u32(UInt32(bitPattern: v ?? -1)) }
        out.append(contentsOf: Self.serializationMagic)
        u32(UInt32(vocabSize))
        out.append((addBos ? 1 : 0) | (addEos ? 2 : 0) | (addSpacePrefix ? 4 : 0))
        id(bosID); id(eosID); id(unkID)
        for i in 0..<vocabSize {
            let s = Int(pieceOffsets[i]), e = Int(pieceOffsets[i + 1])
            withUnsafeBytes(of: UInt16(e - s).littleEndian) { out.append(contentsOf: $0) }
            out.append(contentsOf: pieceData[s..<e])
        }
        for f in scores { u32(f.bitPattern) }
        out.append(contentsOf: types)
        withUnsafeBytes(of: GPT2Tokenizer.checksum(out[...]).littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// Loads the form written by `serialized()`. Any truncation or corruption throws.
    package init(serialized blob: [UInt8], source: String) throws {
        func fail(_ problem: String) -> TokenizerError { TokenizerError(file: source, problem: "serialized SentencePiece tokenizer: \(problem)") }
        let magic = Self.serializationMagic
        guard blob.count >= magic.count + 4 + 1 + 12 + 8 else { throw fail("too short (\(blob.count) bytes)") }
        guard blob.starts(with: magic.prefix(7)) else { throw fail("bad magic") }
        guard blob[7] == magic[7] else { throw fail("unsupported format version \(blob[7])") }
        let end = blob.count - 8
        var stored: UInt64 = 0
        for k in 0..<8 { stored |= UInt64(blob[end + k]) << (8 * UInt64(k)) }
        guard GPT2Tokenizer.checksum(blob[0..<end]) == stored else { throw fail("checksum mismatch (truncated or corrupted)") }
        var pos = magic.count
        func u32() throws -> UInt32 {
            guard pos + 4 <= end else { throw fail("truncated at byte \(pos)") }
            let v = UInt32(blob[pos]) | UInt32(blob[pos + 1]) << 8 | UInt32(blob[pos + 2]) << 16 | UInt32(blob[pos + 3]) << 24
            pos += 4
            return v
        }
        let n = Int(try u32())
        guard n > 0, n <= (end - pos) / 8 else { throw fail("implausible vocabulary count \(n)") }
        let flags = blob[pos]; pos += 1
        func id() throws -> Int? { let v = Int32(bitPattern: try u32()); return v < 0 ? nil : Int(v) }
        let bos = try id(), eos = try id(), unk = try id()
        var pieces: [[UInt8]] = []
        pieces.reserveCapacity(n)
        for i in 0..<n {
            guard pos + 2 <= end else { throw fail("truncated in token \(i)") }
            let len = Int(blob[pos]) | Int(blob[pos + 1]) << 8
            pos += 2
            guard len > 0, pos + len <= end else { throw fail("token \(i): bad length \(len)") }
            pieces.append(Array(blob[pos..<(pos + len)]))
            pos += len
        }
        guard end - pos == 5 * n else { throw fail("\(end - pos) bytes of scores and types for \(n) tokens (expected \(5 * n))") }
        var scores = [Float](repeating: 0, count: n)
        for i in 0..<n { scores[i] = Float(bitPattern: try u32()) }
        let types = Array(blob[pos..<(pos + n)])
        for (i, t) in types.enumerated() where !(1...6).contains(t) { throw fail("token \(i) has type \(t)") }
        try self.init(pieces: pieces, scores: scores, types: types, bos: bos, eos: eos, unk: unk,
                      addBos: flags & 1 != 0, addEos: flags & 2 != 0, addSpacePrefix: flags & 4 != 0, source: source)
    }
}

/// Max-heap of candidate merges: highest score first, then leftmost (sentencepiece's order).
struct MergeHeap {
    struct Entry: HeapKeyed { var key: UInt64; var right: Int32; var size: Int32; var left: Int32 { Int32(truncatingIfNeeded: key & 0xFFFF_FFFF) } }
    private var heap = KeyedMinHeap<Entry>()

    mutating func removeAll() { heap.removeAll() }

    /// key = (descending score order) << 32 | left, smallest first.
    @inline(__always) mutating func push(score: Float, left: Int32, right: Int32, size: Int32) {
        let bits = score.bitPattern
        let ordered = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000    // ascending with score
        heap.push(Entry(key: UInt64(~ordered) << 32 | UInt64(UInt32(left)), right: right, size: size))
    }

    mutating func pop() -> Entry? { heap.pop() }
}

/// Whole-piece tokens matched in text, longest first: a byte trie whose edges live in one
/// open-addressing table keyed by (node << 8 | byte).
struct SpecialSet: Sendable {
    private var edges = PairTable(capacity: 16)
    /// Token id ending at each node (-1: none); node 0 is the root.
    private var terminal: [Int32] = [-1]
    /// First bytes that start some piece (saves a table probe for every other byte).
    private var starts = [Bool](repeating: false, count: 256)

    /// `entries`: (bytes, token id); the first of equal byte strings wins.
    init(_ entries: [([UInt8], Int32)]) {
        edges = PairTable(capacity: entries.reduce(0) { $0 + $1.0.count } + 1)
        for (b, id) in entries where !b.isEmpty {
            var node: UInt64 = 0
            for c in b {
                let key = node << 8 | UInt64(c)
                if let child = edges.get(key) {
                    node = child
                } else {
                    let child = UInt64(terminal.count)
                    terminal.append(-1)
                    edges.insertIfAbsent(key, child)
                    node = child
                }
            }
            if terminal[Int(node)] < 0 { terminal[Int(node)] = id }
            starts[Int(b[0])] = true
        }
    }

    func id(of b: [UInt8]) -> Int32? {
        b.withUnsafeBufferPointer { id(of: $0) }
    }

    func id(of p: UnsafeBufferPointer<UInt8>) -> Int32? {
        guard let first = p.first, starts[Int(first)] else { return nil }
        var node: UInt64 = 0
        for c in p {
            guard let child = edges.get(node << 8 | UInt64(c)) else { return nil }
            node = child
        }
        let t = terminal[Int(node)]
        return t >= 0 ? t : nil
    }

    /// The longest piece starting at `i`, as (token id, byte length).
    @inline(__always)
    func match(_ b: UnsafeBufferPointer<UInt8>, at i: Int) -> (Int32, Int)? {
        guard starts[Int(b[i])] else { return nil }
        var node: UInt64 = 0
        var best: (Int32, Int)? = nil
        var j = i
        while j < b.count, let child = edges.get(node << 8 | UInt64(b[j])) {
            node = child
            j += 1
            let t = terminal[Int(node)]
            if t >= 0 { best = (t, j - i) }
        }
        return best
    }
}
