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
        guard let bytes = FileManager.default.contents(atPath: file) else { throw QuantError(file, "cannot read tokenizer.json") }
        var files = [url]
        var d = try parse(bytes, file: file)
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
        guard let root = (try? JSONSerialization.jsonObject(with: bytes)) as? [String: Any] else {
            throw QuantError(file, "tokenizer.json is not a JSON object")
        }
        guard let model = root["model"] as? [String: Any] else { throw QuantError(file, "tokenizer.json lacks its model object") }
        let type = model["type"] as? String ?? (model["merges"] != nil ? "BPE" : "?")
        guard type == "BPE" else {
            throw QuantError(file, "tokenizer.json model type '\(type)' is not supported (BPE, byte-level or SentencePiece-style, is)")
        }
        guard let vocab = model["vocab"] as? [String: Any] else { throw QuantError(file, "tokenizer.json model.vocab must be an object") }
        // Token strings by id: the vocabulary plus the added tokens.
        var byID: [Int: String] = [:]
        byID.reserveCapacity(vocab.count)
        for (s, v) in vocab {
            guard let n = v as? NSNumber, n.intValue >= 0, n.intValue < 1 << 22, Double(n.intValue) == n.doubleValue else {
                throw QuantError(file, "tokenizer.json vocab entry \(s.debugDescription) has id \(v), not a token id")
            }
            if let other = byID[n.intValue], other != s { throw QuantError(file, "tokenizer.json ids \(n.intValue) names two tokens") }
            byID[n.intValue] = s
        }
        var added: [Int: Bool] = [:]     // id → special
        for a in root["added_tokens"] as? [Any] ?? [] {
            guard let o = a as? [String: Any], let n = o["id"] as? NSNumber, let content = o["content"] as? String,
                  n.intValue >= 0, n.intValue < 1 << 22, !content.isEmpty else {
                throw QuantError(file, "tokenizer.json added_tokens entry \(a) needs an id and a non-empty content")
            }
            if let other = byID[n.intValue], other != content {
                throw QuantError(file, "tokenizer.json added token \(n.intValue) \(content.debugDescription) has the id of \(other.debugDescription)")
            }
            byID[n.intValue] = content
            added[n.intValue] = (o["special"] as? Bool) ?? false
        }
        guard !byID.isEmpty else { throw QuantError(file, "tokenizer.json has an empty vocabulary") }
        let count = byID.keys.max()! + 1
        guard byID.count == count else {
            let gap = (0 ..< count).first { byID[$0] == nil }!
            throw QuantError(file, "tokenizer.json has no token with id \(gap) (ids must run 0..<\(count))")
        }
        let tokens = (0 ..< count).map { byID[$0]! }
        let merges = try mergeLines(model["merges"], file: file)
        let byteFallback = model["byte_fallback"] as? Bool ?? false
        let unk = (model["unk_token"] as? String).flatMap { u in vocab[u].flatMap { ($0 as? NSNumber)?.intValue } }
        var types = [Int32](repeating: 1, count: count)
        for (id, special) in added { types[id] = special ? 3 : 4 }

        let pre = root["pre_tokenizer"] as? [String: Any]
        let normalizer = root["normalizer"] as? [String: Any]
        if isByteLevel(pre) {
            let normalize = try byteLevelNormalizer(normalizer, file: file)
            let bos = try templateBos(root, tokens, file: file)
            var d = TokenizerData(model: "gpt2", pre: try byteLevelPre(pre!, file: file), tokens: tokens, tokenTypes: types,
                                  merges: merges, bos: bos?.id, unk: unk, addBos: bos?.add, source: file)
            d.normalizer = normalize
            return d
        }
        // SentencePiece-style: ▁ for spaces, by a normalizer or a Metaspace pre-tokenizer.
        let prefix = try metaspacePrefix(normalizer: normalizer, pre: pre, file: file)
        if let unk { types[unk] = 2 }
        if byteFallback {
            for (i, t) in tokens.enumerated() where types[i] == 1 && t.count == 6 && t.hasPrefix("<0x") && t.hasSuffix(">") { types[i] = 6 }
        }
        // score(piece) = -rank of the merge that makes it; pieces no merge makes score below every merge.
        var scores = [Float](repeating: -Float(merges.count + 1), count: count)
        var idOf: [String: Int] = [:]
        idOf.reserveCapacity(count)
        for (i, t) in tokens.enumerated() where idOf[t] == nil { idOf[t] = i }
        for (rank, line) in merges.enumerated().reversed() {
            guard let sp = line.firstIndex(of: " "), let id = idOf[String(line[..<sp]) + String(line[line.index(after: sp)...])] else {
                throw QuantError(file, "tokenizer.json merge \(rank) \(line.debugDescription) does not make a token of the vocabulary")
            }
            scores[id] = -Float(rank)
        }
        for (i, t) in types.enumerated() where t != 1 { scores[i] = 0 }
        let bos = try templateBos(root, tokens, file: file)
        return TokenizerData(model: "llama", tokens: tokens, scores: scores, tokenTypes: types, bos: bos?.id, unk: unk,
                             addBos: bos?.add, addSpacePrefix: prefix, source: file)
    }

    /// Merges as "left right" lines: tokenizers writes either strings or [left, right] pairs.
    static func mergeLines(_ v: Any?, file: String) throws -> [String] {
        guard let v, !(v is NSNull) else { return [] }
        guard let list = v as? [Any] else { throw QuantError(file, "tokenizer.json model.merges must be a list") }
        return try list.enumerated().map { i, m in
            if let s = m as? String { return s }
            if let p = m as? [Any], p.count == 2, let a = p[0] as? String, let b = p[1] as? String { return a + " " + b }
            throw QuantError(file, "tokenizer.json merge \(i) must be \"a b\" or [a, b]")
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
