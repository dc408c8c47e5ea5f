import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// Gemma 3 270M (gemma-3-270m-q4_k_m.gguf: 18 layers, d 640, 4 query / 1 KV heads of 256,
/// GeGLU 2048, vocabulary 262,144; Q5_0 / Q4_K / Q6_K / Q8_0 / F32 tensors) converted to .qlm and
/// run, against the independent numpy forward Tests/reference/gguf_gemma3_ref.py (gguf package).
/// These tests work on token ids (the files carry the GGUF's vocabulary as a llama2.c blob).
final class Gemma3Tests: XCTestCase {
    static let modelName = "gemma-3-270m-q4_k_m.gguf"
    static func model() throws -> URL { try SharedData.model(modelName) }

    /// BOS, then "The capital of France is Paris. The capital of Germany is Berlin. The capital"
    /// (ids from the GGUF's SentencePiece vocabulary) cycled to 640 tokens: past the 512-token
    /// window, so local and global layers see different keys in the last rows.
    static let sentence: [Int32] = [818, 5279, 529, 7001, 563, 9079, 236761, 669, 5279, 529, 9405, 563, 15687, 236761, 669, 5279]
    static let ids: [Int32] = [2] + (0 ..< 639).map { sentence[$0 % sentence.count] }
    /// Rows compared: inside the window, and well past it.
    static let early = 0 ..< 16, late = 600 ..< 640
    static let vocab = 262_144

    static func payload(_ ck: Checkpoint) throws -> TokenizerPayload {
        guard case .data(let td) = ck.tokenizer else { throw Fixtures.Failure(description: "expected tokenizer data from the GGUF") }
        var b: [UInt8] = []
        func i32(_ v: Int32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        i32(Int32(td.tokens.map(\.utf8.count).max()!))
        for t in td.tokens { i32(0); i32(Int32(t.utf8.count)); b += Array(t.utf8) }
        return TokenizerPayload(kind: "llama2c", blob: b, bos: td.bos, eos: td.eos, sourceFiles: [])
    }

    private static let lock = NSLock()
    private static var files: [String: URL] = [:]
    /// The GGUF converted once per policy name (f32, keep).
    static func converted(_ name: String) throws -> URL {
        lock.lock(); defer { lock.unlock() }
        if let u = files[name] { return u }
        let ck = try Checkpoint.open(try model())
        let policy = name == "f32" ? QuantPolicy(defaultType: .f32) : QuantPolicy.keep()
        let out = Fixtures.tempRoot.appendingPathComponent("gemma3-\(name).qlm")
        _ = try Converter.convert(ck, tokenizer: try payload(ck), options: ConvertOptions(policy: policy, threads: 2), to: out)
        files[name] = out
        return out
    }

    func load(_ url: URL, attention: AttentionConfig = AttentionConfig(kvType: .f32), positions: Int = 640) throws -> LoadedModel {
        try LoadedModel(path: url.path, options: LoadOptions(threads: 2, maxBatch: 64, attention: attention, kvPositions: positions))
    }

    /// Logits of `rows` after running `ids` from position 0.
    func logits(_ lm: LoadedModel, _ ids: [Int32], rows: Range<Int>) throws -> [Float] {
        var out: [Float] = []
        try lm.model.forward(ids, startPos: 0, logitRows: rows) { _, l in out += l }
        return out
    }

    func testReaderMapsGemma3() throws {
        let ck = try Checkpoint.open(try Self.model())
        XCTAssertEqual(ck.architecture, "gemma3")
        XCTAssertEqual(ck.hparams, HParams(nLayer: 18, nHead: 4, nKVHead: 1, dModel: 640, dFF: 2048, nCtx: 32768, vocabSize: 262_144,
                                           normEps: 1e-6, ropeTheta: 1_000_000, tiedEmbeddings: true,
                                           extra: ["head_dim": 256, "sliding_window": 512]))
        XCTAssertEqual(ck.hparams.qDim, 1024)
        XCTAssertEqual(ck.tensors.count, 2 + 18 * 13)
        let names = Set(ck.tensors.map(\.name))
        for n in ["token_embd.weight", "output_norm.weight", "blk.17.attn_q_norm.weight", "blk.0.post_attention_norm.weight",
                  "blk.5.post_ffw_norm.weight", "blk.3.attn_output.weight"] {
            XCTAssertTrue(names.contains(n), "missing \(n)")
        }
        XCTAssertEqual(ck.tensors.first { $0.name == "blk.0.attn_q.weight" }?.shape, [1024, 640])
        XCTAssertEqual(ck.tensors.first { $0.name == "blk.0.attn_output.weight" }?.shape, [640, 1024])
        let url = try Self.converted("f32")
        let f = try QLMFile(url)
        let meta = try JSONSerialization.jsonObject(with: f.metadataJSON) as! [String: Any]
        let hp = meta["hparams"] as! [String: Any]
        XCTAssertEqual(hp["head_dim"] as? Int, 256)
        XCTAssertEqual(hp["sliding_window"] as? Int, 512)
        // The model declares its attention: layers 5, 11, 17 (l % 6 == 5) global and dense, the rest banded:512.
        let lm = try load(url, attention: AttentionConfig(kvType: .q8_0), positions: 4096)
        let cache = try XCTUnwrap(lm.model.cache as? PatternKVCache)
        let expected: [AttentionPattern] = (0 ..< 18).map { $0 % 6 == 5 ? .dense : .banded(window: 512) }
        XCTAssertEqual(cache.patterns, expected)
        // q8_0 rows: one KV head of 256 int8 + a float scale; 15 rings of 512 + 3 × 4096 positions, K and V.
        XCTAssertEqual(cache.rowBytes, 256 + 4)
        XCTAssertEqual(cache.bytes, (15 * 512 + 3 * 4096) * 2 * 260)
        XCTAssertEqual(lm.model.positionLimit, 4096)
        // --attention still overrides the model's pattern.
        let dense = try load(url, attention: AttentionConfig(attention: "dense", kvType: .q8_0), positions: 4096)
        XCTAssertEqual((dense.model.cache as? PatternKVCache)?.patterns, Array(repeating: .dense, count: 18))
    }

    /// `run generate --json` describes Gemma 3's positions from the model itself (it once
    /// downcast to Llama and said "absolute" whatever Gemma ran): rotary encoding; its sliding
    /// pattern (banded:512, every 6th layer dense); absolute rotary positions while global
    /// layers need them, re-indexed in the cache ("cache") once every layer is banded.
    func testGenerateJSONReportsGemma3Positions() throws {
        let url = try Self.converted("keep")
        func run(_ extra: [String]) throws -> [String: Any] {
            let r = try Executables.run("run", ["generate", url.path, "--prompt", "Once upon a time", "--max-tokens", "2",
                                                 "--temperature", "0", "--threads", "2", "--json"] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        }
        let def = try run([])
        XCTAssertEqual(def["position_encoding"] as? String, "rotary")
        XCTAssertEqual(def["attention"] as? [String], (0 ..< 18).map { $0 % 6 == 5 ? "dense" : "banded:512" })
        XCTAssertEqual(def["positions"] as? String, "absolute")
        let banded = try run(["--attention", "banded:256"])
        XCTAssertEqual(banded["attention"] as? [String], Array(repeating: "banded:256", count: 18))
        XCTAssertEqual(banded["positions"] as? String, "cache")
        XCTAssertEqual(banded["position_encoding"] as? String, "rotary")
    }

    func testLogitsAndGreedyMatchNumpyReference() throws {
        let gguf = try Self.model()
        let refURL = Fixtures.tempRoot.appendingPathComponent("gemma3-ref.f64")
        let ids = Self.ids, early = Self.early, late = Self.late, vocab = Self.vocab
        let ref = try Fixtures.json(Fixtures.python("gguf_gemma3_ref.py", [
            "logits", "--model", gguf.path, "--ids", ids.map(String.init).joined(separator: ","), "--out", refURL.path,
            "--rows", "\(early.lowerBound):\(early.upperBound),\(late.lowerBound):\(late.upperBound)", "--greedy", "16", "--greedy-prompt", "16"]))
        let refLogits: [Double] = try Data(contentsOf: refURL).withUnsafeBytes { p in
            (0 ..< p.count / 8).map { p.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) }
        }
        let nRows = early.count + late.count
        XCTAssertEqual(refLogits.count, nRows * vocab)
        let refGreedy = (ref["greedy"] as! [Int]).map(Int32.init)

        /// (max |Δ|, relative RMS, rows whose argmax agrees) of `ours` against the reference rows starting at `row0`.
        func compare(_ ours: [Float], row0: Int) -> (maxAbs: Double, relRMS: Double, top1: Int) {
            var m = 0.0, se = 0.0, sr = 0.0, top = 0
            for t in 0 ..< ours.count / vocab {
                var ao = 0, ar = 0
                for v in 0 ..< vocab {
                    let o = Double(ours[t * vocab + v]), r = refLogits[(row0 + t) * vocab + v]
                    m = max(m, abs(o - r)); se += (o - r) * (o - r); sr += r * r
                    if ours[t * vocab + v] > ours[t * vocab + ao] { ao = v }
                    if r > refLogits[(row0 + t) * vocab + ar] { ar = v }
                }
                if ao == ar { top += 1 }
            }
            return (m, (se / sr).squareRoot(), top)
        }
        func greedy(_ lm: LoadedModel, _ prompt: [Int32], _ n: Int) throws -> [Int32] { try Fixtures.greedy(lm, prompt, n) }
        func run(_ lm: LoadedModel) throws -> (early: (maxAbs: Double, relRMS: Double, top1: Int), late: (maxAbs: Double, relRMS: Double, top1: Int)) {
            let e = compare(try logits(lm, Array(ids[early]), rows: early), row0: 0)
            let l = compare(try logits(lm, ids, rows: late), row0: early.count)
            return (e, l)
        }

        let f32 = try load(try Self.converted("f32"))
        let f32r = try run(f32)
        let f32Greedy = try greedy(f32, Array(ids.prefix(16)), 16)
        let dense = try run(try load(try Self.converted("f32"), attention: AttentionConfig(attention: "dense", kvType: .f32)))
        let keepLM = try load(try Self.converted("keep"))
        let keep = try run(keepLM)
        let keepGreedy = try greedy(keepLM, Array(ids.prefix(16)), 16)
        let agreeKeep = zip(keepGreedy, refGreedy).prefix { $0 == $1 }.count
        print(String(format: "Gemma3 vs float64 numpy: reference nll %.4f", ref["nll"] as! Double))
        for (n, r) in [("f32", f32r), ("f32 --attention dense", dense), ("keep (q8_0)", keep)] {
            print(String(format: "  %@: rows 0..<16 max |Δ| %.3g rel RMS %.3g top-1 %d/16; rows 600..<640 max |Δ| %.3g rel RMS %.3g top-1 %d/40",
                         n, r.early.maxAbs, r.early.relRMS, r.early.top1, r.late.maxAbs, r.late.relRMS, r.late.top1))
        }
        print("  greedy: reference \(refGreedy)\n          f32       \(f32Greedy)\n          keep      \(keepGreedy) (first \(agreeKeep) agree)")

        // f32 file = the GGUF's dequantized weights exactly, f32 KV; the rest is float32 vs
        // float64 arithmetic over 18 layers with a residual stream scaled by √640 (values in the
        // hundreds) and logits up to ~30: measured max |Δ| 1.1e-5 (rows < 16) and 1.1e-4 (rows
        // 600..<640), relative RMS 3.7e-7 / 2.2e-6. Bounds 10-20× above that.
        for r in [f32r.early, f32r.late] {
            XCTAssertLessThan(r.maxAbs, 2e-3)
            XCTAssertLessThan(r.relRMS, 3e-5)
        }
        XCTAssertEqual(f32r.early.top1, 16)
        XCTAssertEqual(f32r.late.top1, 40)
        XCTAssertEqual(f32Greedy, refGreedy)
        // The sliding window matters: every layer dense is the same model inside the window and
        // a different one past it (measured relative RMS 0.8: once BOS leaves the window the
        // local layers lose their attention sink).
        XCTAssertLessThan(dense.early.relRMS, 3e-5)
        XCTAssertGreaterThan(dense.late.relRMS, 50 * f32r.late.relRMS)
        XCTAssertGreaterThan(dense.late.relRMS, 0.1)
        // keep: every tensor's blocks pass through (Q8_0, and Q5_0 / Q4_K / Q6_K as the native
        // q5_0 / q4_k / q6_k), products with int8 activations. The bound dates from when those
        // matrices became q8_0 (measured relative RMS 2.7% / 3.8%); not re-measured since.
        XCTAssertLessThan(keep.early.relRMS, 0.08)
        XCTAssertLessThan(keep.late.relRMS, 0.08)
        XCTAssertGreaterThanOrEqual(keep.early.top1 + keep.late.top1, 50)
        XCTAssertGreaterThanOrEqual(agreeKeep, 8)
    }

    /// llama-perplexity's protocol on the first 2 chunks of WikiText-2 (scripts/quality/gemma3.sh runs 20):
    /// the f32 file against the numpy reference on the same ids (sentencepiece's, built from the
    /// GGUF vocabulary by the reference script).
    func testWikiPerplexityMatchesReference() throws {
        let gguf = try Self.model()
        let wiki = try SharedData.path("data/wikitext-2-raw/wiki.test.raw")
        let idsURL = Fixtures.tempRoot.appendingPathComponent("gemma3-wiki.u32")
        let ref = try Fixtures.json(Fixtures.python("gguf_gemma3_ref.py", [
            "ppl", "--model", gguf.path, "--text", wiki.path, "--max-chars", "10000", "--ids-out", idsURL.path, "--chunks", "2"]))
        var ids: [Int32] = try Data(contentsOf: idsURL).withUnsafeBytes { p in
            (0 ..< p.count / 4).map { Int32(p.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        }
        XCTAssertGreaterThanOrEqual(ids.count, 1024)
        XCTAssertEqual(ids.first, 2, "the reference starts the stream with BOS (add_bos_token)")
        // llama-perplexity replaces each chunk's first token with BOS (perplexity.cpp: add_bos &&
        // j == 0); these files carry a llama2.c-style vocabulary whose BOS id is not Gemma's, so
        // the replacement is made here (the protocol's own BOS handling: PerplexityTests).
        ids[512] = 2
        let lm = try load(try Self.converted("f32"), attention: AttentionConfig(kvType: .f16), positions: 512)
        let r = try Perplexity.evaluate([lm], names: ["f32"], text: "", proto: .chunks(ctx: 512, maxChunks: 2), tokenIDs: ids)
        let ours = r.models[0].perplexity, theirs = ref["ppl"] as! Double
        print(String(format: "Gemma3 wiki.test.raw, 2 chunks of 512: QuantLM f32 (f16 KV) %.4f, numpy reference %.4f (%+.4f%%)",
                     ours, theirs, 100 * (ours / theirs - 1)))
        XCTAssertEqual(r.tokensScored, 2 * 255)
        // Both are the same float model in float32 arithmetic (QuantLM's keys and values rounded
        // to f16): 20 chunks measured 18.9496 vs 18.9501 (-0.003%); the issue asks for 0.5%.
        XCTAssertEqual(ours, theirs, accuracy: 0.001 * theirs)
    }
}
