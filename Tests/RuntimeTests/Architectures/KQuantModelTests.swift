import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// A model stored in K-quants (q4_k / q5_k / q6_k, TestSupport.KQuantModel) through the paths
/// that batch rows: speculative verification (1 + k rows per pass) and the server's batched
/// steps. Their products run the few-token kernels and tiles, which are bit-identical to the
/// one-token dot kernel (KQuantTests), so greedy tokens must equal plain greedy decoding exactly.
final class KQuantModelTests: XCTestCase {
    func greedy(_ url: URL, prompt: [Int32], tokens: Int, spec: SpeculativeOptions?) throws -> [Int32] {
        var o = GenerationOptions(maxNewTokens: tokens, sampling: SamplingConfig(temperature: 0), stopAtEndOfText: false)
        o.speculative = spec
        o.echoPrompt = false
        var lo = LoadOptions(threads: 2, maxBatch: 64, kvPositions: prompt.count + tokens)
        lo.kvRollback = (spec?.draftLength ?? 0) + 1
        let lm = try LoadedModel(path: url.path, options: lo)
        return try Generator.generate(lm, promptIDs: prompt, options: o) { _ in }.tokens
    }

    func prompts() -> [[Int32]] {
        let a: [Int32] = [1, 403, 407, 261, 300, 72, 100, 200]
        return [a + a + a.prefix(3), [1, 50, 60, 70, 80, 90, 50, 60], Array((1 ... 40).map { Int32($0 * 11 % 500 + 3) })]
    }

    func testFileHoldsTheKTypes() throws {
        let f = try QLMFile(try KQuantModel.cached())
        let types = Set(f.tensors.map(\.type))
        XCTAssertTrue(types.isSuperset(of: [.q4_k, .q5_k, .q6_k]), "\(types)")
        XCTAssertEqual(try f.info("layers.0.attention.wv.weight").type, .q5_k)
        XCTAssertEqual(try f.info("layers.1.feed_forward.w2.weight").type, .q6_k)
        XCTAssertEqual(try f.info("layers.1.attention.wq.weight").type, .q4_k)
    }

    func testSpeculativeLookupEqualsPlainGreedy() throws {
        let url = try KQuantModel.cached()
        for prompt in prompts() {
            let plain = try greedy(url, prompt: prompt, tokens: 60, spec: nil)
            XCTAssertEqual(plain.count, 60)
            for k in [3, 7] {
                XCTAssertEqual(try greedy(url, prompt: prompt, tokens: 60, spec: SpeculativeOptions(kind: .lookup, draftLength: k)), plain, "k \(k)")
            }
        }
    }

    final class Collect: @unchecked Sendable {
        let lock = NSCondition()
        var ids: [Int32] = []
        var done = false
        func add(_ e: ServeEvent) {
            lock.lock()
            switch e {
            case .text(_, let t): ids += t
            case .done, .failed: done = true
            default: break
            }
            lock.broadcast(); lock.unlock()
        }
        func wait() -> [Int32] {
            lock.lock(); defer { lock.unlock() }
            let deadline = Date().addingTimeInterval(120)
            while !done && Date() < deadline { lock.wait(until: min(deadline, Date().addingTimeInterval(0.05))) }
            return ids
        }
    }

    /// Three greedy requests at once (batched decode rows, chunked prefill), with and without
    /// lookup speculation: each request's tokens equal its plain greedy generation.
    func testServeEqualsPlainGreedy() throws {
        let url = try KQuantModel.cached()
        let want = try prompts().map { try greedy(url, prompt: $0, tokens: 40, spec: nil) }
        for spec in [nil, SpeculativeOptions(kind: .lookup, draftLength: 6)] as [SpeculativeOptions?] {
            var o = LoadOptions(threads: 2, kvPositions: 256)
            o.kvRollback = spec.map { $0.draftLength + 1 } ?? 1
            let lm = try LoadedModel(path: url.path, options: o)
            let engine = try ServingEngine(loaded: lm, parallel: 3, contextPerSlot: 256, queueLimit: 3, speculative: spec)
            let outs = prompts().map { _ in Collect() }
            for (p, c) in zip(prompts(), outs) {
                try engine.submit(ServeRequest(prompt: p, maxTokens: 40), isCancelled: { false }, emit: c.add)
            }
            XCTAssertEqual(outs.map { $0.wait() }, want, "speculative \(spec != nil)")
            engine.drain()
        }
    }
}
