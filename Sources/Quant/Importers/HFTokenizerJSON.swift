import Foundation

/// Reads a Hugging Face `tokenizers` file (tokenizer.json) with tokenizer_config.json,
/// chat_template.jinja and generation_config.json beside it, as the `TokenizerData` QuantLM's
/// own tokenizers are built from:
///
/// - model `BPE` with a `ByteLevel` pre-tokenizer (GPT-2, SmolLM, Llama 3, Qwen 2): model "gpt2";
///   the pre-tokenizer is recognised by its parts (ByteLevel with its regex: "gpt2";
///   Digits(individual) then ByteLevel: "smollm"; a Split on Llama 3's or Qwen 2's pattern then
///   ByteLevel without regex: "llama3", "qwen2"); an NFC normalizer is kept.
/// - model `BPE` over ▁-escaped text with byte fallback (Gemma, Llama 2: a Replace(" ", "▁")
///   normalizer, or a Metaspace pre-tokenizer): model "llama" (SentencePiece). A piece's score is
///   minus the rank of the merge that makes it, so merging the best-scored piece first is
///   merging the lowest-ranked pair first.
/// - added tokens: special ones are control tokens (type 3), the others user-defined (type 4);
///   `<0xXX>` pieces of a byte-fallback vocabulary are byte tokens (6), the unk token type 2.
///
/// Anything else (Unigram, WordPiece, another pre-tokenizer or normalizer) is refused naming the
/// file and the part, never approximated.
package enum HFTokenizerJSON {
    package static func read(directory dir: URL) throws -> (data: TokenizerData, files: [URL]) {
        let url = dir.appendingPathComponent("tokenizer.json")
        let file = url.path
        // Mapped, not read: the scanner reads the vocabulary and merges in place (33 MB for Gemma 3).
        guard let map = try? MappedFile(url) else { throw QuantError(file, "cannot read tokenizer.json") }
        var files = [url]
        var d = try withExtendedLifetime(map) { try parse(map.bytes.bindMemory(to: UInt8.self), file: file) }
        // tokenizer_config.json: add_bos_token / add_eos_token, the bos / eos token text, the chat template.
        let configURL = dir.appendingPathComponent("tokenizer_config.json")
        if let cb = FileManager.default.contents(atPath: configURL.path) {
            files.append(configURL)
            guard let cfg = (try? JSONSerialization.jsonObject(with: cb)) as? [String: Any] else {
                throw QuantError(configURL, "tokenizer_config.json is not a JSON object")
            }
            try applyConfig(cfg, to: &d, file: configURL.path)
        }
        let templateURL = dir.appendingPathComponent("chat_template.jinja")
        if let tb = FileManager.default.contents(atPath: templateURL.path) {
            guard let t = String(data: tb, encoding: .utf8) else { throw QuantError(templateURL, "chat_template.jinja is not UTF-8 text") }
            d.chatTemplate = t
            files.append(templateURL)
        }
        // generation_config.json's eos (the token generation stops at), else config.json's.
        for name in ["generation_config.json", "config.json"] {
            let u = dir.appendingPathComponent(name)
            guard let gb = FileManager.default.contents(atPath: u.path) else { continue }
            guard let g = (try? JSONSerialization.jsonObject(with: gb)) as? [String: Any] else {
                throw QuantError(u, "\(name) is not a JSON object")
            }
            if name == "generation_config.json" { files.append(u) }
            if d.eos == nil || name == "generation_config.json", let e = try tokenID(g["eos_token_id"], "eos_token_id", d, file: u.path) {
                d.eos = e
            }
            if d.bos == nil, let b = try tokenID(g["bos_token_id"], "bos_token_id", d, file: u.path) { d.bos = b }
            if name == "generation_config.json" { break }
        }
        return (d, files)
    }

    /// An id (or the first of a list of ids) naming a token of `d`.
    static func tokenID(_ v: Any?, _ key: String, _ d: TokenizerData, file: String) throws -> Int? {
        guard let v, !(v is NSNull) else { return nil }
        let n: NSNumber?
        if let a = v as? [Any] { n = a.first as? NSNumber } else { n = v as? NSNumber }
        guard let n, n.doubleValue.rounded() == n.doubleValue, n.intValue >= 0, n.intValue < d.tokens.count else {
            throw QuantError(file, "\(key) \(v) is not a token id (vocabulary of \(d.tokens.count))")
        }
        return n.intValue
    }

    static func applyConfig(_ cfg: [String: Any], to d: inout TokenizerData, file: String) throws {
        for (key, target) in [("add_bos_token", \TokenizerData.addBos), ("add_eos_token", \TokenizerData.addEos)] {
            guard let v = cfg[key], !(v is NSNull) else { continue }
            guard let b = v as? Bool else { throw QuantError(file, "\(key) must be true or false") }
            d[keyPath: target] = b
        }
        func tokenText(_ v: Any?) -> String? {
            if let s = v as? String { return s }
            return (v as? [String: Any])?["content"] as? String
        }
        for (key, target) in [("bos_token", \TokenizerData.bos), ("eos_token", \TokenizerData.eos)] {
            guard let text = tokenText(cfg[key]) else { continue }
            guard let id = d.tokens.firstIndex(of: text) else { throw QuantError(file, "\(key) '\(text)' is not a token of tokenizer.json") }
            d[keyPath: target] = id
        }
        if let t = cfg["chat_template"], !(t is NSNull) {
            if let s = t as? String { d.chatTemplate = s }
            else if let list = t as? [[String: Any]], let def = list.first(where: { $0["name"] as? String == "default" }),
                    let s = def["template"] as? String { d.chatTemplate = s }
            else { throw QuantError(file, "chat_template must be a string (or a list with a \"default\" entry)") }
        }
    }

    /// tokenizer.json's bytes → TokenizerData (without tokenizer_config's settings).
    package static func parse(_ bytes: Data, file: String) throws -> TokenizerData {
        try bytes.withUnsafeBytes { try parse($0.bindMemory(to: UInt8.self), file: file) }
    }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, file: String) throws -> TokenizerData {
        // The vocabulary and the merges (nearly all of the file: 33 MB for Gemma 3) are scanned
        // once, in place; Foundation parses the rest with them blanked out (it takes ~0.16 s per MB).
        var sc = Scanner(b: bytes, file: file)
        let keys = sc.lastValues([("vocab", 0x7B), ("merges", 0x5B)])
        let vocabPairs = try scanVocab(&sc, at: keys[0])
        var pairs = try scanMerges(&sc, at: keys[1])
        var blanks: [(Range<Int>, [UInt8])] = []
        if let r = vocabPairs.range { blanks.append((r, Array("{}".utf8))) }
        if let r = pairs.range { blanks.append((r, Array("[]".utf8))) }
        blanks.sort { $0.0.lowerBound < $1.0.lowerBound }
        var small: [UInt8] = []
        if zip(blanks, blanks.dropFirst()).allSatisfy({ $0.0.upperBound <= $1.0.lowerBound }) {
            // The bytes around the blanked ranges, copied once (about 1 MB of Gemma 3's 33).
            var at = 0
            for (r, blank) in blanks {
                small.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[at ..< r.lowerBound]))
                small += blank
                at = r.upperBound
            }
            small.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[at...]))
        } else {
            small = [UInt8](bytes)
            for (r, blank) in blanks.reversed() where r.upperBound <= small.count { small.replaceSubrange(r, with: blank) }
        }
        guard let root = (try? JSONSerialization.jsonObject(with: Data(small))) as? [String: Any] else {
            throw QuantError(file, "tokenizer.json is not a JSON object")
        }
        guard let model = root["model"] as? [String: Any] else { throw QuantError(file, "tokenizer.json lacks its model object") }
        let type = model["type"] as? String ?? (model["merges"] != nil ? "BPE" : "?")
        guard type == "BPE" else {
            throw QuantError(file, "tokenizer.json model type '\(type)' is not supported (BPE, byte-level or SentencePiece-style, is)")
        }
        guard model["vocab"] is [String: Any], vocabPairs.range != nil else { throw QuantError(file, "tokenizer.json model.vocab must be an object") }
        // Token strings by id: the vocabulary plus the added tokens. The vocabulary is scanned from
        // the bytes: Swift's String-keyed dictionaries merge canonically equivalent keys (Gemma's
        // vocabulary holds 434 pairs such as য় / য় that are different tokens).
        // By id in an array (ids are < 2^22: Scanner.int and the added-token check bound them).
        var byID: [String?] = []
        func put(_ id: Int, _ s: String) {
            if id >= byID.count { byID.append(contentsOf: repeatElement(nil, count: id + 1 - byID.count)) }
            byID[id] = s
        }
        byID.reserveCapacity(vocabPairs.pairs.count)
        for (s, id) in vocabPairs.pairs {
            if id < byID.count, let other = byID[id], other.utf8.elementsEqual(s.utf8) == false {
                throw QuantError(file, "tokenizer.json vocab gives id \(id) to two tokens")
            }
            put(id, s)
        }
        var added: [Int: Bool] = [:]     // id → special
        for a in root["added_tokens"] as? [Any] ?? [] {
            guard let o = a as? [String: Any], let n = o["id"] as? NSNumber, let content = o["content"] as? String,
                  n.intValue >= 0, n.intValue < 1 << 22, !content.isEmpty else {
                throw QuantError(file, "tokenizer.json added_tokens entry \(a) needs an id and a non-empty content")
            }
            if n.intValue < byID.count, let other = byID[n.intValue], !other.utf8.elementsEqual(content.utf8) {
                throw QuantError(file, "tokenizer.json added token \(n.intValue) \(content.debugDescription) has the id of \(other.debugDescription)")
            }
            put(n.intValue, content)
            added[n.intValue] = (o["special"] as? Bool) ?? false
        }
        guard !byID.isEmpty else { throw QuantError(file, "tokenizer.json has an empty vocabulary") }
        let count = byID.count
        if let gap = byID.firstIndex(where: { $0 == nil }) {
            throw QuantError(file, "tokenizer.json has no token with id \(gap) (ids must run 0..<\(count))")
        }
        let tokens = byID.map { $0! }
        if let m = model["merges"], !(m is NSNull), !(m is [Any]) { throw QuantError(file, "tokenizer.json model.merges must be a list") }
        let byteFallback = model["byte_fallback"] as? Bool ?? false
        let unk = (model["unk_token"] as? String).flatMap { u in tokens.firstIndex { $0.utf8.elementsEqual(u.utf8) } }
        var types = [Int32](repeating: 1, count: count)
        for (id, special) in added { types[id] = special ? 3 : 4 }

        let pre = root["pre_tokenizer"] as? [String: Any]
        let normalizer = root["normalizer"] as? [String: Any]
        if isByteLevel(pre) {
            let normalize = try byteLevelNormalizer(normalizer, file: file)
            let bos = try templateBos(root, tokens, file: file)
            var d = TokenizerData(model: "gpt2", pre: try byteLevelPre(pre!, file: file), tokens: tokens, tokenTypes: types,
                                  merges: (0 ..< pairs.count).map(pairs.line), bos: bos?.id, unk: unk, addBos: bos?.add, source: file)
            d.normalizer = normalize
            return d
        }
        // SentencePiece-style: ▁ for spaces, by a normalizer or a Metaspace pre-tokenizer.
        let prefix = try metaspacePrefix(normalizer: normalizer, pre: pre, file: file)
        if let unk { types[unk] = 2 }
        if byteFallback {
            for (i, t) in tokens.enumerated() where types[i] == 1 && t.utf8.first == 0x3C && t.count == 6 && t.hasPrefix("<0x") && t.hasSuffix(">") { types[i] = 6 }
        }
        // score(piece) = -rank of the merge that makes it; pieces no merge makes score below every merge.
        var scores = [Float](repeating: -Float(pairs.count + 1), count: count)
        // Token ids by their exact bytes (the first id of a repeated token wins); a merge looks up
        // its two halves' bytes, copied into one reused buffer. Every buffer ends in a spare byte,
        // so no slice of it (an empty token or merge included) has a nil base address.
        var data: [UInt8] = [], offsets: [Int32] = [0]
        for t in tokens { data += t.utf8; offsets.append(Int32(data.count)) }
        data.append(0)
        var idOf = PieceTable(capacity: count)
        data.withUnsafeBufferPointer { d in
            for i in 0 ..< count {
                _ = idOf.insert(UnsafeBufferPointer(rebasing: d[Int(offsets[i]) ..< Int(offsets[i + 1])]), id: Int32(i), data: d, offsets: offsets)
            }
        }
        // A merge's two halves lie back to back in `pairs.bytes`: its token is looked up in place.
        // Only if that misses are the halves decoded as Strings (which repairs invalid UTF-8, as
        // the tokens were) and looked up again.
        var joined: [UInt8] = []
        pairs.bytes.append(0)
        try data.withUnsafeBufferPointer { d in
            try pairs.bytes.withUnsafeBufferPointer { mb in
                for rank in (0 ..< pairs.count).reversed() {
                    var id = idOf.get(UnsafeBufferPointer(rebasing: mb[pairs.ends[rank] ..< pairs.ends[rank + 1]]), data: d, offsets: offsets)
                    if id == nil {
                        joined.removeAll(keepingCapacity: true)
                        joined += pairs.left(rank).utf8; joined += pairs.right(rank).utf8
                        let n = joined.count
                        joined.append(0)
                        id = joined.withUnsafeBufferPointer { j in idOf.get(UnsafeBufferPointer(rebasing: j[0 ..< n]), data: d, offsets: offsets) }
                    }
                    guard let id else {
                        throw QuantError(file, "tokenizer.json merge \(rank) \(pairs.line(rank).debugDescription) does not make a token of the vocabulary")
                    }
                    scores[Int(id)] = -Float(rank)
                }
            }
        }
        for (i, t) in types.enumerated() where t != 1 { scores[i] = 0 }
        let bos = try templateBos(root, tokens, file: file)
        return TokenizerData(model: "llama", tokens: tokens, scores: scores, tokenTypes: types, bos: bos?.id, unk: unk,
                             addBos: bos?.add, addSpacePrefix: prefix, source: file)
    }

    /// A small scanner over the JSON bytes as written, for the vocabulary and the merges:
    /// Swift's String-keyed dictionaries merge canonically equivalent keys (Gemma 3's vocabulary
    /// holds 434 pairs such as য় / য় that are different tokens), and Foundation's JSON parser
    /// drops a string's leading U+FEFF (Gemma 3 has the tokens "\u{FEFF}" and "\u{FEFF}\u{FEFF}").
    /// It reads the file's bytes in place (a map of the file), never a copy of them.
    struct Scanner {
        let b: UnsafeBufferPointer<UInt8>
        let file: String
        var p = 0

        func fail() -> QuantError { QuantError(file, "tokenizer.json is malformed near byte \(p)") }
        mutating func ws() { while p < b.count, b[p] == 0x20 || b[p] == 0x0A || b[p] == 0x0D || b[p] == 0x09 { p += 1 } }
        mutating func expect(_ c: UInt8) throws { ws(); guard p < b.count, b[p] == c else { throw fail() }; p += 1 }
        mutating func peek(_ c: UInt8) -> Bool { ws(); return p < b.count && b[p] == c }

        /// For each (key, open): the position just after the value start `"key": <open>`, the last
        /// such in the file; all keys in one pass (memchr from quote to quote).
        func lastValues(_ keys: [(key: String, open: UInt8)]) -> [Int?] {
            let ks = keys.map { (Array("\"\($0.key)\"".utf8), $0.open) }
            var found = [Int?](repeating: nil, count: keys.count)
            guard let base = b.baseAddress else { return found }
            var i = 0
            while i < b.count, let hit = memchr(base + i, 0x22, b.count - i) {
                let at = UnsafeRawPointer(base).distance(to: UnsafeRawPointer(hit))
                for (j, (k, open)) in ks.enumerated() where at + k.count <= b.count && base[at + 1] == k[1] && memcmp(base + at, k, k.count) == 0 {
                    var s = Scanner(b: b, file: file, p: at + k.count)
                    if (try? s.expect(0x3A)) != nil, s.peek(open) { found[j] = s.p + 1 }
                }
                i = at + 1
            }
            return found
        }

        mutating func hex4() throws -> UInt32 {
            guard p + 4 <= b.count, let v = UInt32(String(decoding: UnsafeBufferPointer(rebasing: b[p ..< p + 4]), as: UTF8.self), radix: 16) else {
                throw fail()
            }
            p += 4
            return v
        }

        mutating func string() throws -> String {
            try expect(0x22)
            // Most strings hold no escape: decode them straight from the bytes.
            let start = p
            while p < b.count, b[p] != 0x22, b[p] != 0x5C { p += 1 }
            if p < b.count, b[p] == 0x22 {
                p += 1
                return String(decoding: UnsafeBufferPointer(rebasing: b[start ..< p - 1]), as: UTF8.self)
            }
            p = start - 1
            var s: [UInt8] = []
            try string(into: &s)
            return String(decoding: s, as: UTF8.self)
        }

        /// The next string's bytes, unescaped, appended to `out` (not checked to be UTF-8).
        mutating func string(into out: inout [UInt8]) throws {
            try expect(0x22)
            while true {
                let start = p
                while p < b.count, b[p] != 0x22, b[p] != 0x5C { p += 1 }
                if p > start { out.append(contentsOf: UnsafeBufferPointer(rebasing: b[start ..< p])) }
                guard p < b.count else { throw fail() }
                let c = b[p]; p += 1
                if c == 0x22 { return }
                guard p < b.count else { throw fail() }
                let e = b[p]; p += 1
                switch e {
                case 0x22, 0x5C, 0x2F: out.append(e)
                case 0x62: out.append(0x08)
                case 0x66: out.append(0x0C)
                case 0x6E: out.append(0x0A)
                case 0x72: out.append(0x0D)
                case 0x74: out.append(0x09)
                case 0x75:
                    var v = try hex4()
                    if v >= 0xD800, v < 0xDC00, p + 6 <= b.count, b[p] == 0x5C, b[p + 1] == 0x75 {
                        p += 2
                        let lo = try hex4()
                        guard lo >= 0xDC00, lo < 0xE000 else { throw fail() }
                        v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(v) else { throw fail() }
                    UTF8.encode(u) { out.append($0) }
                default: throw fail()
                }
            }
        }

        mutating func int() throws -> Int {
            ws()
            var n = 0, digits = 0
            while p < b.count, b[p] >= 0x30, b[p] <= 0x39, digits < 8 { n = n * 10 + Int(b[p] - 0x30); p += 1; digits += 1 }
            guard digits > 0, n < 1 << 22 else { throw QuantError(file, "tokenizer.json: a vocabulary id near byte \(p) is not a token id (0..<4194304)") }
            return n
        }
    }

    /// The (token, id) pairs of model.vocab, as written (`start`: just after its `{`).
    static func scanVocab(_ sc: inout Scanner, at start: Int?) throws -> (pairs: [(String, Int)], range: Range<Int>?) {
        guard let start else { return ([], nil) }
        sc.p = start
        var out: [(String, Int)] = []
        if sc.peek(0x7D) { sc.p += 1; return (out, start - 1 ..< sc.p) }
        while true {
            let s = try sc.string()
            try sc.expect(0x3A)
            out.append((s, try sc.int()))
            if sc.peek(0x2C) { sc.p += 1; continue }
            try sc.expect(0x7D)
            return (out, start - 1 ..< sc.p)
        }
    }

    /// model.merges as written ("a b" strings or [a, b] lists): each merge's two halves, unescaped,
    /// back to back in one byte buffer (a merge of Gemma 3's 514,906 is looked up there, with no
    /// String made for it).
    struct Merges {
        var bytes: [UInt8] = []
        /// Merge i is bytes[ends[i] ..< ends[i + 1]], its left half bytes[ends[i] ..< splits[i]].
        var ends: [Int] = [0]
        var splits: [Int] = []
        var range: Range<Int>?
        var count: Int { splits.count }

        func left(_ i: Int) -> String { String(decoding: bytes[ends[i] ..< splits[i]], as: UTF8.self) }
        func right(_ i: Int) -> String { String(decoding: bytes[splits[i] ..< ends[i + 1]], as: UTF8.self) }
        /// "left right", as TokenizerData.merges holds it.
        func line(_ i: Int) -> String { left(i) + " " + right(i) }
    }

    /// model.merges (`start`: just after its `[`).
    static func scanMerges(_ sc: inout Scanner, at start: Int?) throws -> Merges {
        var m = Merges()
        guard let start else { return m }
        sc.p = start
        func close() throws -> Merges {
            try sc.expect(0x5D)
            m.range = start - 1 ..< sc.p
            return m
        }
        if sc.peek(0x5D) { return try close() }
        while true {
            if sc.peek(0x5B) {
                sc.p += 1
                try sc.string(into: &m.bytes)
                m.splits.append(m.bytes.count)
                try sc.expect(0x2C)
                try sc.string(into: &m.bytes)
                try sc.expect(0x5D)
            } else {
                let from = m.bytes.count
                try sc.string(into: &m.bytes)
                guard let sp = m.bytes[from...].firstIndex(of: 0x20) else {
                    let line = String(decoding: m.bytes[from...], as: UTF8.self)
                    throw QuantError(sc.file, "tokenizer.json merge \(m.count) \(line.debugDescription) is not \"a b\"")
                }
                m.bytes.remove(at: sp)
                m.splits.append(sp)
            }
            m.ends.append(m.bytes.count)
            if sc.peek(0x2C) { sc.p += 1; continue }
            return try close()
        }
    }

    static func parts(_ p: [String: Any]?) -> [[String: Any]] {
        guard let p else { return [] }
        if p["type"] as? String == "Sequence" {
            return (p["pretokenizers"] as? [Any] ?? p["normalizers"] as? [Any] ?? []).compactMap { $0 as? [String: Any] }
        }
        return [p]
    }

    static func isByteLevel(_ pre: [String: Any]?) -> Bool { parts(pre).contains { $0["type"] as? String == "ByteLevel" } }

    /// Llama 3's and Qwen 2's splitting patterns (tokenizers' Split pre-tokenizer, Isolated).
    static let llama3Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    static func byteLevelPre(_ pre: [String: Any], file: String) throws -> String {
        let ps = parts(pre)
        func describe() -> String { ps.map { $0["type"] as? String ?? "?" }.joined(separator: ", ") }
        let types = ps.map { $0["type"] as? String ?? "?" }
        let byteLevel = ps.last { $0["type"] as? String == "ByteLevel" }!
        if byteLevel["add_prefix_space"] as? Bool == true {
            throw QuantError(file, "tokenizer.json ByteLevel add_prefix_space true is not supported")
        }
        let regex = byteLevel["use_regex"] as? Bool ?? true
        if types == ["ByteLevel"], regex { return "gpt2" }
        if types == ["Digits", "ByteLevel"], regex, ps[0]["individual_digits"] as? Bool == true { return "smollm" }
        if types == ["Split", "ByteLevel"], !regex, ps[0]["behavior"] as? String == "Isolated",
           let pat = (ps[0]["pattern"] as? [String: Any])?["Regex"] as? String {
            if pat == llama3Pattern { return "llama3" }
            if pat == qwen2Pattern { return "qwen2" }
            throw QuantError(file, "tokenizer.json Split pattern \(pat.debugDescription) is not one QuantLM implements (Llama 3's, Qwen 2's)")
        }
        throw QuantError(file, "tokenizer.json pre-tokenizer [\(describe())] is not supported (ByteLevel; Digits + ByteLevel; Split + ByteLevel)")
    }

    static func byteLevelNormalizer(_ n: [String: Any]?, file: String) throws -> String? {
        guard let n else { return nil }
        let types = parts(n).map { $0["type"] as? String ?? "?" }
        if types.isEmpty { return nil }
        if types == ["NFC"] { return "nfc" }
        throw QuantError(file, "tokenizer.json normalizer [\(types.joined(separator: ", "))] is not supported with byte-level BPE (none, NFC)")
    }

    /// Whether ordinary text gets a leading ▁ (SentencePiece's dummy prefix), from a normalizer of
    /// Prepend("▁") + Replace(" ", "▁") (or Replace alone), or a Metaspace pre-tokenizer.
    static func metaspacePrefix(normalizer: [String: Any]?, pre: [String: Any]?, file: String) throws -> Bool {
        let ns = parts(normalizer), ps = parts(pre)
        func isSpaceReplace(_ p: [String: Any]) -> Bool {
            p["type"] as? String == "Replace" && (p["pattern"] as? [String: Any])?["String"] as? String == " "
                && p["content"] as? String == "\u{2581}"
        }
        if !ns.isEmpty {
            var prefix = false, replaced = false
            for p in ns {
                if p["type"] as? String == "Prepend", p["prepend"] as? String == "\u{2581}" { prefix = true }
                else if isSpaceReplace(p) { replaced = true }
                else {
                    throw QuantError(file, "tokenizer.json normalizer \(p["type"] as? String ?? "?") is not supported (Prepend ▁, Replace space → ▁)")
                }
            }
            guard replaced else { throw QuantError(file, "tokenizer.json normalizer does not escape spaces as ▁") }
            // A pre-tokenizer that splits on spaces after the escaping changes nothing here.
            for p in ps where !(p["type"] as? String == "Split" && (p["pattern"] as? [String: Any])?["String"] as? String == " ") {
                throw QuantError(file, "tokenizer.json pre-tokenizer \(p["type"] as? String ?? "?") is not supported with a ▁ normalizer")
            }
            return prefix
        }
        guard ps.count == 1, ps[0]["type"] as? String == "Metaspace" else {
            let t = ps.map { $0["type"] as? String ?? "?" }.joined(separator: ", ")
            throw QuantError(file, "tokenizer.json pre-tokenizer [\(t)] is not supported (ByteLevel, or Metaspace / a ▁ normalizer)")
        }
        let m = ps[0]
        if let r = m["replacement"] as? String, r != "\u{2581}" { throw QuantError(file, "tokenizer.json Metaspace replacement \(r.debugDescription) is not ▁") }
        if m["split"] as? Bool == true { throw QuantError(file, "tokenizer.json Metaspace split true is not supported") }
        switch m["prepend_scheme"] as? String ?? ((m["add_prefix_space"] as? Bool ?? true) ? "always" : "never") {
        case "always", "first": return true
        case "never": return false
        case let s: throw QuantError(file, "tokenizer.json Metaspace prepend_scheme '\(s)' is not supported")
        }
    }

    /// Whether the post-processor puts a special token before the text, and which (the BOS);
    /// nil if it says nothing.
    static func templateBos(_ root: [String: Any], _ tokens: [String], file: String) throws -> (add: Bool, id: Int?)? {
        guard let pp = root["post_processor"] as? [String: Any] else { return nil }
        let procs = pp["type"] as? String == "Sequence" ? (pp["processors"] as? [Any] ?? []).compactMap { $0 as? [String: Any] } : [pp]
        for p in procs where p["type"] as? String == "TemplateProcessing" {
            guard let single = p["single"] as? [Any], let first = single.first as? [String: Any],
                  let special = first["SpecialToken"] as? [String: Any] else { return (false, nil) }
            guard let text = special["id"] as? String, let id = tokens.firstIndex(of: text) else {
                throw QuantError(file, "tokenizer.json post_processor starts with special token \(special["id"] ?? "?"), which is not a token")
            }
            return (true, id)
        }
        return nil
    }
}
