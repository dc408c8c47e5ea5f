import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// The server's engine without HTTP: batched multi-sequence decode, admission, cancellation.
final class ServingEngineTests: XCTestCase {
    /// One pass over rows of three sequences (own caches, different positions) gives each row the
    /// logits its sequence gets alone. Not bit-identical: a 3-row product may take the kernels'
    /// multi-row path, which sums in another order; float32 rounding over a few layers stays
    /// far below 1e-3 of logits of magnitude ~10, and the argmax must agree.
    func testBatchedRowsMatchSeparateSequences() throws {
        for url in [try Stories.cached(.q8_0), try Fixtures.gpt2(.q8_0)] {
            let lm = try LoadedModel(path: url.path, options: LoadOptions(threads: 2, kvPositions: 64))
            let prompts: [[Int32]] = lm.tokenizer is Llama2cTokenizer
                ? [[1, 403, 407, 261], [1, 300], [1, 72, 100, 200, 300, 400, 450]]
                : [[464, 2068, 7586], [50256], [40, 588, 257, 1110, 286, 262]]
            func sequences() throws -> [LanguageModel] { try prompts.indices.map { _ in try lm.makeSequence(positions: 64) } }
            let alone = try sequences(), together = try sequences()
            var expected: [[Float]] = []
            for (i, p) in prompts.enumerated() {
                try alone[i].forward(p, startPos: 0, logitRows: 0 ..< 0) { _, _ in }
                try together[i].forward(p, startPos: 0, logitRows: 0 ..< 0) { _, _ in }
                var l: [Float] = []
                try alone[i].forward([p.last!], startPos: p.count, logitRows: 0 ..< 1) { _, x in l = Array(x) }
                expected.append(l)
            }
            let tokens = prompts.map { $0.last! }, positions = prompts.map(\.count)
            var got = [[Float]](repeating: [], count: prompts.count)
            try tokens.withUnsafeBufferPointer { tp in
                try positions.withUnsafeBufferPointer { pp in
                    try together[0].forwardRows(tp, positions: pp, caches: together.map(\.cache)) { t, x in got[t] = Array(x) }
                }
            }
            for i in prompts.indices {
                let maxDiff = zip(got[i], expected[i]).map { abs($0 - $1) }.max() ?? .infinity
                XCTAssertLessThan(maxDiff, 1e-3, "\(url.lastPathComponent) row \(i)")
                XCTAssertEqual(got[i].withUnsafeBufferPointer { Sampler.argmax($0) }, expected[i].withUnsafeBufferPointer { Sampler.argmax($0) })
            }
        }
    }

    final class Events: @unchecked Sendable {
        let lock = NSCondition()
        var list: [ServeEvent] = []
        func add(_ e: ServeEvent) { lock.lock(); list.append(e); lock.broadcast(); lock.unlock() }
        func waitDone(timeout: TimeInterval = 30) -> ServeEvent? {
            let deadline = Date().addingTimeInterval(timeout)
            lock.lock(); defer { lock.unlock() }
            while Date() < deadline {
                if let d = list.last(where: { if case .done = $0 { return true }; if case .failed = $0 { return true }; return false }) { return d }
                lock.wait(until: min(deadline, Date().addingTimeInterval(0.05)))
            }
            return nil
        }
        var tokenCount: Int { lock.lock(); defer { lock.unlock() }; return list.reduce(0) { if case .text(_, let ids) = $1 { return $0 + ids.count }; return $0 } }
    }

    final class Flag: @unchecked Sendable {
        private let lock = NSLock(); private var v = false
        func set() { lock.lock(); v = true; lock.unlock() }
        var isSet: Bool { lock.lock(); defer { lock.unlock() }; return v }
    }

    /// One slot, a queue of one: the third request is refused; cancelling the first frees the
    /// slot for the second, which then runs to its length.
    func testQueueLimitAndCancellationFreeTheSlot() throws {
        let lm = try LoadedModel(path: try Stories.cached(.q8_0).path, options: LoadOptions(threads: 2, kvPositions: 512))
        let engine = try ServingEngine(loaded: lm, parallel: 1, contextPerSlot: 512, queueLimit: 1)
        let prompt = lm.tokenizer.encode("Once upon a time")
        let a = Events(), b = Events(), cancelA = Flag()
        try engine.submit(ServeRequest(prompt: prompt, maxTokens: 400), isCancelled: { cancelA.isSet }, emit: a.add)
        while engine.load.active < 1 { usleep(1000) }   // a is in the slot
        try engine.submit(ServeRequest(prompt: prompt, maxTokens: 10), isCancelled: { false }, emit: b.add)
        XCTAssertThrowsError(try engine.submit(ServeRequest(prompt: prompt, maxTokens: 10), isCancelled: { false }, emit: { _ in })) { e in
            XCTAssertEqual(e as? ServeRejection, .queueFull(waiting: 1, limit: 1))
        }
        XCTAssertThrowsError(try engine.submit(ServeRequest(prompt: [Int32](repeating: 5, count: 600), maxTokens: 1), isCancelled: { false }, emit: { _ in })) { e in
            XCTAssertEqual(e as? ServeRejection, .promptTooLong(tokens: 600, context: 512))
        }
        while a.tokenCount < 3 { usleep(1000) }
        cancelA.set()
        guard case .done(let reasonA, _, let nA)? = a.waitDone() else { return XCTFail("a did not finish") }
        XCTAssertEqual(reasonA, "cancelled")
        XCTAssertLessThan(nA, 400, "cancelled promptly")
        guard case .done(let reasonB, let pB, let nB)? = b.waitDone() else { return XCTFail("b did not finish") }
        XCTAssertEqual(reasonB, "length")
        XCTAssertEqual(pB, prompt.count)
        XCTAssertEqual(nB, 10)
        XCTAssertEqual(b.tokenCount, 10)
        engine.drain()
        XCTAssertEqual(engine.load.active, 0)
        XCTAssertThrowsError(try engine.submit(ServeRequest(prompt: prompt, maxTokens: 1), isCancelled: { false }, emit: { _ in })) { e in
            XCTAssertEqual(e as? ServeRejection, .stopping)
        }
    }

    /// --speculative lookup in the server: greedy requests draft from their own prompt and text,
    /// the drafts join the step's batched pass, and every request's tokens equal the plain
    /// engine's (stories260K, 3 concurrent greedy requests that repeat their prompt's story, one
    /// sampled request alongside that decodes as usual); drafts were accepted. Also on a banded
    /// (ring) cache, where rolling back needs the undo slots the engine asks for.
    func testSpeculativeLookupKeepsGreedyTokens() throws {
        let url = try Stories.cached(.q8_0)
        for attention in ["dense", "banded:64"] {
            func run(_ spec: SpeculativeOptions?) throws -> ([[Int32]], ServingEngine) {
                var o = LoadOptions(threads: 2, attention: AttentionConfig(attention: attention, sinks: 0, kvType: .f16), kvPositions: 512)
                o.kvRollback = spec.map { $0.draftLength + 1 } ?? 1
                let lm = try LoadedModel(path: url.path, options: o)
                let engine = try ServingEngine(loaded: lm, parallel: 4, contextPerSlot: 512, queueLimit: 4, speculative: spec)
                let stories = ["Once upon a time, there was a little girl named Lily. She liked to play with her ball in the park.",
                               "Tom had a big red truck. He drove it to the farm every day to see the cows.",
                               "The sun was hot. Mia and her dog went to the lake to swim and play in the water."]
                let prompts = stories.map { lm.tokenizer.encode($0 + "\n" + $0.split(separator: " ").prefix(4).joined(separator: " ")) }
                var events: [Events] = []
                for (i, p) in prompts.enumerated() {
                    let e = Events(); events.append(e)
                    try engine.submit(ServeRequest(prompt: p, maxTokens: 70 + 10 * i), isCancelled: { false }, emit: e.add)
                }
                let sampled = Events()
                try engine.submit(ServeRequest(prompt: prompts[0], maxTokens: 40, sampling: SamplingConfig(temperature: 0.8, topK: 0, topP: 0.9, seed: 3)),
                                  isCancelled: { false }, emit: sampled.add)
                for e in events + [sampled] {
                    guard case .done(_, _, let n)? = e.waitDone(timeout: 60) else { XCTFail("no done event"); return ([], engine) }
                    XCTAssertGreaterThan(n, 0)
                }
                let ids = events.map { e in e.list.flatMap { if case .text(_, let ids) = $0 { return ids }; return [] } }
                return (ids, engine)
            }
            let (plain, _) = try run(nil)
            let (spec, engine) = try run(SpeculativeOptions(kind: .lookup, draftLength: 6))
            XCTAssertEqual(spec, plain, "\(attention): greedy tokens with speculation")
            XCTAssertGreaterThan(engine.speculation.passes, 0, attention)
            XCTAssertGreaterThan(engine.speculation.accepted, 0, "\(attention): some drafts accepted")
            XCTAssertTrue(plain.allSatisfy { $0.count >= 20 }, "\(plain.map(\.count))")
        }
    }

    /// A request that joins while another decodes is prefilled in chunks that ride in the decode
    /// steps' passes (chunk 5 here: its 40+ token prompt takes 8+ steps); every request's greedy
    /// tokens equal those of an engine that prefills each prompt whole (the products are
    /// bit-identical at any row count, so no tolerance is needed).
    func testChunkedPrefillKeepsGreedyTokens() throws {
        let url = try Stories.cached(.q8_0)
        func run(chunk: Int) throws -> ([[Int32]], Int) {
            let lm = try LoadedModel(path: url.path, options: LoadOptions(threads: 2, kvPositions: 512))
            let engine = try ServingEngine(loaded: lm, parallel: 3, contextPerSlot: 512, queueLimit: 3, prefillChunk: chunk)
            let first = Events()
            try engine.submit(ServeRequest(prompt: lm.tokenizer.encode("Once upon a time"), maxTokens: 200), isCancelled: { false }, emit: first.add)
            while first.tokenCount < 2 { usleep(500) }   // decoding: the next prompts join its steps
            let long = ["Tom had a big red truck. He drove it to the farm every day to see the cows and the pigs and the hens. One day the truck would not go, so Tom walked to the farm with his friend Sam.",
                        "The sun was hot. Mia and her dog went to the lake to swim and play in the water all day long. When the sky got dark, they went home and Mom made soup for dinner."]
            var events = [first]
            for text in long {
                let p = lm.tokenizer.encode(text)
                XCTAssertGreaterThan(p.count, 8 * 5, "a prompt of several chunks")
                let e = Events(); events.append(e)
                try engine.submit(ServeRequest(prompt: p, maxTokens: 40), isCancelled: { false }, emit: e.add)
            }
            for e in events {
                guard case .done(_, _, let n)? = e.waitDone(timeout: 60) else { XCTFail("no done event"); return ([], 0) }
                XCTAssertGreaterThan(n, 0)
            }
            engine.drain()
            return (events.map { e in e.list.flatMap { if case .text(_, let ids) = $0 { return ids }; return [] } }, engine.chunksBesideDecoding)
        }
        let (whole, _) = try run(chunk: 128)
        let (chunked, chunks) = try run(chunk: 5)
        XCTAssertEqual(chunked, whole)
        XCTAssertGreaterThanOrEqual(chunks, 2 * 8, "both joining prompts prefilled in chunks beside the decoding request")
        XCTAssertTrue(whole.allSatisfy { $0.count >= 20 }, "\(whole.map(\.count))")
    }
}
