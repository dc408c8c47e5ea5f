import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// The Hugging Face directories transformers itself wrote (scripts/oracles/make_hf_dirs.py:
/// SmolLM2-135M-Instruct and Gemma 3 270M, bf16, from the fetched GGUFs) against HF
/// `tokenizers` on their own tokenizer.json and against the GGUF path. They need torch to make,
/// so CI (which installs no torch) skips this class; a missing directory fails with how to make it.
final class HFCheckpointTests: XCTestCase {
    static func dir(_ name: String) throws -> URL {
        let env = ProcessInfo.processInfo.environment["QUANTLM_HF"]
        let root = env.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/quantlm/hf")
        let u = root.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: u.appendingPathComponent("tokenizer.json").path) else {
            throw SharedData.Missing(description: "Hugging Face directory \(u.path) not found: run `python3 scripts/oracles/make_hf_dirs.py` (needs torch + transformers; or set QUANTLM_HF)")
        }
        return u
    }

    func temp(_ name: String) -> URL { Fixtures.tempRoot.appendingPathComponent(name) }

    /// Ids of the tricky strings and of all of wiki.test.raw, ours vs tokenizers on the same file.
    func checkTokenizer(_ name: String, build: (TokenizerData) throws -> any Tokenizer) throws {
        let dir = try Self.dir(name)
        let casesFile = temp("hf-tok-cases-\(name).json"), out = temp("hf-ids-\(name).json")
        try JSONSerialization.data(withJSONObject: GGUFTokenizerTests.tricky).write(to: casesFile)
        let wikiURL = try SharedData.path("data/wikitext-2-raw/wiki.test.raw")
        _ = try Fixtures.python("hf_tokenizer_oracle.py", ["encode-json", dir.appendingPathComponent("tokenizer.json").path,
                                                            casesFile.path, out.path, "--wiki", wikiURL.path])
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [String: Any]
        func ids(_ v: Any?) -> [Int32] { (v as! [NSNumber]).map { $0.int32Value } }
        var data = try HFTokenizerJSON.read(directory: dir).data
        data.addBos = false     // tokenizers' ids without add_special_tokens
        let t = try build(data)
        let wiki = String(decoding: try Data(contentsOf: wikiURL), as: UTF8.self)
        let got = t.encode(wiki), want = ids(expected["wiki"])
        if got != want {
            let i = (0 ..< min(got.count, want.count)).first { got[$0] != want[$0] } ?? min(got.count, want.count)
            XCTFail("\(name): wiki ids differ first at \(i) of \(want.count): \(got[max(0, i - 3) ..< min(got.count, i + 5)]) vs \(want[max(0, i - 3) ..< min(want.count, i + 5)])")
        }
        var bad = 0
        for (text, w) in zip(GGUFTokenizerTests.tricky, (expected["cases"] as! [Any]).map(ids)) where t.encode(text) != w {
            bad += 1
            XCTFail("\(name): encode(\(text.debugDescription)): \(t.encode(text)) vs tokenizers \(w)")
        }
        print("\(name) tokenizer.json: wiki.test.raw \(got.count) tokens (tokenizers \(want.count)), \(bad) of \(GGUFTokenizerTests.tricky.count) tricky strings differ")
    }

    func testSmolLM2TokenizerJSONMatchesTokenizers() throws {
        try checkTokenizer("SmolLM2-135M-Instruct") { d in
            XCTAssertEqual(d.model, "gpt2"); XCTAssertEqual(d.pre, "smollm")
            return try BPETokenizer(d)
        }
    }

    func testGemma3TokenizerJSONMatchesTokenizers() throws {
        try checkTokenizer("gemma-3-270m") { d in
            XCTAssertEqual(d.model, "llama")
            return try SentencePieceTokenizer(d)
        }
    }

    /// The HF directory (bf16) and the GGUF it was made from, both converted to f32: the same
    /// architecture and tokenizer, and logits that differ only by the bf16 rounding of the weights.
    func checkAgainstGGUF(_ name: String, gguf: String, prompt: String, maxRelRMS: Double) throws {
        let dir = try Self.dir(name), g = try SharedData.model(gguf)
        let a = temp("hf-\(name).qlm"), b = temp("gguf-\(name).qlm")
        _ = try ConversionJob(input: dir, output: a, type: "f32").run()
        _ = try ConversionJob(input: g, output: b, type: "f32").run()
        let ma = try LoadedModel(path: a.path, options: LoadOptions(threads: 2)), mb = try LoadedModel(path: b.path, options: LoadOptions(threads: 2))
        XCTAssertEqual(ma.file.metadata.architecture, mb.file.metadata.architecture)
        XCTAssertEqual(ma.model.shape, mb.model.shape)
        let ids = ma.tokenizer.encode(prompt)
        XCTAssertEqual(ids, mb.tokenizer.encode(prompt), "same ids from tokenizer.json and the GGUF vocabulary")
        XCTAssertEqual(ma.tokenizer.eosID, mb.tokenizer.eosID)
        var la: [[Float]] = [], lb: [[Float]] = []
        try ma.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, l in la.append(Array(l)) }
        try mb.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, l in lb.append(Array(l)) }
        var num = 0.0, den = 0.0, top = 0
        for (x, y) in zip(la, lb) {
            for (p, q) in zip(x, y) { num += Double(p - q) * Double(p - q); den += Double(q) * Double(q) }
            if x.indices.max(by: { x[$0] < x[$1] }) == y.indices.max(by: { y[$0] < y[$1] }) { top += 1 }
        }
        let rel = (num / den).squareRoot()
        print("\(name): HF (bf16) vs GGUF logits over \(ids.count) tokens: relative RMS \(rel), top-1 \(top)/\(ids.count)")
        XCTAssertLessThan(rel, maxRelRMS)
        XCTAssertGreaterThanOrEqual(top, ids.count - 1)
    }

    // Tolerance: bf16 keeps 8 significant bits, so each weight moves by up to 2^-9 of itself
    // (the GGUF side is exact); measured SmolLM2 0.0049 relative RMS over 21 tokens (top-1 21/21).
    // 0.03 leaves room for other prompts; a wrong q/k permutation or a missing +1 gives O(1).
    func testSmolLM2MatchesGGUF() throws {
        try checkAgainstGGUF("SmolLM2-135M-Instruct", gguf: "SmolLM2-135M-Instruct.Q4_1.gguf",
                             prompt: "The capital of France is Paris. In 2019, 12345 people", maxRelRMS: 0.03)
    }

    func testGemma3MatchesGGUF() throws {
        try checkAgainstGGUF("gemma-3-270m", gguf: "gemma-3-270m-q4_k_m.gguf",
                             prompt: "The capital of France is Paris. In 2019, 12345 people", maxRelRMS: 0.03)
    }
}
