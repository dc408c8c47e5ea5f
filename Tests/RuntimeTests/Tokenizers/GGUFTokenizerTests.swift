import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

/// Byte-level BPE from a GGUF vocabulary (SmolLM2-135M-Instruct) against Hugging Face
/// `tokenizers` (Tests/reference/hf_tokenizer_oracle.py), and the pre-tokenizer scanners
/// against HF's Digits / Split / ByteLevel pre-tokenizers.
final class GGUFTokenizerTests: XCTestCase {
    static let smolName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// The real-model folder: QUANTLM_MODELS or ~/.cache/quantlm/models. Missing → failure.
    static func model(_ name: String) throws -> URL { try SharedData.model(name) }

    static let tricky: [String] = {
        var c = ["", " ", "  ", "\n", "\n\n", " \n ", "\t\tx", "hello", " hello", "Hello, world!", "trailing   ",
                 "I'm", "I'LL", "they're", "DON'T", "'s'S'd", "rock 'n' roll", "x ſ 'ſ",
                 "123", "1234567", " 42", "a1b2c3", "3.14159", "1,000,000", "٣٤٥ ١٢", "x² ½ ① Ⅻ", "v1.2.3-rc4",
                 "  12  ab", "\n1\n", "a\u{00A0}1", "phone: +1 (555) 010-9999",
                 "def f(x):\n    return x ** 2\n", "for (int i = 0; i < 10; ++i) {\n\tsum += a[i];\n}",
                 "if x == 1:\r\n    pass\r\n", "<div class=\"a\">&amp;</div>", "SELECT * FROM t WHERE id=7;",
                 "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇺🇸🇫🇷", "emoji 😀😀 !", "中文字符测试", "日本語のテキスト", "한국어 텍스트",
                 "mixed Ελληνικά русский עברית عربى", "café naïve nai\u{0308}ve", "résumé Ångström",
                 "a\u{00A0}b", "a\u{3000}b", "a\u{2028}b", "a\u{0085}b", "a\u{200B}b", "a\u{001C}b", "\u{0000}\u{0001}",
                 // NUL, U+FFFD and 0x1D (the fuzzer's round-trip finding): 0x1D and 0x04, 0x06,
                 // 0x13, 0x14, 0x16 have no token in SmolLM2's vocabulary, so HF drops them too.
                 "a\u{0}b \u{0}\u{0} c\u{0}", "x\u{FFFD}\u{FFFD} y \u{FFFD}", "a\u{1D}b", "\u{4}\u{6}\u{13}\u{14}\u{16} x",
                 "lit\u{FFFD}\u{FFFD}\u{1D}\u{0}\u{0}\u{0}\u{0}\u{0} named Lily.",
                 "ctrl\u{0007}\u{001B}[0m", "\r\n", "line\r\n\r\nline", "   \n\n   x", "x\n \n y", "a \t\n b",
                 "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "a<|endoftext|>b",
                 "<|im_start|><|im_end|>", "<|im_start", "<|im_end|>>", "<repo_name>x<file_sep>y", "<|im_start|> user",
                 "http://example.com/a?b=c&d=e#f", "foo_bar-baz.qux", "$$$ %%% ^^^", "!!!!!!!!!!??", "...", "—–-",
                 "@-@ 1 @,@ 000", " = Valkyria Chronicles III = \n", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ǅungla", "Ġ ĉ", "ÿ\u{0100}",
                 String(repeating: "x", count: 300), String(repeating: "ab ", count: 100), String(repeating: "9", count: 50),
                 String(repeating: " ", count: 40) + "x", String(repeating: "\n", count: 7) + "x", String(repeating: "é", count: 100)]
        // Pseudo-random mixes of the pieces above.
        var x: UInt32 = 7
        let atoms = ["a", "Z", " ", "  ", "\n", "\t", "1", "22", "'s", "'T", ".", "😀", "中", "é", "<|im_end|>", "\r\n", "_", "\u{00A0}", "٣"]
        for _ in 0..<60 {
            var s = ""
            for _ in 0..<12 { x = x &* 1_103_515_245 &+ 12345; s += atoms[Int(x >> 16) % atoms.count] }
            c.append(s)
        }
        return c
    }()

    func temp(_ name: String) -> URL { Fixtures.tempRoot.appendingPathComponent(name) }

    func testSmolLM2MatchesHFTokenizers() throws {
        let gguf = try Self.model(Self.smolName)
        let casesFile = temp("tok-cases.json"), out = temp("smollm2-ids.json")
        try JSONSerialization.data(withJSONObject: Self.tricky).write(to: casesFile)
        let wikiURL = try SharedData.path("data/wikitext-2-raw/wiki.test.raw")
        _ = try Fixtures.python("hf_tokenizer_oracle.py", ["encode", gguf.path, casesFile.path, out.path, "--wiki", wikiURL.path])
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [String: Any]

        let data = try GGUFReader.tokenizerData(of: gguf)
        XCTAssertEqual(data.pre, "smollm")
        let t = try BPETokenizer(data)
        XCTAssertEqual(t.vocabSize, 49152)
        XCTAssertEqual(t.preTokenizer, .smollm)
        XCTAssertFalse(t.addBos)

        let wikiBytes = [UInt8](try Data(contentsOf: wikiURL))
        let wiki = String(decoding: wikiBytes, as: UTF8.self)
        let start = Date()
        let ids = t.encode(wiki)
        let seconds = Date().timeIntervalSince(start)
        let want = int32s(expected["wiki"])
        print("SmolLM2 encode of wiki.test.raw: \(ids.count) tokens (HF: \(want.count)) in \(String(format: "%.3f", seconds)) s, \(String(format: "%.2f", Double(wikiBytes.count) / seconds / 1e6)) MB/s")
        XCTAssertEqual(ids.count, want.count)
        if ids != want {
            let i = (0..<min(ids.count, want.count)).first { ids[$0] != want[$0] } ?? min(ids.count, want.count)
            XCTFail("wiki ids differ first at \(i): \(ids[max(0, i - 3)..<min(ids.count, i + 5)]) vs \(want[max(0, i - 3)..<min(want.count, i + 5)])")
        }
        XCTAssertTrue(t.decode(ids) == wikiBytes, "decode(encode(wiki.test.raw)) differs")

        // The bytes with a token of their own: SmolLM2 lacks 21 (decode(encode(x)) is x without them).
        var has = [Bool](repeating: false, count: 256)
        for id in 0 ..< Int32(t.vocabSize) { let b = t.tokenBytes(id); if b.count == 1 { has[Int(b[0])] = true } }
        XCTAssertEqual((0 ..< 256).filter { !has[$0] }, [0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2] + Array(0xF5 ... 0xFF))
        let cases = (expected["cases"] as! [Any]).map { int32s($0) }
        XCTAssertEqual(cases.count, Self.tricky.count)
        var bad = 0
        for (text, want) in zip(Self.tricky, cases) {
            let got = t.encode(text)
            if got != want { bad += 1; XCTFail("encode(\(text.debugDescription)): \(got) vs HF \(want)") }
            XCTAssertEqual(t.decode(got), text.utf8.filter { has[Int($0)] }, "round trip of \(text.debugDescription)")
        }
        print("SmolLM2: \(Self.tricky.count) tricky strings, \(bad) differ from HF")
        // Without special matching, <|im_start|> is text.
        XCTAssertFalse(t.encode("<|im_start|>", allowSpecial: false).contains(1))
        XCTAssertEqual(t.encode("<|im_start|>"), [1])
    }

    func testPreTokenizersMatchHF() throws {
        let casesFile = temp("pretok-cases.json")
        try JSONSerialization.data(withJSONObject: Self.tricky).write(to: casesFile)
        for kind in PreTokenizerKind.allCases {
            let out = temp("pretok-\(kind.rawValue).json")
            _ = try Fixtures.python("hf_tokenizer_oracle.py", ["pretok", kind.rawValue, casesFile.path, out.path])
            let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [[String]]
            var bad = 0
            for (text, want) in zip(Self.tricky, expected) {
                // HF splits special tokens before pre-tokenizing only when they are added; here all is text.
                let got = PreTokenizers.pieces(text, kind)
                XCTAssertEqual(got.joined(), text)
                if got != want { bad += 1; XCTFail("\(kind) \(text.debugDescription): \(got) vs HF \(want)") }
            }
            print("pre-tokenizer \(kind): \(Self.tricky.count) strings, \(bad) differ from HF")
        }
    }

    /// The same GGUF vocabulary read from two files is one tokenizer blob (the path is not in
    /// it: `run compare` of a model and its GGUF export's twin was refused as "a different
    /// tokenizer"), and an embedded one still names its file in errors.
    func testBPEJSONBlobDoesNotDependOnTheSourcePath() throws {
        let dir = temp("bpejson")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let src = SharedData.packageRoot.appendingPathComponent("Tests/Fixtures/arch/llama3/model.gguf")
        var blobs: [[UInt8]] = []
        for name in ["a.gguf", "b-elsewhere.gguf"] {
            let u = dir.appendingPathComponent(name)
            try FileManager.default.copyItem(at: src, to: u)
            let c = try Checkpoint.open(u)
            let p = try TokenizerPayloads.make(try XCTUnwrap(c.tokenizer), vocabSize: c.hparams.vocabSize)
            XCTAssertEqual(p.kind, "bpe-json")
            XCTAssertNil(String(decoding: p.blob, as: UTF8.self).range(of: name), "the blob holds no path")
            blobs.append(p.blob)
        }
        XCTAssertEqual(blobs[0], blobs[1])
        var broken = try JSONSerialization.jsonObject(with: Data(blobs[0])) as! [String: Any]
        broken["pre"] = "falcon9"
        let bad = try JSONSerialization.data(withJSONObject: broken)
        XCTAssertThrowsError(try TokenizerPayloads.load(kind: "bpe-json", blob: [UInt8](bad), vocabSize: 1 << 20, source: "m.qlm (embedded bpe-json)", file: "m.qlm")) { e in
            XCTAssertTrue("\(e)".contains("m.qlm") && "\(e)".contains("falcon9"), "\(e)")
        }
    }

    func testUnknownPreTokenizerIsNamed() {
        let d = TokenizerData(model: "gpt2", pre: "falcon9", tokens: ["a"], source: "x.gguf")
        XCTAssertThrowsError(try BPETokenizer(d)) { e in XCTAssertTrue("\(e)".contains("falcon9"), "\(e)") }
    }
}

final class TokenizerInfoChatTemplateTests: XCTestCase {
    func testOldMetadataDecodesAndTemplateRoundTrips() throws {
        let old = try JSONDecoder().decode(TokenizerInfo.self, from: Data(#"{"kind":"gpt2-bpe","tensor":"tokenizer","eos":50256}"#.utf8))
        XCTAssertNil(old.chatTemplate)
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(old), as: UTF8.self).contains("chat_template"))
        let t = TokenizerInfo(kind: "bpe", bos: 1, eos: 2, chatTemplate: "{% for m in messages %}<|im_start|>{% endfor %}")
        let back = try JSONDecoder().decode(TokenizerInfo.self, from: JSONEncoder().encode(t))
        XCTAssertEqual(back, t)
    }
}
