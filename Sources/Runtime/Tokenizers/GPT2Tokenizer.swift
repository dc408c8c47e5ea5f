import Foundation

/// Byte-level BPE as in OpenAI's GPT-2 `encoder.py` / tiktoken's `gpt2` encoding.
///
/// Encoding: the text is split by the GPT-2 pre-tokenization pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// (implemented by hand over Unicode scalars, see `pretokenize`), each piece's UTF-8 bytes
/// become single-byte tokens, and adjacent pairs are merged lowest merge rank first.
/// Tokens are kept as their true bytes (not OpenAI's printable unicode stand-ins).
///
/// `encode(_:)` treats `<|endoftext|>` as ordinary text, like tiktoken's `encode_ordinary`;
/// `encode(_:allowSpecial:)` maps the literal special-token strings to their ids.
package struct GPT2Tokenizer: Tokenizer {
    /// Concatenated bytes of all tokens; token `i` is `tokenData[tokenOffsets[i]..<tokenOffsets[i+1]]`.
    private let tokenData: [UInt8]
    private let tokenOffsets: [Int32]
    /// Merges in rank order: (left, right, merged).
    private let merges: [(UInt32, UInt32, UInt32)]
    /// (left << 32 | right) -> (rank << 32 | merged id).
    private let pairTable: PairTable
    /// Token id of each single byte.
    private let byteToID: [Int32]
    /// Special token ids (e.g. `<|endoftext|>`), with their text.
    package let specialTokens: [(text: String, id: Int32)]
    private let cache = WordCache()
    /// How text is split before BPE (GPT-2's pattern unless built from checkpoint data).
    let preTokenizer: PreTokenizerKind

    package var vocabSize: Int { tokenOffsets.count - 1 }
    /// GPT-2 uses `<|endoftext|>` both to start and to end a document.
    package var bosID: Int32? { eosID }
    /// The id of `<|endoftext|>` (50256 for GPT-2), if the vocabulary has it.
    package let eosID: Int32?
    /// Number of merges.
    package var mergeCount: Int { merges.count }

    // MARK: - Loading

    /// Loads OpenAI's `encoder.json` + `vocab.bpe`, or Hugging Face's `vocab.json` + `merges.txt`.
    package init(encoderJSON: String, merges mergesPath: String) throws {
        let jsonBytes = try TokenizerLoader.readFile(encoderJSON)
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(jsonBytes))
        } catch {
            throw TokenizerError(file: encoderJSON, problem: "malformed JSON (\(error.localizedDescription))")
        }
        guard let dict = object as? [String: Any] else {
            throw TokenizerError(file: encoderJSON, problem: "expected a JSON object mapping token strings to ids")
        }
        guard !dict.isEmpty else { throw TokenizerError(file: encoderJSON, problem: "empty vocabulary") }
        let decoder = GPT2Tokenizer.unicodeToByte
        var tokens = [[UInt8]?](repeating: nil, count: dict.count)
        var idOfString: [String: UInt32] = [:]
        idOfString.reserveCapacity(dict.count)
        for (key, value) in dict {
            guard let number = value as? NSNumber, let id = Int(exactly: number.doubleValue) else {
                throw TokenizerError(file: encoderJSON, problem: "token \(key.debugDescription) has a non-integer id")
            }
            guard id >= 0, id < dict.count else {
                throw TokenizerError(file: encoderJSON, problem: "token \(key.debugDescription) has id \(id) outside 0..<\(dict.count) (ids must be dense)")
            }
            guard tokens[id] == nil else {
                throw TokenizerError(file: encoderJSON, problem: "id \(id) is used by more than one token")
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(key.unicodeScalars.count)
            for scalar in key.unicodeScalars {
                if let b = decoder[scalar.value] {
                    bytes.append(b)
                } else {
                    // Not a byte-level stand-in (e.g. an added special token): keep its UTF-8.
                    bytes.append(contentsOf: String(scalar).utf8)
                }
            }
            guard !bytes.isEmpty else { throw TokenizerError(file: encoderJSON, problem: "empty token string for id \(id)") }
            tokens[id] = bytes
            idOfString[key] = UInt32(id)
        }
        let mergeText = try TokenizerLoader.readFile(mergesPath)
        guard let text = String(validating: mergeText, as: UTF8.self) else {
            throw TokenizerError(file: mergesPath, problem: "not valid UTF-8")
        }
        var merges: [(UInt32, UInt32, UInt32)] = []
        merges.reserveCapacity(50_000)
        var lineNumber = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = line.hasSuffix("\r") ? line.dropLast() : line
            if line.isEmpty || (lineNumber == 1 && line.hasPrefix("#version")) { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw TokenizerError(file: mergesPath, problem: "line \(lineNumber): expected two tokens separated by one space, got \(String(line).debugDescription)")
            }
            guard let a = idOfString[String(parts[0])] else {
                throw TokenizerError(file: mergesPath, problem: "line \(lineNumber): merge references unknown token \(String(parts[0]).debugDescription)")
            }
            guard let b = idOfString[String(parts[1])] else {
                throw TokenizerError(file: mergesPath, problem: "line \(lineNumber): merge references unknown token \(String(parts[1]).debugDescription)")
            }
            guard let m = idOfString[String(parts[0]) + String(parts[1])] else {
                throw TokenizerError(file: mergesPath, problem: "line \(lineNumber): merge result \((String(parts[0]) + String(parts[1])).debugDescription) is not in the vocabulary")
            }
            merges.append((a, b, m))
        }
        var specials: [UInt32] = []
        if let eot = idOfString["<|endoftext|>"] { specials.append(eot) }
        try self.init(tokens: tokens.map { $0! }, merges: merges, specialIDs: specials, source: encoderJSON)
    }

    /// Builds from true token bytes, merges in rank order and special token ids.
    package init(tokens: [[UInt8]], merges: [(UInt32, UInt32, UInt32)], specialIDs: [UInt32], source: String) throws {
        try self.init(tokens: tokens, merges: merges, specialIDs: specialIDs, pre: .gpt2, source: source)
    }

    /// Builds from true token bytes with a chosen pre-tokenizer.
    init(tokens: [[UInt8]], merges: [(UInt32, UInt32, UInt32)], specialIDs: [UInt32], pre: PreTokenizerKind, source: String) throws {
        var data: [UInt8] = []
        data.reserveCapacity(tokens.reduce(0) { $0 + $1.count })
        var offsets: [Int32] = [0]
        offsets.reserveCapacity(tokens.count + 1)
        for t in tokens {
            guard !t.isEmpty, t.count <= Int(UInt16.max) else {
                throw TokenizerError(file: source, problem: "token \(offsets.count - 1) has invalid length \(t.count)")
            }
            data.append(contentsOf: t)
            offsets.append(Int32(data.count))
        }
        try self.init(tokenData: data, tokenOffsets: offsets, merges: merges, specialIDs: specialIDs, pre: pre, source: source)
    }

    private init(tokenData: [UInt8], tokenOffsets: [Int32], merges: [(UInt32, UInt32, UInt32)], specialIDs: [UInt32],
                 pre: PreTokenizerKind = .gpt2, source: String) throws {
        let n = tokenOffsets.count - 1
        guard n > 0, n < Int(Int32.max) else { throw TokenizerError(file: source, problem: "empty vocabulary") }
        var byteToID = [Int32](repeating: -1, count: 256)
        for i in (0..<n).reversed() where tokenOffsets[i + 1] - tokenOffsets[i] == 1 {
            byteToID[Int(tokenData[Int(tokenOffsets[i])])] = Int32(i)
        }
        // Checkpoint vocabularies (e.g. SmolLM2) may lack a few control bytes: like HF's BPE
        // without an unknown token, such bytes are dropped from the input.
        if pre == .gpt2, let missing = byteToID.firstIndex(of: -1) {
            throw TokenizerError(file: source, problem: "vocabulary has no token for byte 0x\(String(missing, radix: 16)) (byte-level BPE needs all 256)")
        }
        var table = PairTable(capacity: merges.count)
        try tokenData.withUnsafeBufferPointer { d in
            try tokenOffsets.withUnsafeBufferPointer { o in
                for (rank, (a, b, m)) in merges.enumerated() {
                    guard Int(a) < n, Int(b) < n, Int(m) < n else {
                        throw TokenizerError(file: source, problem: "merge \(rank) references token id outside 0..<\(n)")
                    }
                    let a0 = Int(o[Int(a)]), a1 = Int(o[Int(a) + 1])
                    let b0 = Int(o[Int(b)]), b1 = Int(o[Int(b) + 1])
                    let m0 = Int(o[Int(m)]), m1 = Int(o[Int(m) + 1])
                    let la = a1 - a0, lb = b1 - b0
                    guard m1 - m0 == la + lb,
                          memcmp(d.baseAddress! + m0, d.baseAddress! + a0, la) == 0,
                          memcmp(d.baseAddress! + m0 + la, d.baseAddress! + b0, lb) == 0 else {
                        throw TokenizerError(file: source, problem: "merge \(rank): token \(m) is not the concatenation of tokens \(a) and \(b)")
                    }
                    let key = UInt64(a) << 32 | UInt64(b)
                    table.insertIfAbsent(key, UInt64(rank) << 32 | UInt64(m))
                }
            }
        }
        var specials: [(text: String, id: Int32)] = []
        for id in specialIDs {
            guard Int(id) < n else { throw TokenizerError(file: source, problem: "special token id \(id) outside 0..<\(n)") }
            let bytes = Array(tokenData[Int(tokenOffsets[Int(id)])..<Int(tokenOffsets[Int(id) + 1])])
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw TokenizerError(file: source, problem: "special token \(id) is not valid UTF-8")
            }
            specials.append((text, Int32(id)))
        }
        self.tokenData = tokenData
        self.tokenOffsets = tokenOffsets
        self.merges = merges
        self.pairTable = table
        self.byteToID = byteToID
        self.specialTokens = specials
        self.preTokenizer = pre
        self.eosID = specials.first(where: { $0.text == "<|endoftext|>" })?.id
    }

    // MARK: - Serialization

    /// First 8 bytes of a serialized GPT-2 tokenizer.
    package static let serializationMagic: [UInt8] = Array("QLMBPE\u{0}\u{1}".utf8)

    /// A compact binary form for embedding in model files. All integers little-endian:
    ///
    ///     8 bytes   magic "QLMBPE\0\x01" (the last byte is the format version, 1)
    ///     u32       vocabulary count V
    ///     V times   u16 length L (1...65535), then L bytes: the token's true bytes
    ///     u32       merge count M
    ///     M times   u32 left id, u32 right id, u32 merged id, in rank order (rank 0 first);
    ///               bytes(merged) must equal bytes(left) + bytes(right)
    ///     u32       special token count S
    ///     S times   u32 token id (e.g. 50256 for <|endoftext|>)
    ///     u64       checksum of every byte before it: h = 0xcbf29ce484222325, then for each
    ///               little-endian u64 word w (the last one zero-padded) h = (h ^ w) * 0x100000001b3
    ///
    /// The merged id is stored so loading needs no byte-string hashing (< 10 ms for GPT-2);
    /// the checksum makes any single corrupted byte a load error.
    package func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(tokenData.count + 2 * vocabSize + 12 * merges.count + 64)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        out.append(contentsOf: GPT2Tokenizer.serializationMagic)
        u32(UInt32(vocabSize))
        for i in 0..<vocabSize {
            let s = Int(tokenOffsets[i]), e = Int(tokenOffsets[i + 1])
            withUnsafeBytes(of: UInt16(e - s).littleEndian) { out.append(contentsOf: $0) }
            out.append(contentsOf: tokenData[s..<e])
        }
        u32(UInt32(merges.count))
        for (a, b, m) in merges { u32(a); u32(b); u32(m) }
        u32(UInt32(specialTokens.count))
        for s in specialTokens { u32(UInt32(s.id)) }
        withUnsafeBytes(of: GPT2Tokenizer.checksum(out[...]).littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// Loads the form written by `serialized()`. Any truncation or corruption throws.
    package init(serialized blob: [UInt8], source: String) throws {
        func fail(_ problem: String) -> TokenizerError { TokenizerError(file: source, problem: "serialized tokenizer: \(problem)") }
        let magic = GPT2Tokenizer.serializationMagic
        guard blob.count >= magic.count + 16 else { throw fail("too short (\(blob.count) bytes)") }
        guard blob.starts(with: magic.prefix(7)) else { throw fail("bad magic (not a serialized GPT-2 tokenizer)") }
        guard blob[7] == magic[7] else { throw fail("unsupported format version \(blob[7])") }
        let body = blob[0..<(blob.count - 8)]
        var pos = magic.count
        func readU32() throws -> UInt32 {
            guard pos + 4 <= body.count else { throw fail("truncated at byte \(pos)") }
            let v = UInt32(blob[pos]) | UInt32(blob[pos + 1]) << 8 | UInt32(blob[pos + 2]) << 16 | UInt32(blob[pos + 3]) << 24
            pos += 4
            return v
        }
        var stored: UInt64 = 0
        for k in 0..<8 { stored |= UInt64(blob[blob.count - 8 + k]) << (8 * UInt64(k)) }
        guard GPT2Tokenizer.checksum(body) == stored else { throw fail("checksum mismatch (truncated or corrupted)") }
        let vocab = Int(try readU32())
        guard vocab > 0, vocab <= (body.count - pos) / 3 else { throw fail("implausible vocabulary count \(vocab)") }
        var data: [UInt8] = []
        data.reserveCapacity(body.count - pos)
        var offsets = [Int32](repeating: 0, count: vocab + 1)
        try blob.withUnsafeBufferPointer { b in
            for i in 0..<vocab {
                guard pos + 2 <= body.count else { throw fail("truncated in token \(i)") }
                let len = Int(b[pos]) | Int(b[pos + 1]) << 8
                pos += 2
                guard len > 0 else { throw fail("token \(i) has length 0") }
                guard pos + len <= body.count else { throw fail("truncated in token \(i)") }
                data.append(contentsOf: UnsafeBufferPointer(rebasing: b[pos..<(pos + len)]))
                pos += len
                offsets[i + 1] = Int32(data.count)
            }
        }
        let mergeCount = Int(try readU32())
        guard mergeCount <= (body.count - pos) / 12 else { throw fail("merge count \(mergeCount) exceeds the data") }
        var merges: [(UInt32, UInt32, UInt32)] = []
        merges.reserveCapacity(mergeCount)
        for _ in 0..<mergeCount {
            let a = try readU32(), b = try readU32(), m = try readU32()
            merges.append((a, b, m))
        }
        let specialCount = Int(try readU32())
        guard specialCount <= (body.count - pos) / 4 else { throw fail("special token count \(specialCount) exceeds the data") }
        var specials: [UInt32] = []
        for _ in 0..<specialCount { specials.append(try readU32()) }
        guard pos == body.count else { throw fail("\(body.count - pos) unexpected trailing bytes") }
        try self.init(tokenData: data, tokenOffsets: offsets, merges: merges, specialIDs: specials, source: source)
    }

    /// FNV-1a over 64-bit words: each step is a bijection of h, so any single changed byte
    /// changes the result.
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.withUnsafeBufferPointer { p in
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            let words = p.count / 8
            let raw = UnsafeRawBufferPointer(p)
            for i in 0..<words {
                let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                h = (h ^ w) &* 0x100_0000_01b3
            }
            if p.count % 8 != 0 {
                var w: UInt64 = 0
                for k in 0..<(p.count % 8) { w |= UInt64(p[8 * words + k]) << (8 * UInt64(k)) }
                h = (h ^ w) &* 0x100_0000_01b3
            }
            return h
        }
    }

    // MARK: - Byte <-> unicode (OpenAI bytes_to_unicode)

    /// OpenAI's `bytes_to_unicode()`: printable Latin-1 bytes map to themselves, the other 68
    /// bytes to U+0100 upward, in byte order.
    package static let byteToUnicode: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(256 + n)!
                n += 1
            }
        }
        return table
    }()

    static let unicodeToByte: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, s) in byteToUnicode.enumerated() { d[s.value] = UInt8(b) }
        return d
    }()

    /// A token as OpenAI's printable string (the key it has in encoder.json).
    package func tokenString(_ id: Int32) -> String {
        var s = String.UnicodeScalarView()
        for b in tokenBytes(id) { s.append(GPT2Tokenizer.byteToUnicode[Int(b)]) }
        return String(s)
    }

    // MARK: - Decoding

    package func tokenBytes(_ id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < vocabSize else { return [] }
        return Array(tokenData[Int(tokenOffsets[Int(id)])..<Int(tokenOffsets[Int(id) + 1])])
    }

    package func decode(_ ids: [Int32]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for id in ids where id >= 0 && Int(id) < vocabSize {
            out.append(contentsOf: tokenData[Int(tokenOffsets[Int(id)])..<Int(tokenOffsets[Int(id) + 1])])
        }
        return out
    }

    // MARK: - Encoding

    /// Encodes treating special-token text as ordinary text (tiktoken `encode_ordinary`).
    package func encode(_ text: String) -> [Int32] {
        var out: [Int32] = []
        var utf8 = Array(text.utf8)
        encodeOrdinary(&utf8, into: &out)
        return out
    }

    /// Encodes; when `allowSpecial` is true, literal special-token strings such as
    /// `<|endoftext|>` become their ids (tiktoken `encode(allowed_special="all")`).
    package func encode(_ text: String, allowSpecial: Bool) -> [Int32] {
        guard allowSpecial, !specialTokens.isEmpty else { return encode(text) }
        let bytes = Array(text.utf8)
        let specials = specialTokens.map { (Array($0.text.utf8), $0.id) }
        var out: [Int32] = []
        var segmentStart = 0
        var i = 0
        while i < bytes.count {
            var matched: ([UInt8], Int32)? = nil
            if bytes[i] == specials[0].0.first || specials.count > 1 {
                for s in specials where i + s.0.count <= bytes.count && bytes[i..<(i + s.0.count)].elementsEqual(s.0) {
                    if matched == nil || s.0.count > matched!.0.count { matched = s }
                }
            }
            if let (sb, id) = matched {
                var segment = Array(bytes[segmentStart..<i])
                encodeOrdinary(&segment, into: &out)
                out.append(id)
                i += sb.count
                segmentStart = i
            } else {
                i += 1
            }
        }
        var segment = Array(bytes[segmentStart..<bytes.count])
        encodeOrdinary(&segment, into: &out)
        return out
    }

    func encodeOrdinary(_ bytes: inout [UInt8], into out: inout [Int32]) {
        if bytes.isEmpty { return }
        out.reserveCapacity(out.count + bytes.count / 3)
        var local: [[UInt8]: [Int32]] = [:]
        var scratch = BPEScratch()
        bytes.withUnsafeBufferPointer { buf in
            PreTokenizers.split(buf, preTokenizer) { start, end in
                let piece = UnsafeBufferPointer(rebasing: buf[start..<end])
                if piece.count == 1 {
                    let id = byteToID[Int(piece[0])]
                    if id >= 0 { out.append(id) }
                    return
                }
                let key = Array(piece)
                if let hit = local[key] {
                    out.append(contentsOf: hit)
                    return
                }
                let ids: [Int32]
                if let shared = cache.get(key) {
                    ids = shared
                } else {
                    ids = bpe(piece, &scratch)
                    cache.put(key, ids)
                }
                local[key] = ids
                out.append(contentsOf: ids)
            }
        }
    }

    private struct BPEScratch {
        var ids: [UInt32] = []
        var ranks: [UInt64] = []
    }

    /// BPE of one pre-token: repeatedly merge the adjacent pair with the lowest merge rank
    /// (leftmost first on equal ranks).
    private func bpe(_ piece: UnsafeBufferPointer<UInt8>, _ s: inout BPEScratch) -> [Int32] {
        if piece.count > 128 { return bpeLong(piece) }
        let none = UInt64.max
        s.ids.removeAll(keepingCapacity: true)
        s.ranks.removeAll(keepingCapacity: true)
        for b in piece where byteToID[Int(b)] >= 0 { s.ids.append(UInt32(byteToID[Int(b)])) }
        if s.ids.count < 2 { return s.ids.map { Int32(bitPattern: $0) } }
        func lookup(_ a: UInt32, _ b: UInt32) -> UInt64 {
            pairTable.get(UInt64(a) << 32 | UInt64(b)) ?? none
        }
        for i in 0..<(s.ids.count - 1) { s.ranks.append(lookup(s.ids[i], s.ids[i + 1])) }
        while s.ids.count > 1 {
            var best = none
            var bestIndex = -1
            for i in 0..<s.ranks.count where s.ranks[i] < best {
                best = s.ranks[i]
                bestIndex = i
            }
            if bestIndex < 0 { break }
            s.ids[bestIndex] = UInt32(truncatingIfNeeded: best)
            s.ids.remove(at: bestIndex + 1)
            s.ranks.remove(at: bestIndex)
            if bestIndex > 0 { s.ranks[bestIndex - 1] = lookup(s.ids[bestIndex - 1], s.ids[bestIndex]) }
            if bestIndex < s.ranks.count { s.ranks[bestIndex] = lookup(s.ids[bestIndex], s.ids[bestIndex + 1]) }
        }
        return s.ids.map { Int32(bitPattern: $0) }
    }

    /// The same merges in O(n log n) for long pieces: a linked list of parts and a min-heap
    /// of candidate pairs keyed by (rank, position of the left part), with stale entries
    /// detected by per-part version numbers. Gives exactly the order of the linear scan.
    private func bpeLong(_ piece: UnsafeBufferPointer<UInt8>) -> [Int32] {
        var ids = piece.compactMap { byteToID[Int($0)] >= 0 ? UInt32(byteToID[Int($0)]) : nil }
        let n = ids.count
        if n < 2 { return ids.map { Int32(bitPattern: $0) } }
        var next = (0..<n).map { $0 + 1 < n ? Int32($0 + 1) : -1 }
        var prev = (0..<n).map { Int32($0 - 1) }
        var version = [UInt32](repeating: 0, count: n)
        var heap = MinHeap()
        func push(_ left: Int) {
            let right = Int(next[left])
            guard right >= 0, let v = pairTable.get(UInt64(ids[left]) << 32 | UInt64(ids[right])) else { return }
            heap.push(MergeCandidate(key: (v >> 32) << 32 | UInt64(left), leftVersion: version[left], rightVersion: version[right]))
        }
        for i in 0..<(n - 1) { push(i) }
        while let e = heap.pop() {
            let left = Int(e.key & 0xFFFF_FFFF)
            let right = Int(next[left])
            guard right >= 0, version[left] == e.leftVersion, version[right] == e.rightVersion else { continue }
            // Versions match, so the pair is unchanged since it was pushed.
            let v = pairTable.get(UInt64(ids[left]) << 32 | UInt64(ids[right]))!
            ids[left] = UInt32(truncatingIfNeeded: v)
            version[left] &+= 1
            version[right] &+= 1          // the right part is gone
            let after = next[right]
            next[left] = after
            if after >= 0 { prev[Int(after)] = Int32(left) }
            if prev[left] >= 0 { push(Int(prev[left])) }
            push(left)
        }
        var out: [Int32] = []
        var i = 0
        while i >= 0 {
            out.append(Int32(bitPattern: ids[i]))
            i = Int(next[i])
        }
        return out
    }

    private struct MergeCandidate: HeapKeyed { var key: UInt64; var leftVersion: UInt32; var rightVersion: UInt32 }
    private typealias MinHeap = KeyedMinHeap<MergeCandidate>

    // MARK: - Pre-tokenization

    /// Character classes of the GPT-2 pattern.
    enum CharClass: UInt8 {
        case other = 0       // [^\s\p{L}\p{N}]
        case letter = 1      // \p{L}
        case number = 2      // \p{N}
        case space = 3       // U+0020 (also \s)
        case whitespace = 4  // \s other than U+0020
    }

    static let asciiClasses: [CharClass] = (0..<128).map { classify(UInt32($0)) }

    /// \p{L}: general category L*; \p{N}: N*; \s: the Unicode White_Space property, as in
    /// the Rust `regex` crate that tiktoken uses (includes U+0085, U+00A0, U+1680,
    /// U+2000–200A, U+2028, U+2029, U+202F, U+205F, U+3000; excludes U+001C–001F).
    static func classify(_ v: UInt32) -> CharClass {
        if v == 0x20 { return .space }
        guard let scalar = Unicode.Scalar(v) else { return .other }
        let p = scalar.properties
        if p.isWhitespace { return .whitespace }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return .other
        }
    }

    /// Splits valid UTF-8 into the byte ranges the GPT-2 regex would match, in order.
    /// `emit(start, end)` receives half-open byte ranges that cover the input exactly.
    package static func pretokenize(_ bytes: UnsafeBufferPointer<UInt8>, _ emit: (Int, Int) -> Void) {
        PreTokenizers.scan(bytes, emit) { classes, values, starts in gpt2Rules(classes, values, starts, emit) }
    }

    /// The GPT-2 pattern over decoded scalars (class, value, byte start; `starts` has one more
    /// entry, the end).
    static func gpt2Rules(_ classes: [CharClass], _ values: [UInt32], _ starts: [Int32], _ emit: (Int, Int) -> Void) {
        let count = classes.count
        func at(_ k: Int) -> UInt32 { k < count ? values[k] : 0 }
        var s = 0
        while s < count {
            let c = classes[s]
            var e = s + 1
            // 's 't 're 've 'm 'll 'd (lowercase only).
            if values[s] == 0x27 {
                let n1 = at(s + 1), n2 = at(s + 2)
                if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 {           // s t m d
                    emit(Int(starts[s]), Int(starts[s + 2])); s += 2; continue
                }
                if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65) || (n1 == 0x6C && n2 == 0x6C) { // re ve ll
                    emit(Int(starts[s]), Int(starts[s + 3])); s += 3; continue
                }
            }
            switch c {
            case .letter, .number, .other:
                while e < count && classes[e] == c { e += 1 }
            case .space, .whitespace:
                // " ?X+" when a single space precedes a letter/number/other run.
                if c == .space && e < count && classes[e] != .space && classes[e] != .whitespace {
                    let d = classes[e]
                    e += 1
                    while e < count && classes[e] == d { e += 1 }
                } else {
                    while e < count && (classes[e] == .space || classes[e] == .whitespace) { e += 1 }
                    // \s+(?!\S): leave the last whitespace for the next token if a non-space follows.
                    if e < count && e - s > 1 { e -= 1 }
                }
            }
            emit(Int(starts[s]), Int(starts[e]))
            s = e
        }
    }
}

/// Open-addressing hash map from a (left, right) id pair to (rank << 32 | merged id).
struct PairTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private let shift: UInt64
    private static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        var bits: UInt64 = 4
        while size < capacity * 2 { size *= 2; bits += 1 }
        keys = [UInt64](repeating: PairTable.empty, count: size)
        values = [UInt64](repeating: 0, count: size)
        mask = size - 1
        shift = 64 - bits
    }

    @inline(__always) private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    mutating func insertIfAbsent(_ key: UInt64, _ value: UInt64) {
        var i = slot(key)
        while true {
            if keys[i] == PairTable.empty { keys[i] = key; values[i] = value; return }
            if keys[i] == key { return }
            i = (i + 1) & mask
        }
    }

    @inline(__always) func get(_ key: UInt64) -> UInt64? {
        keys.withUnsafeBufferPointer { k in
            var i = slot(key)
            while true {
                let found = k[i]
                if found == key { return values[i] }
                if found == PairTable.empty { return nil }
                i = (i + 1) & mask
            }
        }
    }
}

/// Thread-safe per-word BPE cache shared by copies of a tokenizer.
final class WordCache: @unchecked Sendable {
    private var table: [[UInt8]: [Int32]] = [:]
    private let lock = NSLock()
    private let limit = 200_000

    func get(_ key: [UInt8]) -> [Int32]? {
        lock.lock(); defer { lock.unlock() }
        return table[key]
    }

    func put(_ key: [UInt8], _ value: [Int32]) {
        lock.lock(); defer { lock.unlock() }
        if table.count >= limit { table.removeAll(keepingCapacity: true) }
        table[key] = value
    }
}
