import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// `run generate` (Generator), `run chat` (ChatSession), a `run serve` slot (ServingEngine) and
/// the public API (`Model.generate`) all decode through `DecodeSession`: on the same prompt and
/// sampling settings they must give the same tokens and the same text, greedy and seeded.
final class DecodeSessionTests: XCTestCase {
    final class Events: @unchecked Sendable {
        let lock = NSCondition()
        var text = "", ids: [Int32] = [], done: ServeEvent?
        func add(_ e: ServeEvent) {
            lock.lock(); defer { lock.broadcast(); lock.unlock() }
            switch e {
            case .text(let t, let i): text += t; ids += i
            default: done = e
            }
        }
        func wait() -> ServeEvent? {
            lock.lock(); defer { lock.unlock() }
            let deadline = Date().addingTimeInterval(120)
            while done == nil && Date() < deadline { lock.wait(until: min(deadline, Date().addingTimeInterval(0.05))) }
            return done
        }
    }

    /// SmolLM2 q8_0 (the chat tests' file), one user turn rendered by its template: the chat's
    /// reply equals the other three decoding the rendered text, for greedy decoding and for a
    /// seeded top-p sample, and every path stops at <|im_end|> or its length.
    func testGenerateChatServeAndPublicAPIAgree() async throws {
        let qlm = try ChatTests.smolQ8()
        let lm = try LoadedModel(path: qlm.path, options: LoadOptions(threads: 2, kvPositions: 256))
        let t = try ChatTemplate.resolve(template: lm.file.metadata.tokenizer.chatTemplate, override: nil, tokenizer: lm.tokenizer, file: qlm.path)
        let user = "Write one sentence about the sea."
        let rendered = t.render([ChatMessage(role: "user", content: user)], addGenerationPrompt: true)
        let api = try Model(path: qlm.path, options: .init(threads: 2, maxContext: 256))
        let maxTokens = 24
        for sampling in [SamplingConfig(), SamplingConfig(temperature: 0.9, topK: 0, topP: 0.95, seed: 11)] {
            let what = "temperature \(sampling.temperature)"
            // chat
            let session = try ChatSession(lm, template: t, system: nil, sampling: sampling)
            XCTAssertEqual(session.promptText(for: user), rendered)
            var chatStreamed = ""
            let chat = try session.reply(to: user, maxNewTokens: maxTokens) { chatStreamed += $0 }
            XCTAssertEqual(chatStreamed, chat.text, what)
            XCTAssertGreaterThanOrEqual(chat.tokens.count, 4, what)

            // generate (the prompt's ids are the chat's: the tokenizer reads the turn markers as special tokens)
            var streamed: [UInt8] = []
            var o = GenerationOptions(maxNewTokens: maxTokens, sampling: sampling)
            o.echoPrompt = false
            let g = try Generator.generate(lm, prompt: rendered, options: o) { streamed += $0 }
            XCTAssertEqual(g.promptTokens, chat.promptTokens, what)
            XCTAssertEqual(g.tokens, chat.tokens, what)
            XCTAssertEqual(String(decoding: streamed, as: UTF8.self), chat.text, what)
            XCTAssertEqual(chat.stopReason == "end_of_turn" ? "end_of_text" : chat.stopReason, g.stopReason, what)

            // a server slot (beside a second request, so the step is a batched pass of two rows)
            let engine = try ServingEngine(loaded: lm, parallel: 2, contextPerSlot: 256, queueLimit: 2)
            let a = Events(), b = Events()
            let stops = Set<Int32>([lm.tokenizer.eosID, lm.tokenizer.bosID].compactMap { $0 })
            try engine.submit(ServeRequest(prompt: g.promptTokens, maxTokens: maxTokens, sampling: sampling, stopTokens: stops),
                              isCancelled: { false }, emit: a.add)
            try engine.submit(ServeRequest(prompt: lm.tokenizer.encode("Hello"), maxTokens: maxTokens), isCancelled: { false }, emit: b.add)
            guard case .done(let reason, let promptTokens, let completionTokens)? = a.wait(), b.wait() != nil else {
                return XCTFail("the server requests did not finish")
            }
            engine.drain()
            XCTAssertEqual(a.ids, g.tokens, what)
            XCTAssertEqual(a.text, chat.text, what)
            XCTAssertEqual(promptTokens, g.promptTokens.count)
            XCTAssertEqual(completionTokens, g.tokens.count)
            XCTAssertEqual(reason, g.stopReason == "max_tokens" ? "length" : "stop", what)

            // the public API (its own load of the same file)
            var apiText = "", apiIDs: [Int32] = []
            let p = Model.Parameters(maxTokens: maxTokens, temperature: sampling.temperature, topK: sampling.topK, topP: sampling.topP,
                                     seed: sampling.seed)
            for try await piece in api.generate(rendered, p) { apiText += piece.text; apiIDs += piece.tokens }
            XCTAssertEqual(apiIDs, g.tokens, what)
            XCTAssertEqual(apiText, chat.text, what)
        }
    }

    /// Stop sequences cut the text where they start, also when one spans tokens, and hold back
    /// text that may start one; stop tokens end it before they are emitted; the usage count is
    /// the tokens emitted. stories260K q8_0, greedy.
    func testStopRulesOnOneSession() throws {
        let lm = try LoadedModel(path: try Stories.cached(.q8_0).path, options: LoadOptions(threads: 2, kvPositions: 256))
        let prompt = lm.tokenizer.encode("Once upon a time")
        func decode(_ rules: StopRules) throws -> (text: String, pieces: [String], ids: [Int32], session: DecodeSession) {
            var pieces: [String] = [], ids: [Int32] = []
            let s = try DecodeSession(model: lm.model, tokenizer: lm.tokenizer, prompt: prompt, rules: rules, positionLimit: 256) { b, i in
                pieces.append(String(decoding: b, as: UTF8.self)); ids += i
            }
            try s.prefill()
            try s.run()
            return (pieces.joined(), pieces, ids, s)
        }
        let plain = try decode(StopRules(maxTokens: 40))
        XCTAssertEqual(plain.session.stopReason, .maxTokens)
        XCTAssertEqual(plain.ids, plain.session.tokens)
        XCTAssertEqual(plain.session.tokens.count, 40)
        XCTAssertEqual(plain.text, String(decoding: plain.session.text, as: UTF8.self))
        // A stop made of the end of one word and the start of the next (spans a token boundary).
        let words = plain.text.split(separator: " ", omittingEmptySubsequences: false)
        XCTAssertGreaterThan(words.count, 6, plain.text)
        let stop = String(words[3].suffix(2)) + " " + String(words[4].prefix(2))
        let cut = try decode(StopRules(maxTokens: 40, sequences: ["\u{2603}never", stop]))
        let at = try XCTUnwrap(plain.text.range(of: stop), plain.text)
        XCTAssertEqual(cut.text, String(plain.text[..<at.lowerBound]))
        XCTAssertEqual(cut.session.stopReason, .stopSequence)
        XCTAssertEqual(cut.session.stopReason?.finishReason, "stop")
        XCTAssertFalse(cut.pieces.contains { $0.contains(stop) })
        // A stop token: the generation ends before it, which is not counted.
        let fifth = plain.session.tokens[5], first = plain.session.tokens.firstIndex(of: fifth)!
        let byToken = try decode(StopRules(maxTokens: 40, tokens: [fifth], endOfTurn: fifth))
        XCTAssertEqual(byToken.session.tokens, Array(plain.session.tokens.prefix(first)))
        XCTAssertEqual(byToken.session.stopReason, .endOfTurn)
        // No room: the token sampled at the limit is the last.
        let short = try DecodeSession(model: lm.model, tokenizer: lm.tokenizer, prompt: prompt, rules: StopRules(maxTokens: 40),
                                      positionLimit: prompt.count + 3) { _, _ in }
        try short.prefill()
        XCTAssertEqual(try short.run(), .contextFull)
        XCTAssertEqual(short.tokens, Array(plain.session.tokens.prefix(4)))
    }
}
