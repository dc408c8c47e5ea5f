import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// Chat prompts rendered by QuantLM against the templates themselves (jinja2,
/// Tests/reference/chat_template_oracle.py), format detection and its errors, and `run chat`
/// end to end on SmolLM2.
final class ChatTests: XCTestCase {
    static let conversations: [[ChatMessage]] = {
        func u(_ s: String) -> ChatMessage { ChatMessage(role: "user", content: s) }
        func a(_ s: String) -> ChatMessage { ChatMessage(role: "assistant", content: s) }
        let sys = ChatMessage(role: "system", content: "You are terse. Answer in one line.")
        return [
            [u("What is 2+2?"), a("4."), u("And 3+3?")],
            [sys, u("What is 2+2?"), a("4."), u("And 3+3?")],
            [u("  padded question \n\n"), a("\nan answer with spaces  "), u("next\tone ")],
            [sys, u("Écris «bonjour» 😀 中文"), a("bonjour"), u("<b>html</b>\n\n```swift\nlet x = 1\n```")],
            [u("one turn only")],
        ]
    }()

    func temp(_ name: String) -> URL { Fixtures.tempRoot.appendingPathComponent(name) }

    func jinja(_ source: [String], _ name: String) throws -> [String] {
        let conv = temp("chat-\(name).json"), out = temp("chat-\(name)-out.json")
        let obj = Self.conversations.map { $0.map { ["role": $0.role, "content": $0.content] } }
        try JSONSerialization.data(withJSONObject: obj).write(to: conv)
        _ = try Fixtures.python("chat_template_oracle.py", ["render"] + source + [conv.path, out.path])
        return try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [String]
    }

    /// The turn-by-turn pieces `run chat` prefills, joined with the replies, give the full rendering.
    func checkIncremental(_ t: ChatTemplate) {
        for c in Self.conversations {
            let system = c.first?.role == "system" ? c[0].content : nil
            let turns = Array(c.dropFirst(system == nil ? 0 : 1))
            var s = t.opening(system: system)
            for (k, m) in turns.enumerated() {
                if m.role == "user" {
                    s += t.turn(m, first: k == 0, system: system) + t.generationPrompt
                } else {
                    s += (t.format == .gemma ? m.content.trimmingCharacters(in: .whitespacesAndNewlines) : m.content) + t.endOfReply
                }
            }
            XCTAssertEqual(s, t.render(c, addGenerationPrompt: true), "\(t.format) incremental vs whole for \(c.map(\.content))")
        }
    }

    func testSmolLM2PromptMatchesItsTemplate() throws {
        let gguf = try SharedData.model(GGUFTokenizerTests.smolName)
        let data = try GGUFReader.tokenizerData(of: gguf)
        let tok = try BPETokenizer(data)
        let t = try ChatTemplate.resolve(template: data.chatTemplate, override: nil, tokenizer: tok, file: gguf.path)
        XCTAssertEqual(t.format, .chatml)
        XCTAssertEqual(t.defaultSystem, "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        let want = try jinja(["--gguf", gguf.path], "smollm2")
        for (c, w) in zip(Self.conversations, want) {
            XCTAssertEqual(t.render(c, addGenerationPrompt: true), w)
        }
        checkIncremental(t)
        XCTAssertEqual(tok.specialID("<|im_end|>"), 2)
        XCTAssertEqual(tok.encode("<|im_start|>assistant\n", allowSpecial: true, addSpecial: false).first, 1)
    }

    /// Gemma 3's GGUF here carries no chat template, so the format comes from the vocabulary's
    /// turn tokens; the oracle renders Tests/Fixtures/gemma3_chat_template.jinja, Gemma 3's
    /// published template reduced to text-only content.
    func testGemmaPromptMatchesItsTemplate() throws {
        let gguf = try SharedData.model(SentencePieceTokenizerTests.gemmaName)
        let data = try GGUFReader.tokenizerData(of: gguf)
        XCTAssertNil(data.chatTemplate)
        let tok = try SentencePieceTokenizer(data)
        let t = try ChatTemplate.resolve(template: nil, override: nil, tokenizer: tok, file: gguf.path)
        XCTAssertEqual(t.format, .gemma)
        let fixture = SharedData.packageRoot.appendingPathComponent("Tests/Fixtures/gemma3_chat_template.jinja")
        let fromText = try ChatTemplate.resolve(template: String(contentsOf: fixture, encoding: .utf8), override: nil, tokenizer: tok, file: "x")
        XCTAssertEqual(fromText, t)
        let want = try jinja(["--template", fixture.path], "gemma")
        for (c, w) in zip(Self.conversations, want) {
            XCTAssertEqual(t.render(c, addGenerationPrompt: true), w)
        }
        checkIncremental(t)
        let ids = tok.encode(t.render(Self.conversations[0], addGenerationPrompt: true))
        XCTAssertEqual(Array(ids.prefix(2)), [2, 105], "BOS, then <start_of_turn>")
        XCTAssertEqual(ids.filter { $0 == 106 }.count, 3, "three turns end with <end_of_turn>")
    }

    func testDetectionErrorsNameTheFileAndTheOverride() throws {
        let gguf = try SharedData.model(GGUFTokenizerTests.smolName)
        let tok = try BPETokenizer(GGUFReader.tokenizerData(of: gguf))
        XCTAssertThrowsError(try ChatTemplate.resolve(template: "{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}",
                                                      override: nil, tokenizer: tok, file: "model.qlm")) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains("model.qlm") && s.contains("not recognised") && s.contains("--template chatml|gemma"), s)
        }
        XCTAssertThrowsError(try ChatTemplate.resolve(template: nil, override: "gemma", tokenizer: tok, file: "model.qlm")) { e in
            XCTAssertTrue("\(e)".contains("<start_of_turn>") && "\(e)".contains("model.qlm"), "\(e)")
        }
        XCTAssertThrowsError(try ChatTemplate.resolve(template: nil, override: "llama3", tokenizer: tok, file: "model.qlm")) { e in
            XCTAssertTrue("\(e)".contains("llama3"), "\(e)")
        }
        // The override wins over the template text; ChatML keeps the template's default system.
        let forced = try ChatTemplate.resolve(template: "{% if x != 'system' %}{{ '<|im_start|>system\\nDefault sys<|im_end|>\\n' }}{% endif %}[INST]",
                                              override: "chatml", tokenizer: tok, file: "m")
        XCTAssertEqual(forced, ChatTemplate(format: .chatml, defaultSystem: "Default sys"))
        let plain = try ChatTemplate.resolve(template: nil, override: nil, tokenizer: tok, file: "m")
        XCTAssertEqual(plain, ChatTemplate(format: .chatml), "no template: ChatML from the vocabulary's <|im_start|>/<|im_end|>")
        let llama2c = try TokenizerLoader.load(path: SharedData.path("models/stories260K/tok512.bin").path, vocabSize: 512)
        XCTAssertThrowsError(try ChatTemplate.resolve(template: nil, override: nil, tokenizer: llama2c, file: "stories.qlm")) { e in
            XCTAssertTrue("\(e)".contains("stories.qlm"), "\(e)")
        }
    }

    /// SmolLM2 converted to q8_0 (once per test run; DecodeSessionTests use it too).
    static func smolQ8() throws -> URL {
        let gguf = try SharedData.model(GGUFTokenizerTests.smolName)
        let qlm = Fixtures.tempRoot.appendingPathComponent("smollm2-chat-q8_0.qlm")
        if !FileManager.default.fileExists(atPath: qlm.path) {
            let c = try Executables.run("convert", [gguf.path, "-o", qlm.path, "--type", "q8_0", "--threads", "2"])
            XCTAssertEqual(c.status, 0, c.stderr)
        }
        return qlm
    }

    /// The second turn, prefilled after the first on the same KV cache, gives the same greedy
    /// reply as generating from the whole rendered conversation at once.
    func testSecondTurnOnKeptCacheEqualsWholePrompt() throws {
        let qlm = try Self.smolQ8()
        let lm = try LoadedModel(path: qlm.path, options: LoadOptions(threads: 2, kvPositions: 512))
        let t = try ChatTemplate.resolve(template: lm.file.metadata.tokenizer.chatTemplate, override: nil, tokenizer: lm.tokenizer, file: qlm.path)
        let session = try ChatSession(lm, template: t, system: nil, sampling: SamplingConfig())
        let u1 = "What is the capital of Germany?", u2 = "What is 2 plus 2?"
        let r1 = try session.reply(to: u1, maxNewTokens: 40) { _ in }
        let r2 = try session.reply(to: u2, maxNewTokens: 40) { _ in }
        XCTAssertEqual(r1.stopReason, "end_of_turn")
        XCTAssertEqual(r2.stopReason, "end_of_turn")
        XCTAssertEqual(r2.promptTokens.first, 2, "the second turn starts by closing the first reply with <|im_end|>")
        XCTAssertEqual(r2.positions, r1.positions + r2.promptTokens.count + r2.tokens.count)
        let whole = t.render([ChatMessage(role: "user", content: u1), ChatMessage(role: "assistant", content: r1.text),
                              ChatMessage(role: "user", content: u2)], addGenerationPrompt: true)
        let g = try Generator.generate(lm, prompt: whole, options: GenerationOptions(maxNewTokens: 40, sampling: SamplingConfig())) { _ in }
        XCTAssertEqual(g.promptTokens.count, r1.positions + r2.promptTokens.count, "the whole prompt is the cache's contents")
        XCTAssertEqual(g.tokens, r2.tokens, "\(r2.text.debugDescription) vs \(g.text.suffix(80).debugDescription)")
        print("SmolLM2 q8_0, two turns: \(r1.text.debugDescription), \(r2.text.debugDescription)")
    }

    /// `run chat --prompt` on SmolLM2 converted to q8_0: a non-empty greedy answer that stops at
    /// <|im_end|>, the prompt as the template renders it; and a model without chat tokens fails
    /// with a message naming the file and --template. (Asked for France's capital, the q8_0
    /// and keep files answer "L'Étoile, ..." and ramble: in f32 "The" leads "L" by 0.08 logits,
    /// which quantized arithmetic flips; the f32 file answers "The capital of France is Paris.")
    func testRunChatOneShotOnSmolLM2() throws {
        let qlm = try Self.smolQ8()
        let gguf = try SharedData.model(GGUFTokenizerTests.smolName)
        let question = "What is the capital of Germany?"
        let r = try Executables.run("run", ["chat", qlm.path, "--prompt", question, "--temperature", "0", "--max-tokens", "80",
                                            "--threads", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        XCTAssertEqual(obj["template"] as? String, "chatml")
        let want = try jinja(["--gguf", gguf.path], "smollm2-cli")   // conversation 4 is [user "one turn only"]
        let prompt = try XCTUnwrap(obj["prompt"] as? String)
        XCTAssertEqual(prompt, want[4].replacingOccurrences(of: "one turn only", with: question))
        let reply = try XCTUnwrap(obj["reply"] as? [String: Any])
        let text = try XCTUnwrap(reply["text"] as? String)
        print("SmolLM2 q8_0 chat, greedy: \(text.debugDescription)")
        XCTAssertFalse(text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        XCTAssertEqual(reply["stop_reason"] as? String, "end_of_turn")
        XCTAssertFalse(text.contains("<|im_end|>"))
        XCTAssertTrue(text.contains("Berlin"), text)      // measured: "The capital of Germany is Berlin."
        let tokens = try XCTUnwrap(reply["tokens"] as? [Int])
        XCTAssertFalse(tokens.contains(2), "<|im_end|> (2) ends the reply and is not part of it")

        // Two turns from stdin: the second prefills only its own turn after the first reply.
        let two = try Executables.run("run", ["chat", qlm.path, "--temperature", "0", "--max-tokens", "40", "--threads", "2"],
                                      stdin: "What is the capital of Germany?\n\nWhat is 2 plus 2?\n")
        XCTAssertEqual(two.status, 0, two.stderr)
        let lines = two.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2, two.stdout)
        XCTAssertEqual(lines.first, text, "the first turn as in one-shot mode")
        XCTAssertTrue(lines.last?.contains("4") == true, two.stdout)     // measured: "The answer is 4."

        let stories = try Fixtures.stories(.q8_0).path
        let bad = try Executables.run("run", ["chat", stories, "--prompt", "hi", "--threads", "1"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains(stories), bad.stderr)
        let badFlag = try Executables.run("run", ["chat", qlm.path, "--prompt", "hi", "--template", "vicuna"])
        XCTAssertNotEqual(badFlag.status, 0)
        XCTAssertTrue(badFlag.stderr.contains("--template"), badFlag.stderr)
    }

    /// `run chat --prompt` on Gemma 3 270M converted to q8_0: the format comes from the
    /// vocabulary (the GGUF has no template), the prompt is what Gemma 3's template renders and
    /// tokenizes as BOS, <start_of_turn>user\n … <end_of_turn>\n<start_of_turn>model\n, and the
    /// greedy reply is non-empty. gemma-3-270m is the pretrained model, not the instruction-tuned
    /// one: it does not answer or end its turn (measured: it repeats the question), so the stop
    /// at <end_of_turn> is shown on SmolLM2 only.
    func testRunChatOneShotOnGemma() throws {
        let gguf = try SharedData.model(SentencePieceTokenizerTests.gemmaName)
        let qlm = temp("gemma3-chat-q8_0.qlm")
        if !FileManager.default.fileExists(atPath: qlm.path) {
            let c = try Executables.run("convert", [gguf.path, "-o", qlm.path, "--type", "q8_0", "--threads", "2"])
            XCTAssertEqual(c.status, 0, c.stderr)
        }
        let question = "What is the capital of France?"
        let r = try Executables.run("run", ["chat", qlm.path, "--prompt", question, "--system", "Answer in one sentence.",
                                            "--temperature", "0", "--max-tokens", "64", "--threads", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        XCTAssertEqual(obj["template"] as? String, "gemma")
        let fixture = SharedData.packageRoot.appendingPathComponent("Tests/Fixtures/gemma3_chat_template.jinja")
        let conv = temp("chat-gemma-cli.json"), out = temp("chat-gemma-cli-out.json")
        try JSONSerialization.data(withJSONObject: [[["role": "system", "content": "Answer in one sentence."], ["role": "user", "content": question]]]).write(to: conv)
        _ = try Fixtures.python("chat_template_oracle.py", ["render", "--template", fixture.path, conv.path, out.path])
        let want = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [String]
        XCTAssertEqual(obj["prompt"] as? String, want.first)
        let reply = try XCTUnwrap(obj["reply"] as? [String: Any])
        let text = try XCTUnwrap(reply["text"] as? String)
        print("Gemma 3 270M q8_0 chat, greedy: \(text.debugDescription)")
        XCTAssertFalse(text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        let prompt = try XCTUnwrap(reply["prompt_tokens"] as? [Int])
        XCTAssertEqual(Array(prompt.prefix(2)), [2, 105], "BOS, <start_of_turn>")
        XCTAssertEqual(prompt.suffix(3).first, 105, "<start_of_turn>model\\n ends the prompt")
        XCTAssertEqual(prompt.last, 107)
    }
}
