import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// `--screen K`: top-k-only logits through a 4-bit screen of the classifier, rescored exactly.
final class LogitScreenTests: XCTestCase {
    /// On stories260K (512-token vocabulary; q8_0 classifier, and the row-grouped q8_0x8 and
    /// q4_0x8, whose candidate rows are rebuilt out of their 8-row groups): each screened logits
    /// row holds exactly K finite entries, each bit-identical to the full classifier's logit for
    /// that token (the same arithmetic per row), every other entry -inf; and the K are the
    /// screen's best.
    func testScreenedRowsAreExactOnTheirCandidates() throws {
        for type in [QuantType.q8_0, .q8_0x8, .q4_0x8] { try checkScreenedRows(type) }
    }

    func checkScreenedRows(_ type: QuantType) throws {
        let url = try Fixtures.stories(type)
        let plain = try LoadedModel(path: url.path, options: LoadOptions(threads: 2, maxBatch: 16))
        var o = LoadOptions(threads: 2, maxBatch: 16)
        o.screen = (24, false)
        let screened = try LoadedModel(path: url.path, options: o)
        let ids = try AttentionTests.storyTokens(40, tokenizer: plain.tokenizer)
        var full: [[Float]] = [], top: [[Float]] = []
        try plain.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, l in full.append(Array(l)) }
        try screened.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, l in top.append(Array(l)) }
        XCTAssertEqual(top.count, ids.count)
        var argmaxKept = 0
        for (f, s) in zip(full, top) {
            let kept = s.indices.filter { s[$0].isFinite }
            XCTAssertEqual(kept.count, 24, "exactly K candidates")
            for i in kept { XCTAssertEqual(s[i].bitPattern, f[i].bitPattern, "\(type): candidate \(i) rescored exactly") }
            for i in s.indices where !s[i].isFinite { XCTAssertEqual(s[i], -.infinity) }
            if kept.contains(f.indices.max { f[$0] < f[$1] }!) { argmaxKept += 1 }
        }
        // A 4-bit screen of a 64-wide classifier is coarse; the argmax must still be among its 24 best nearly always.
        XCTAssertGreaterThanOrEqual(argmaxKept, ids.count - 2, "full argmax among the K candidates")
    }

    /// Greedy text with --screen equals plain greedy text (stories260K, 3 prompts, 60 tokens), and
    /// verify mode passes the full logits on while counting: the perplexity run reports as many
    /// checked rows as it scored.
    func testGreedyUnchangedAndVerifyCounts() throws {
        let url = try Fixtures.stories(.q8_0)
        for prompt in ["Once upon a time", "Lily had a red ball", "The dog ran"] {
            let a = try Executables.run("run", ["generate", url.path, "--prompt", prompt, "--max-tokens", "60", "--temperature", "0", "--threads", "2"])
            let b = try Executables.run("run", ["generate", url.path, "--prompt", prompt, "--max-tokens", "60", "--temperature", "0", "--threads", "2", "--screen", "32"])
            XCTAssertEqual(a.status, 0, a.stderr); XCTAssertEqual(b.status, 0, b.stderr)
            XCTAssertEqual(a.stdout, b.stdout, "greedy text with --screen 32, prompt \(prompt)")
            XCTAssertFalse(a.stdout.isEmpty)
        }
        let bad = try Executables.run("run", ["generate", url.path, "--prompt", "Hi", "--temperature", "0.8", "--screen", "32"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--screen 32 passes only 32 logits on"), bad.stderr)
        var o = LoadOptions(threads: 2, maxBatch: 16)
        o.screen = (8, true)
        let lm = try LoadedModel(path: url.path, options: o)
        let plain = try LoadedModel(path: url.path, options: LoadOptions(threads: 2, maxBatch: 16))
        let ids = try AttentionTests.storyTokens(30, tokenizer: lm.tokenizer)
        var v: [[Float]] = [], f: [[Float]] = []
        try lm.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, l in v.append(Array(l)) }
        try plain.model.forward(ids, startPos: 0, logitRows: 0 ..< ids.count) { _, l in f.append(Array(l)) }
        XCTAssertEqual(v.map { $0.map(\.bitPattern) }, f.map { $0.map(\.bitPattern) }, "verify passes the full logits on")
        XCTAssertEqual(lm.weights.logitScreen?.rowsChecked, ids.count)
        XCTAssertLessThanOrEqual(lm.weights.logitScreen?.argmaxMissed ?? 99, 2)
    }
}
