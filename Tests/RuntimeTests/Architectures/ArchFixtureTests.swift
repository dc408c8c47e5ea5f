import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// Every architecture against transformers, in f32, on the committed fixtures of
/// Tests/Fixtures/arch (scripts/oracles/make_arch_fixtures.py: a tiny seeded random-init model
/// per architecture saved by save_pretrained, transformers' logits at every prompt position and
/// its 32 greedy tokens, llama.cpp's converter's f32 GGUF of the same directory). No torch here.
///
/// Per architecture: the Hugging Face directory → .qlm (f32) → logits of the whole prompt
/// (longer than every window of the model) within relative RMS 1e-4 of transformers' (f32 on
/// both sides: what is left is summation order, ~3e-7 measured; a wrong bias, norm offset,
/// rotary order, window or cap moves them by 1e-2 or more); the 32 greedy tokens identical
/// (transformers' smallest top-1 margin along them is in oracle.json, >= 0.0037 here: far above
/// f32 noise); and llama.cpp's GGUF of the same directory → .qlm gives bit-identical logits.
final class ArchFixtureTests: XCTestCase {
    struct Oracle: Decodable {
        let architecture: String
        let model_type: String
        let prompt: [Int32]
        let greedy: [Int32]
        let greedy_min_margin: Double
        let gguf: String?
    }

    static func dir(_ name: String) -> URL {
        SharedData.packageRoot.appendingPathComponent("Tests/Fixtures/arch/\(name)")
    }

    /// A checkpoint (HF directory or GGUF) converted to an f32 .qlm.
    func convert(_ src: URL, to name: String) throws -> URL {
        let ck = try Checkpoint.open(src)
        let tok = try XCTUnwrap(ck.tokenizer, "\(src.path) gave no tokenizer")
        let payload = try TokenizerPayloads.make(tok, vocabSize: ck.hparams.vocabSize)
        let out = Fixtures.tempRoot.appendingPathComponent("arch-\(name).qlm")
        _ = try Converter.convert(ck, tokenizer: payload, options: ConvertOptions(policy: QuantPolicy(defaultType: .f32)), to: out)
        return out
    }

    /// The prompt's logits in forward calls of at most 16 tokens (so windows wrap across calls),
    /// and 32 greedy tokens decoded one at a time after it.
    func run(_ url: URL, _ o: Oracle) throws -> (architecture: String, logits: [Float], greedy: [Int32]) {
        let lm = try Fixtures.load(url, maxBatch: 16)
        let logits = try Fixtures.logits(lm, o.prompt).flatMap { $0 }
        let lm2 = try Fixtures.load(url, maxBatch: 16)
        return (lm.file.metadata.architecture, logits, try Fixtures.greedy(lm2, o.prompt, o.greedy.count))
    }

    /// Relative RMS of `ours` against transformers' logits over `rows` (all when nil), and max |diff|.
    func compare(_ ours: [Float], _ ref: [Float], vocab: Int, rows: Range<Int>? = nil) -> (rel: Double, maxAbs: Double) {
        let r = rows.map { $0.lowerBound * vocab ..< $0.upperBound * vocab } ?? ref.indices
        var se = 0.0, sr = 0.0, maxAbs = 0.0
        for i in r {
            let e = Double(ours[i]) - Double(ref[i])
            se += e * e; sr += Double(ref[i]) * Double(ref[i]); maxAbs = max(maxAbs, abs(e))
        }
        return ((se / sr).squareRoot(), maxAbs)
    }

    /// `architecture`: what the .qlm must say it is. `ggufRows`: the prompt rows on which the
    /// GGUF path must agree (nil: all, and the greedy tokens too).
    func check(_ name: String, architecture: String, ggufArchitecture: String? = nil, ggufRows: Range<Int>? = nil) throws {
        let d = Self.dir(name)
        let o = try JSONDecoder().decode(Oracle.self, from: Data(contentsOf: d.appendingPathComponent("oracle.json")))
        let ref = try Fixtures.readF32(d.appendingPathComponent("logits.f32"))
        let vocab = ref.count / o.prompt.count
        XCTAssertEqual(ref.count, o.prompt.count * vocab)

        let hf = try run(try convert(d, to: "\(name)-hf"), o)
        XCTAssertEqual(hf.architecture, architecture)
        XCTAssertEqual(hf.logits.count, ref.count)
        let (rel, maxAbs) = compare(hf.logits, ref, vocab: vocab)
        print("\(name): Hugging Face path, \(o.prompt.count)-token prompt, logits relative RMS \(rel), max |diff| \(maxAbs) vs transformers")
        XCTAssertLessThanOrEqual(rel, 1e-4, "\(name): logits vs transformers")
        XCTAssertEqual(hf.greedy, o.greedy, "\(name): greedy tokens vs transformers")

        guard let g = o.gguf else { return }
        let gg = try run(try convert(d.appendingPathComponent(g), to: "\(name)-gguf"), o)
        XCTAssertEqual(gg.architecture, ggufArchitecture ?? architecture)
        let rows = ggufRows ?? 0 ..< o.prompt.count
        let (grel, gmax) = compare(gg.logits, ref, vocab: vocab, rows: rows)
        var differ = 0
        for i in rows.lowerBound * vocab ..< rows.upperBound * vocab where gg.logits[i] != hf.logits[i] { differ += 1 }
        print("\(name): GGUF path, rows \(rows): relative RMS \(grel), max |diff| \(gmax) vs transformers; \(differ) logits differ from the Hugging Face path's")
        XCTAssertLessThanOrEqual(grel, 1e-4, "\(name): GGUF path's logits vs transformers")
        XCTAssertEqual(differ, 0, "\(name): the GGUF path's logits are not the Hugging Face path's")
        if ggufRows == nil { XCTAssertEqual(gg.greedy, hf.greedy, "\(name): GGUF path's greedy tokens") }
    }

    /// Llama 3.x: llama3 rope scaling (every branch of it at head_dim 8), tied embeddings; the
    /// GGUF carries the divisors as llama.cpp's rope_freqs tensor, the directory as config.
    func testLlama3() throws { try check("llama3", architecture: "llama") }
    func testQwen2() throws { try check("qwen2", architecture: "qwen2") }
    func testQwen3() throws { try check("qwen3", architecture: "qwen3") }
    func testPhi3() throws { try check("phi3", architecture: "phi3") }
    func testGemma2() throws { try check("gemma2", architecture: "gemma2") }
    func testOLMo2() throws { try check("olmo2", architecture: "olmo2") }
    /// llama.cpp's converter writes a Mistral as a GGUF "llama" without its sliding window (and
    /// llama.cpp runs it dense): the two paths agree only on the first `window` positions, where
    /// the window hides nothing.
    /// No GGUF: llama.cpp has no GPT-Neo. Its 272-token prompt is longer than the local window of 256.
    func testGPTNeo() throws { try check("gpt_neo", architecture: "gpt_neo") }
    func testMistral() throws { try check("mistral", architecture: "mistral", ggufArchitecture: "llama", ggufRows: 0 ..< 16) }

    /// A fixture directory whose config.json `edit` changes (the other files linked).
    func edited(_ name: String, _ tag: String, _ edit: (inout [String: Any]) -> Void) throws -> URL {
        let src = Self.dir(name), dir = Fixtures.tempRoot.appendingPathComponent("cfg-\(name)-\(tag)")
        let fm = FileManager.default
        try? fm.removeItem(at: dir)
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        for f in try fm.contentsOfDirectory(atPath: src.path) where f != "config.json" {
            try fm.createSymbolicLink(at: dir.appendingPathComponent(f), withDestinationURL: src.appendingPathComponent(f))
        }
        var cfg = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json"))) as? [String: Any])
        edit(&cfg)
        try JSONSerialization.data(withJSONObject: cfg).write(to: dir.appendingPathComponent("config.json"))
        return dir
    }

    /// Opening `dir` fails with one line naming its config.json and every needle.
    func assertConfigError(_ dir: URL, _ needles: [String], line: UInt = #line) {
        do {
            _ = try Checkpoint.open(dir)
            XCTFail("\(dir.lastPathComponent): expected an error mentioning \(needles)", line: line)
        } catch {
            let text = "\(error)"
            XCTAssertFalse(text.contains("\n"), "not one line: \(text)", line: line)
            XCTAssertTrue(text.contains(dir.appendingPathComponent("config.json").path), "does not name config.json: \(text)", line: line)
            for n in needles { XCTAssertTrue(text.contains(n), "'\(text)' does not mention '\(n)'", line: line) }
        }
    }

    /// The per-architecture config.json mappings refuse what they cannot run, in one line that
    /// names the file, the key and the value; the fixtures' own configs read.
    func testConfigMappingErrors() throws {
        // qwen2: use_sliding_window true is a model this build does not run; a non-boolean is a type error.
        assertConfigError(try edited("qwen2", "swa", { $0["use_sliding_window"] = true; $0["sliding_window"] = 64 }),
                          ["use_sliding_window true is not supported for qwen2"])
        assertConfigError(try edited("qwen2", "swa-type", { $0["use_sliding_window"] = "yes" }), ["use_sliding_window"])
        // phi3: rotary over part of the head, in either spelling.
        assertConfigError(try edited("phi3", "partial", { c in
            var r = c["rope_parameters"] as! [String: Any]; r["partial_rotary_factor"] = 0.5; c["rope_parameters"] = r
        }), ["partial_rotary_factor 0.5 is not supported for phi3"])
        assertConfigError(try edited("phi3", "partial-old", { c in
            c["rope_parameters"] = nil; c["rope_theta"] = 10000.0; c["partial_rotary_factor"] = 0.75
        }), ["partial_rotary_factor 0.75"])
        // gemma2: layer_types must alternate sliding (even) / full (odd), one per layer, as strings.
        assertConfigError(try edited("gemma2", "types", { $0["layer_types"] = ["full_attention", "full_attention", "sliding_attention", "full_attention"] }),
                          ["layer_types", "layer 0 is full_attention"])
        assertConfigError(try edited("gemma2", "types-count", { $0["layer_types"] = ["sliding_attention", "full_attention"] }),
                          ["layer_types", "2 entries", "4 layers"])
        assertConfigError(try edited("gemma2", "types-kind", { $0["layer_types"] = [0, 1, 0, 1] }), ["layer_types"])
        // gpt_neo: attention_layers lists every layer, each global or local.
        assertConfigError(try edited("gpt_neo", "kind", { $0["attention_layers"] = ["global", "sparse"] }),
                          ["attention_layers must list 2 layers, each global or local"])
        assertConfigError(try edited("gpt_neo", "count", { $0["attention_layers"] = ["global"] }), ["attention_layers must list 2 layers"])
        assertConfigError(try edited("gpt_neo", "missing", { $0["attention_layers"] = nil }), ["attention_layers"])
        // The unedited configs (rewritten by JSONSerialization) still read.
        for name in ["qwen2", "phi3", "gemma2", "gpt_neo"] { XCTAssertNoThrow(try Checkpoint.open(try edited(name, "same", { _ in }))) }
    }
}
