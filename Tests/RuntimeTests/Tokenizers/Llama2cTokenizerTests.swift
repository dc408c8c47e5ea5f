import Foundation
import Runtime
import XCTest
import TestSupport

final class Llama2cTokenizerTests: XCTestCase {
    func tokenizer() throws -> Llama2cTokenizer {
        try Llama2cTokenizer(path: SharedData.path("models/stories260K/tok512.bin").path, vocabSize: 512)
    }

    func testVocabulary() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.vocabSize, 512)
        XCTAssertEqual(t.bosID, 1)
        XCTAssertEqual(t.eosID, 2)
        XCTAssertEqual(t.maxTokenLength, 7)
        XCTAssertEqual(t.pieces[3], Array("<0x00>".utf8))
        XCTAssertEqual(t.tokenBytes(3 + 0x41), [0x41])
        XCTAssertEqual(t.tokenBytes(3 + 0xE4), [0xE4])
        XCTAssertEqual(t.tokenBytes(600), [])
    }

    func testMatchesRunCPort() throws {
        let t = try tokenizer()
        let fixture = try loadFixture("llama2c_tokenizer_cases.json")
        let cases = fixture["cases"] as! [[String: Any]]
        XCTAssertGreaterThanOrEqual(cases.count, 30)
        for c in cases {
            let text = c["text"] as! String
            let ids = t.encode(text)
            XCTAssertEqual(ids, int32s(c["ids"]), "encode(\(text.debugDescription))")
            // decode drops BOS and (after BOS) the dummy-prefix space.
            XCTAssertEqual(t.decode(ids), Array(text.utf8), "round trip of \(text.debugDescription)")
        }
    }

    func testOnceUponATimeAndRunCDecode() throws {
        let t = try tokenizer()
        let ids = t.encode("Once upon a time")
        XCTAssertEqual(ids.first, 1)
        XCTAssertEqual(t.encode(""), [1])
        XCTAssertEqual(t.encode(bytes: Array("Hi".utf8), bos: false, eos: true).last, 2)
        // run.c decode: the first piece after BOS loses its leading space.
        XCTAssertEqual(t.decodePiece(prev: 1, token: ids[1]), Array("Once".utf8))
        XCTAssertEqual(t.decodePiece(prev: ids[1], token: ids[2]).first, 0x20)
        XCTAssertEqual(String(decoding: t.decode(ids), as: UTF8.self), "Once upon a time")
        // Byte fallback: a code point not in the vocabulary becomes its UTF-8 bytes + 3.
        let emoji = t.encode("😀")
        XCTAssertEqual(Array(emoji.suffix(4)), Array("😀".utf8).map { Int32($0) + 3 })
        XCTAssertEqual(t.decode(emoji), Array("😀".utf8))
        // safe_printf: lone non-printable bytes print as nothing; whitespace and text pass.
        XCTAssertEqual(Llama2cTokenizer.printablePiece([0x07]), [])
        XCTAssertEqual(Llama2cTokenizer.printablePiece([0xE4]), [])
        XCTAssertEqual(Llama2cTokenizer.printablePiece([0x0A]), [0x0A])
        XCTAssertEqual(Llama2cTokenizer.printablePiece(Array(" the".utf8)), Array(" the".utf8))
        XCTAssertEqual(Llama2cTokenizer.byteFallback(Array("<0x0A>".utf8)), 0x0A)
        XCTAssertNil(Llama2cTokenizer.byteFallback(Array("<s>".utf8)))
    }

    func testTinyStoriesRoundTrip() throws {
        let t = try tokenizer()
        let text = String(decoding: try Data(contentsOf: SharedData.path("data/tinystories/tinystories_valid_first1000.txt")), as: UTF8.self)
        let stories = text.components(separatedBy: "<|endoftext|>").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { !$0.isEmpty }.prefix(20)
        for s in stories {
            let ids = t.encode(s)
            XCTAssertLessThan(ids.count, s.utf8.count + 2)
            XCTAssertEqual(String(decoding: t.decode(ids), as: UTF8.self), s)
        }
    }

    func testLoaderSniffsBinFile() throws {
        let path = try SharedData.path("models/stories260K/tok512.bin").path
        let t = try TokenizerLoader.load(path: path, vocabSize: 512)
        XCTAssertEqual(t.vocabSize, 512)
        XCTAssertEqual(t.encode("Once upon a time"), try tokenizer().encode("Once upon a time"))
        let dirTok = try TokenizerLoader.load(path: SharedData.path("models/stories260K").path, vocabSize: 512)
        XCTAssertEqual(dirTok.vocabSize, 512)
        XCTAssertThrowsError(try TokenizerLoader.load(path: path)) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
    }

    func testErrorsNameTheFile() throws {
        let path = try SharedData.path("models/stories260K/tok512.bin").path
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        for n in [0, 3, 4, 8, 11, 12, 100, data.count / 2, data.count - 1] {
            XCTAssertThrowsError(try Llama2cTokenizer(data: Array(data.prefix(n)), vocabSize: 512, source: "tok-cut-\(n).bin")) { error in
                XCTAssertTrue(error is TokenizerError)
                XCTAssertTrue("\(error)".contains("tok-cut-\(n).bin"), "\(error)")
            }
        }
        XCTAssertThrowsError(try Llama2cTokenizer(data: data, vocabSize: 500, source: "x.bin")) { error in
            XCTAssertTrue("\(error)".contains("trailing"), "\(error)")
        }
        XCTAssertThrowsError(try Llama2cTokenizer(data: data, vocabSize: 600, source: "x.bin"))
        var badLen = data
        badLen[8] = 0xFF; badLen[9] = 0xFF; badLen[10] = 0xFF; badLen[11] = 0x7F
        XCTAssertThrowsError(try Llama2cTokenizer(data: badLen, vocabSize: 512, source: "badlen.bin")) { error in
            XCTAssertTrue("\(error)".contains("badlen.bin"), "\(error)")
        }
        let missing = "/nonexistent/tokenizer.bin"
        XCTAssertThrowsError(try Llama2cTokenizer(path: missing, vocabSize: 512)) { error in
            XCTAssertTrue("\(error)".contains(missing), "\(error)")
        }
        // Random garbage never crashes.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var blob = data
            for _ in 0..<4 { blob[Int.random(in: 0..<blob.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            if let t = try? Llama2cTokenizer(data: blob, vocabSize: 512, source: "fuzz") {
                _ = t.decode(t.encode("Once upon a time 😀"))
            }
        }
    }
}
