import Foundation
import Quant

/// Byte-level BPE built from a checkpoint's vocabulary (`TokenizerData`, model "gpt2"):
/// token strings in OpenAI's byte-to-unicode form, merges in rank order, a pre-tokenizer
/// chosen by `pre`. Control (type 3) and user-defined (type 4) tokens are matched as whole
/// strings in the input before BPE (leftmost, longest), like HF `tokenizers` added tokens.
package struct BPETokenizer: Tokenizer {
    let core: GPT2Tokenizer
    package let preTokenizer: PreTokenizerKind
    /// Token types (`tokenizer.ggml.token_type`), one per id (1 when absent).
    package let tokenTypes: [Int32]
    /// Whole-string tokens (types 3 and 4), bucketed by first byte.
    private let specialBuckets: [[(bytes: [UInt8], id: Int32)]]
    package let bosID: Int32?
    package let eosID: Int32?
    package let addBos: Bool
    package let addEos: Bool
    /// Text is NFC-normalized before encoding (tokenizer.json's NFC normalizer).
    package let nfc: Bool

    package var vocabSize: Int { core.vocabSize }

    package init(_ d: TokenizerData) throws {
        let source = d.source
        guard d.model == "gpt2" else {
            throw TokenizerError(file: source, problem: "BPETokenizer needs tokenizer model 'gpt2', not '\(d.model)'")
        }
        let pre = try PreTokenizerKind(pre: d.pre, source: source)
        let n = d.tokens.count
        guard n > 0 else { throw TokenizerError(file: source, problem: "empty vocabulary") }
        let types = d.tokenTypes ?? [Int32](repeating: 1, count: n)
        guard types.count == n else {
            throw TokenizerError(file: source, problem: "\(types.count) token types for \(n) tokens")
        }
        let decoder = GPT2Tokenizer.unicodeToByte
        var tokens: [[UInt8]] = []
        tokens.reserveCapacity(n)
        var idOfString: [String: UInt32] = [:]
        idOfString.reserveCapacity(n)
        var specialIDs: [UInt32] = []
        for (i, t) in d.tokens.enumerated() {
            var bytes: [UInt8] = []
            if types[i] == 3 || types[i] == 4 {
                bytes = Array(t.utf8)
                specialIDs.append(UInt32(i))
            } else {
                for scalar in t.unicodeScalars {
                    if let b = decoder[scalar.value] { bytes.append(b) } else { bytes.append(contentsOf: String(scalar).utf8) }
                }
            }
            guard !bytes.isEmpty else { throw TokenizerError(file: source, problem: "token \(i) is empty") }
            tokens.append(bytes)
            if idOfString[t] == nil { idOfString[t] = UInt32(i) }
        }
        var merges: [(UInt32, UInt32, UInt32)] = []
        merges.reserveCapacity(d.merges?.count ?? 0)
        for (rank, line) in (d.merges ?? []).enumerated() {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, let a = idOfString[String(parts[0])], let b = idOfString[String(parts[1])],
                  let m = idOfString[String(parts[0]) + String(parts[1])] else {
                throw TokenizerError(file: source, problem: "merge \(rank) \(line.debugDescription) does not name two tokens whose concatenation is a token")
            }
            merges.append((a, b, m))
        }
        core = try GPT2Tokenizer(tokens: tokens, merges: merges, specialIDs: [], pre: pre, source: source)
        preTokenizer = pre
        tokenTypes = types
        var buckets = [[(bytes: [UInt8], id: Int32)]](repeating: [], count: 256)
        for id in specialIDs {
            let b = tokens[Int(id)]
            buckets[Int(b[0])].append((b, Int32(id)))
        }
        for k in 0..<256 { buckets[k].sort { $0.bytes.count > $1.bytes.count } }   // longest first
        specialBuckets = buckets
        func check(_ v: Int?, _ what: String) throws -> Int32? {
            guard let v else { return nil }
            guard v >= 0, v < n else { throw TokenizerError(file: source, problem: "\(what) id \(v) outside 0..<\(n)") }
            return Int32(v)
        }
        bosID = try check(d.bos, "BOS")
        eosID = try check(d.eos, "EOS")
        addBos = d.addBos ?? false
        addEos = d.addEos ?? false
        switch d.normalizer {
        case nil: nfc = false
        case "nfc": nfc = true
        case let other?: throw TokenizerError(file: source, problem: "normalizer '\(other)' is not supported (nfc)")
        }
    }

    /// Encodes like HF `tokenizer.encode(text)`: special-token text becomes its id, BOS/EOS
    /// added as the vocabulary asks.
    package func encode(_ text: String) -> [Int32] { encode(text, allowSpecial: true, addSpecial: true) }

    /// `allowSpecial`: match control/user-defined token strings; `addSpecial`: add BOS/EOS
    /// when `add_bos`/`add_eos` say so.
    package func encode(_ text: String, allowSpecial: Bool, addSpecial: Bool = true) -> [Int32] {
        var out: [Int32] = []
        if addSpecial, addBos, let bosID { out.append(bosID) }
        let bytes = Array((nfc ? text.precomposedStringWithCanonicalMapping : text).utf8)
        var segmentStart = 0
        var i = 0
        if allowSpecial {
            while i < bytes.count {
                var matched: (bytes: [UInt8], id: Int32)? = nil
                for s in specialBuckets[Int(bytes[i])] where i + s.bytes.count <= bytes.count {
                    if bytes[i..<(i + s.bytes.count)].elementsEqual(s.bytes) { matched = s; break }
                }
                if let m = matched {
                    var segment = Array(bytes[segmentStart..<i])
                    core.encodeOrdinary(&segment, into: &out)
                    out.append(m.id)
                    i += m.bytes.count
                    segmentStart = i
                } else {
                    i += 1
                }
            }
        }
        var segment = Array(bytes[segmentStart..<bytes.count])
        core.encodeOrdinary(&segment, into: &out)
        if addSpecial, addEos, let eosID { out.append(eosID) }
        return out
    }

    /// The id of a control or user-defined token by its text (e.g. "<|im_end|>").
    package func specialID(_ text: String) -> Int32? {
        let b = Array(text.utf8)
        guard let first = b.first else { return nil }
        return specialBuckets[Int(first)].first { $0.bytes == b }?.id
    }

    package func decode(_ ids: [Int32]) -> [UInt8] { core.decode(ids) }
    package func tokenBytes(_ id: Int32) -> [UInt8] { core.tokenBytes(id) }
}
