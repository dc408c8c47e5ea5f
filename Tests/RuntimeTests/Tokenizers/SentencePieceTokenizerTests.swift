import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

/// SentencePiece BPE from a GGUF vocabulary (Gemma 3, 262,144 tokens, byte fallback) against
/// Google's `sentencepiece` running a ModelProto built from the same GGUF
/// (Tests/reference/spm_tokenizer_oracle.py).
final class SentencePieceTokenizerTests: XCTestCase {
    static let gemmaName = "gemma-3-270m-q4_k_m.gguf"

    /// GGUFTokenizerTests' strings plus SentencePiece and Gemma specifics: ▁ in the text,
    /// control / user-defined / byte-piece spellings, runs of spaces, tabs and newlines
    /// (user-defined pieces in Gemma), HTML tags, unusual code points.
    static let tricky: [String] = {
        var c = GGUFTokenizerTests.tricky
        c += ["<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n", "<bos>", "<eos>", "<unk>", "<pad>",
              "<mask>", "<unused0>", "<unused99>x<unused6241>", "<unused6242>", "<start_of_turn", "<end_of_turn>>",
              "<<start_of_turn>>", "[multimodal]", "<start_of_image><end_of_image>", "<0x41>", "<0x0A>b", "<0xZZ>",
              "▁", "▁▁x", "x▁", " ▁ ", "\u{2581}\u{2581}\u{2581}", "<table><tr><td>a</td></tr></table>", "<b>bold</b> <i>", "</s><s>",
              "<div class=x>", "\t", "\t\t\t", "\t \t", String(repeating: "\t", count: 40), String(repeating: " ", count: 31),
              String(repeating: " ", count: 32), String(repeating: " ", count: 70) + "x", String(repeating: "\n", count: 31),
              String(repeating: "\n", count: 45), "a \n b", " \n\n \n", "x  \n  y", "\u{FFFD}", "a\u{FFFD}\u{FFFD}b",
              "\u{7F}\u{80}\u{9F}", "\u{FEFF}bom", "\u{E000}\u{F8FF}", "\u{10FFFF}", "\u{1F600}\u{FE0F}", "\u{0301}x",
              "ﬁ ﬂ Ⅸ ｆｕｌｌ", "ｶﾀｶﾅ", "$\\frac{a}{b}$", "`code` ```swift\nlet x = 1\n```", "x = [1, 2, 3]  # comment",
              "    indented\n\tand tabbed", "A" + String(repeating: "\u{0300}", count: 20), "中文 English 混合 123",
              "e.g. i.e. U.S.A.", "don't won't can't", "http://a.b/c d", "😀😃😄😁😆😅😂🤣", "🏳️‍🌈", "x\u{200D}y"]
        var x: UInt32 = 11
        let atoms = ["a", "Z", " ", "  ", "\n", "\t", "1", "▁", "<", ">", "<bos>", "<end_of_turn>", "<b>", "😀", "中",
                     "é", "\r\n", "_", "\u{00A0}", "ab", " the", "ing"]
        for _ in 0..<60 {
            var s = ""
            for _ in 0..<14 { x = x &* 1_103_515_245 &+ 12345; s += atoms[Int(x >> 16) % atoms.count] }
            c.append(s)
        }
        return c
    }()

    func temp(_ name: String) -> URL { Fixtures.tempRoot.appendingPathComponent(name) }

    func testGemmaMatchesSentencePiece() throws {
        let gguf = try SharedData.model(Self.gemmaName)
        let wikiURL = try SharedData.path("data/wikitext-2-raw/wiki.test.raw")
        let casesFile = temp("spm-cases.json"), out = temp("spm-gemma.json")
        try JSONSerialization.data(withJSONObject: Self.tricky).write(to: casesFile)
        _ = try Fixtures.python("spm_tokenizer_oracle.py", ["encode", gguf.path, casesFile.path, out.path, "--wiki", wikiURL.path])
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [String: Any]
        let plain = expected["plain"] as! [String: Any], special = expected["special"] as! [String: Any]
        let flipped = expected["flipped"] as! [String: Any]

        var t0 = Date()
        let data = try GGUFReader.tokenizerData(of: gguf)
        let readSeconds = Date().timeIntervalSince(t0)
        XCTAssertEqual(data.model, "llama")
        XCTAssertEqual(data.addSpacePrefix, false)
        XCTAssertEqual(expected["add_space_prefix"] as? Bool, false)
        t0 = Date()
        let built = try SentencePieceTokenizer(data)
        let buildSeconds = Date().timeIntervalSince(t0)
        // What a .qlm holds: the payload's blob, loaded as `run` loads it.
        let payload = try TokenizerPayloads.make(.data(data), vocabSize: 262_144)
        XCTAssertEqual(payload.kind, "spm")
        XCTAssertEqual(payload.bos, 2)
        XCTAssertEqual(payload.eos, 1)
        t0 = Date()
        let loaded = try TokenizerPayloads.load(kind: payload.kind, blob: payload.blob, vocabSize: 262_144, source: "test", file: "test")
        let loadSeconds = Date().timeIntervalSince(t0)
        let t = try XCTUnwrap(loaded as? SentencePieceTokenizer)
        print(String(format: "Gemma vocabulary: GGUF metadata read %.2f s, tokenizer built %.2f s, spm blob %d bytes loaded %.2f s",
                     readSeconds, buildSeconds, payload.blob.count, loadSeconds))
        XCTAssertEqual(t.vocabSize, 262_144)
        XCTAssertEqual(t.bosID, 2)
        XCTAssertEqual(t.eosID, 1)
        XCTAssertTrue(t.addBos)
        XCTAssertFalse(t.addSpacePrefix)
        XCTAssertEqual(t.specialID("<end_of_turn>"), 106)
        XCTAssertEqual(t.specialID("<start_of_turn>"), 105)
        XCTAssertEqual(built.serialized(), payload.blob)

        // The whole of wiki.test.raw.
        let wikiBytes = [UInt8](try Data(contentsOf: wikiURL))
        let wiki = String(decoding: wikiBytes, as: UTF8.self)
        t0 = Date()
        let ids = t.encode(wiki, allowSpecial: false, addSpecial: false)
        let seconds = Date().timeIntervalSince(t0)
        let want = int32s(plain["wiki"])
        print(String(format: "Gemma encode of wiki.test.raw: %d tokens (sentencepiece: %d) in %.3f s, %.2f MB/s",
                     ids.count, want.count, seconds, Double(wikiBytes.count) / seconds / 1e6))
        XCTAssertEqual(ids.count, want.count)
        if ids != want {
            let i = (0..<min(ids.count, want.count)).first { ids[$0] != want[$0] } ?? min(ids.count, want.count)
            XCTFail("wiki ids differ first at \(i): \(ids[max(0, i - 3)..<min(ids.count, i + 5)]) vs \(want[max(0, i - 3)..<min(want.count, i + 5)])")
        }
        XCTAssertTrue(t.decode(ids) == wikiBytes, "decode(encode(wiki.test.raw)) differs from the file")
        XCTAssertEqual(t.encode(wiki), [2] + ids, "encode(_:) adds BOS (add_bos_token) and parses specials (the file has none)")

        // Tricky strings, three ways.
        let plainCases = (plain["cases"] as! [Any]).map { int32s($0) }, plainDecoded = plain["decoded"] as! [String]
        let specialCases = (special["cases"] as! [Any]).map { int32s($0) }
        XCTAssertEqual(plainCases.count, Self.tricky.count)
        XCTAssertEqual(specialCases.count, Self.tricky.count)
        var bad = 0, specialsSeen = 0
        for (k, text) in Self.tricky.enumerated() {
            let got = t.encode(text, allowSpecial: false, addSpecial: false)
            if got != plainCases[k] { bad += 1; XCTFail("encode(\(text.debugDescription)): \(got) vs sentencepiece \(plainCases[k])") }
            XCTAssertEqual(t.decode(got), Array(plainDecoded[k].utf8), "decode vs sentencepiece for \(text.debugDescription)")
            // Lossless but for a literal ▁ in the text, which is the escaped space.
            XCTAssertEqual(t.decode(got), Array(text.replacingOccurrences(of: "\u{2581}", with: " ").utf8), "round trip of \(text.debugDescription)")
            let gotSpecial = t.encode(text, allowSpecial: true, addSpecial: false)
            if gotSpecial != specialCases[k] {
                bad += 1; XCTFail("encode(\(text.debugDescription), allowSpecial): \(gotSpecial) vs sentencepiece \(specialCases[k])")
            }
            if gotSpecial.contains(where: { t.type($0) == .control }) { specialsSeen += 1 }
        }
        XCTAssertGreaterThan(specialsSeen, 20, "the strings should exercise control-token matching")
        print("Gemma: \(Self.tricky.count) tricky strings × 2 (plain, specials), \(bad) differ from sentencepiece")

        // The dummy prefix Gemma does not use: the same vocabulary with add_space_prefix flipped.
        var d2 = data
        d2.addSpacePrefix = !(data.addSpacePrefix ?? false)
        let tf = try SentencePieceTokenizer(d2)
        let flippedCases = (flipped["cases"] as! [Any]).map { int32s($0) }, flippedDecoded = flipped["decoded"] as! [String]
        var compared = 0
        for (k, text) in Self.tricky.enumerated() {
            compared += 1
            let got = tf.encode(text, allowSpecial: false, addSpecial: false)
            XCTAssertEqual(got, flippedCases[k], "add_space_prefix flipped: \(text.debugDescription)")
            XCTAssertEqual(tf.decode(got), Array(flippedDecoded[k].utf8), "add_space_prefix flipped, decode: \(text.debugDescription)")
        }
        print("Gemma with add_space_prefix flipped: \(compared) strings compared")
    }

    /// Streaming: token by token, whole UTF-8 characters come out once their bytes are in.
    func testGemmaTokenBytesStreamWholeCharacters() throws {
        let t = try SentencePieceTokenizer(GGUFReader.tokenizerData(of: SharedData.model(Self.gemmaName)))
        let text = "Emoji 😀 and 中文 and ǅ, a rare one: \u{10FFFF} and \u{E000}."
        let ids = t.encode(text, allowSpecial: false, addSpecial: false)
        XCTAssertTrue(ids.contains { t.type($0) == .byte }, "the private-use characters should fall back to bytes")
        var bytes: [UInt8] = []
        for id in ids { bytes += t.tokenBytes(id) }
        XCTAssertEqual(bytes, Array(text.utf8))
        XCTAssertEqual(t.tokenBytes(2), [], "BOS (control) prints nothing")
        XCTAssertEqual(t.tokenBytes(106), [], "<end_of_turn> (control) prints nothing")
        XCTAssertEqual(t.tokenBytes(107), [0x0A], "user-defined newline")
        XCTAssertEqual(t.tokenBytes(-1), [])
        XCTAssertEqual(t.tokenBytes(262_144), [])
    }

    // MARK: - Errors and small vocabularies

    func testBadInputsAreNamed() throws {
        func data(_ tokens: [String], _ types: [Int32]?, model: String = "llama") -> TokenizerData {
            TokenizerData(model: model, tokens: tokens, scores: tokens.map { _ in 0 }, tokenTypes: types, source: "bad.gguf")
        }
        XCTAssertThrowsError(try SentencePieceTokenizer(data(["a", "b"], [1, 9]))) { XCTAssertTrue("\($0)".contains("bad.gguf") && "\($0)".contains("type 9"), "\($0)") }
        XCTAssertThrowsError(try SentencePieceTokenizer(data(["a", "<0xZZ>"], [1, 6]))) { XCTAssertTrue("\($0)".contains("<0xZZ>"), "\($0)") }
        XCTAssertThrowsError(try SentencePieceTokenizer(data(["a", "a"], [1, 1]))) { XCTAssertTrue("\($0)".contains("already defined"), "\($0)") }
        XCTAssertThrowsError(try SentencePieceTokenizer(data(["a"], [1], model: "gpt2"))) { XCTAssertTrue("\($0)".contains("'llama'"), "\($0)") }
        XCTAssertThrowsError(try SentencePieceTokenizer(data(["a", ""], [1, 1]))) { XCTAssertTrue("\($0)".contains("token 1"), "\($0)") }
        var d = data(["a", "b"], [1, 1]); d.bos = 7
        XCTAssertThrowsError(try SentencePieceTokenizer(d)) { XCTAssertTrue("\($0)".contains("BOS id 7"), "\($0)") }

        let good = try SentencePieceTokenizer(data(["<unk>", "a", "b", "ab", "▁a"], [2, 1, 1, 1, 1]))
        var blob = good.serialized()
        XCTAssertEqual(try SentencePieceTokenizer(serialized: blob, source: "x.qlm").serialized(), blob)
        blob[20] ^= 1
        XCTAssertThrowsError(try SentencePieceTokenizer(serialized: blob, source: "x.qlm")) {
            XCTAssertTrue("\($0)".contains("x.qlm") && "\($0)".contains("checksum"), "\($0)")
        }
        XCTAssertThrowsError(try SentencePieceTokenizer(serialized: Array(good.serialized().dropLast(3)), source: "x.qlm"))
        XCTAssertThrowsError(try SentencePieceTokenizer(serialized: [UInt8](repeating: 0, count: 40), source: "x.qlm")) {
            XCTAssertTrue("\($0)".contains("bad magic"), "\($0)")
        }
    }

    /// Without byte pieces an unknown character is the unknown token, a run of them one token
    /// (sentencepiece's PopulateSentencePieceText); an unused piece is split into the parts it
    /// was merged from; equal scores merge leftmost first.
    func testSmallVocabularyRules() throws {
        let tokens = ["<unk>", "<s>", "a", "b", "c", "ab", "bc", "abc", "▁", "▁a", "x", "y", "xy"]
        let types: [Int32] = [2, 3, 1, 1, 1, 1, 1, 5, 1, 1, 1, 1, 1]
        let scores: [Float] = [0, 0, -1, -1, -1, -2, -2, -1, -1, -3, -1, -1, -5]
        let t = try SentencePieceTokenizer(TokenizerData(model: "llama", tokens: tokens, scores: scores, tokenTypes: types,
                                                         unk: 0, source: "small"))
        XCTAssertEqual(t.encode("ab", allowSpecial: false, addSpecial: false), [5])
        XCTAssertEqual(t.encode("abc", allowSpecial: false, addSpecial: false), [5, 4], "ab and bc tie: leftmost merges; abc is unused: split back")
        XCTAssertEqual(t.encode("bc", allowSpecial: false, addSpecial: false), [6])
        XCTAssertEqual(t.encode("a中文b", allowSpecial: false, addSpecial: false), [2, 0, 3], "one unknown token for the run")
        XCTAssertEqual(t.encode("a中 文b", allowSpecial: false, addSpecial: false), [2, 0, 8, 0, 3])
        XCTAssertEqual(t.encode(" a", allowSpecial: false, addSpecial: false), [9])
        XCTAssertEqual(t.encode("<s>a", allowSpecial: true, addSpecial: false), [1, 2])
        XCTAssertEqual(t.decode([1, 9, 0, 12]), Array(" a ⁇ xy".utf8))
    }
}
