import Foundation
import Quant

/// A tokenizer with named special tokens, as chat needs: turn markers are matched in the
/// rendered prompt, and BOS is added only at the start of a conversation.
package protocol ChatTokenizer: Tokenizer {
    /// `allowSpecial`: special-token text becomes its id; `addSpecial`: BOS/EOS as the
    /// vocabulary asks.
    func encode(_ text: String, allowSpecial: Bool, addSpecial: Bool) -> [Int32]
    /// The id of a special (control / user-defined) token by its text, e.g. "<|im_end|>".
    func specialID(_ text: String) -> Int32?
    /// `tokenizer.ggml.add_bos_token`.
    var addBos: Bool { get }
}

extension BPETokenizer: ChatTokenizer {}
extension SentencePieceTokenizer: ChatTokenizer {}

package struct ChatMessage: Sendable, Equatable, Codable {
    package var role: String
    package var content: String
    package init(role: String, content: String) { self.role = role; self.content = content }
}

/// The chat formats QuantLM renders itself (no Jinja engine): recognised from the text of the
/// model's `tokenizer.chat_template`, or, when the file has none, from its vocabulary.
package enum ChatFormat: String, Sendable, CaseIterable {
    /// `<|im_start|>role\n…<|im_end|>\n`, generation prompt `<|im_start|>assistant\n` (SmolLM2, Qwen).
    case chatml
    /// `<start_of_turn>user\n…<end_of_turn>\n`, generation prompt `<start_of_turn>model\n`;
    /// no system role: the system text and a blank line open the first user turn; contents
    /// are trimmed (Gemma 2 and 3).
    case gemma

    /// The token that ends a turn (generation stops there).
    var endOfTurn: String {
        switch self {
        case .chatml: return "<|im_end|>"
        case .gemma: return "<end_of_turn>"
        }
    }

    /// Special tokens the vocabulary must have.
    var requiredTokens: [String] {
        switch self {
        case .chatml: return ["<|im_start|>", "<|im_end|>"]
        case .gemma: return ["<start_of_turn>", "<end_of_turn>"]
        }
    }
}

package struct ChatTemplateError: Error, CustomStringConvertible {
    package let message: String
    package var description: String { message }
}

/// A chat format plus what the template text adds to it (ChatML's default system prompt).
package struct ChatTemplate: Sendable, Equatable {
    package let format: ChatFormat
    /// ChatML: the system turn the template inserts when the conversation has none (SmolLM2:
    /// "You are a helpful AI assistant named SmolLM, trained by Hugging Face").
    package let defaultSystem: String?

    package init(format: ChatFormat, defaultSystem: String? = nil) {
        self.format = format; self.defaultSystem = defaultSystem
    }

    /// Picks the format: `override` ("chatml", "gemma"; nil or "auto" = detect) or the
    /// template text, or the vocabulary when the file has no template. Errors name `file`
    /// and point at `--template`.
    package static func resolve(template: String?, override: String?, tokenizer: any Tokenizer, file: String) throws -> ChatTemplate {
        let hint = "pass --template \(ChatFormat.allCases.map(\.rawValue).joined(separator: "|")) to choose one"
        guard let tok = tokenizer as? any ChatTokenizer else {
            throw ChatTemplateError(message: "\(file): its tokenizer has no special tokens, so it cannot hold a chat (chat needs a GGUF-derived vocabulary)")
        }
        var chosen: ChatTemplate
        if let override, override != "auto" {
            guard let f = ChatFormat(rawValue: override) else {
                throw ChatTemplateError(message: "unknown --template '\(override)' (expected auto, \(ChatFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            chosen = ChatTemplate(format: f, defaultSystem: f == .chatml ? template.flatMap(chatMLDefaultSystem) : nil)
        } else if let template {
            if template.contains("<|im_start|>") {
                chosen = ChatTemplate(format: .chatml, defaultSystem: chatMLDefaultSystem(template))
            } else if template.contains("<start_of_turn>") {
                chosen = ChatTemplate(format: .gemma)
            } else {
                let head = template.prefix(80).replacingOccurrences(of: "\n", with: "\\n")
                throw ChatTemplateError(message: "\(file): chat template not recognised (neither ChatML's <|im_start|> nor Gemma's <start_of_turn> appears in \"\(head)…\"); \(hint)")
            }
        } else if let f = ChatFormat.allCases.first(where: { f in f.requiredTokens.allSatisfy { tok.specialID($0) != nil } }) {
            chosen = ChatTemplate(format: f)     // no template text (e.g. gemma-3-270m's GGUF): the vocabulary's turn tokens
        } else {
            throw ChatTemplateError(message: "\(file) has no chat template (tokenizer.chat_template) and its vocabulary has no ChatML or Gemma turn tokens; \(hint)")
        }
        if let missing = chosen.format.requiredTokens.first(where: { tok.specialID($0) == nil }) {
            throw ChatTemplateError(message: "\(file): the \(chosen.format.rawValue) chat format needs the special token \(missing), which this vocabulary lacks; \(hint)")
        }
        return chosen
    }

    /// SmolLM2-style templates write a literal system turn for conversations without one:
    /// `'<|im_start|>system\nYou are …<|im_end|>\n'` inside `{% if … != 'system' %}`.
    static func chatMLDefaultSystem(_ template: String) -> String? {
        guard template.contains("!= 'system'") || template.contains("!= \"system\"") else { return nil }
        for marker in ["<|im_start|>system\\n", "<|im_start|>system\n"] {
            guard let r = template.range(of: marker), let end = template.range(of: "<|im_end|>", range: r.upperBound ..< template.endIndex) else { continue }
            let text = String(template[r.upperBound ..< end.lowerBound])
            guard !text.contains("{"), !text.contains("'"), !text.contains("\""), !text.contains("\\") else { continue }
            return text
        }
        return nil
    }

    // MARK: - Rendering

    /// The whole conversation as the model's template renders it, without BOS (the tokenizer
    /// adds it as the vocabulary says): what `tokenizer.chat_template` gives with
    /// `bos_token = ""`. A first message with role "system" is the system prompt.
    package func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
        let system = messages.first?.role == "system" ? messages[0].content : nil
        var out = opening(system: system)
        for (k, m) in messages.dropFirst(system == nil ? 0 : 1).enumerated() {
            out += turn(m, first: k == 0, system: system)
        }
        if addGenerationPrompt { out += generationPrompt }
        return out
    }

    /// What opens a conversation: ChatML's system turn (given, or the template's default);
    /// nothing for Gemma (its system text opens the first turn).
    package func opening(system: String?) -> String {
        switch format {
        case .chatml:
            guard let s = system ?? defaultSystem else { return "" }
            return "<|im_start|>system\n\(s)<|im_end|>\n"
        case .gemma:
            return ""
        }
    }

    /// One message after the opening; `first`: the conversation's first one after the system
    /// prompt (Gemma puts the system text and a blank line in front of it).
    package func turn(_ m: ChatMessage, first: Bool, system: String?) -> String {
        switch format {
        case .chatml:
            return "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n"
        case .gemma:
            let role = m.role == "assistant" ? "model" : m.role
            let prefix = first ? (system.map { $0 + "\n\n" } ?? "") : ""
            return "<start_of_turn>\(role)\n\(prefix)\(Self.pythonTrim(m.content))<end_of_turn>\n"
        }
    }

    package var generationPrompt: String {
        switch format {
        case .chatml: return "<|im_start|>assistant\n"
        case .gemma: return "<start_of_turn>model\n"
        }
    }

    /// What closes the model's reply in the rendered conversation: the end-of-turn token and
    /// the newline after it.
    package var endOfReply: String { format.endOfTurn + "\n" }

    package var endOfTurnToken: String { format.endOfTurn }

    /// Python's `str.strip()` (Jinja's `trim`): removes characters whose `isspace()` is true.
    static func pythonTrim(_ s: String) -> String {
        func isSpace(_ c: Unicode.Scalar) -> Bool {
            switch c.value {
            case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
            default: return false
            }
        }
        let u = s.unicodeScalars
        guard let first = u.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = u.lastIndex(where: { !isSpace($0) })!
        return String(u[first...last])
    }
}

/// One reply of the model.
package struct ChatReply: Codable, Sendable {
    /// Ids prefilled for this turn (the closing of the previous reply, the user turn, the
    /// generation prompt; BOS first in the first turn).
    package var promptTokens: [Int32]
    package var tokens: [Int32]
    package var text: String
    /// "end_of_turn", "end_of_text", "max_tokens" or "context_full".
    package var stopReason: String
    package var promptSeconds: Double
    package var decodeSeconds: Double
    /// KV positions in use after the reply.
    package var positions: Int

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", tokens, text, stopReason = "stop_reason"
        case promptSeconds = "prompt_seconds", decodeSeconds = "decode_seconds", positions
    }
}

/// A conversation over one KV cache: each turn prefills only what is new (the end of the
/// previous reply, the user's turn and the generation prompt) after the tokens already in the
/// cache, then samples until the end-of-turn token (or EOS). The sampled reply tokens stay in
/// the cache as sampled; the end-of-turn token that stopped them is prefilled with the next
/// turn, so the cache always holds the rendered conversation.
package final class ChatSession {
    package let lm: LoadedModel
    package let template: ChatTemplate
    package let tokenizer: any ChatTokenizer
    package private(set) var messages: [ChatMessage] = []
    /// Positions filled in the KV cache.
    package private(set) var positions = 0
    private let system: String?
    private let sampler: Sampler
    private let stops: Set<Int32>
    private let endOfTurnID: Int32
    /// Text to prefill before the next user turn (the close of the previous reply).
    private var pendingText = ""
    /// A sampled token not yet in the cache (the reply hit max tokens right after it).
    private var pendingToken: Int32?

    package init(_ lm: LoadedModel, template: ChatTemplate, system: String?, sampling: SamplingConfig) throws {
        guard let tok = lm.tokenizer as? any ChatTokenizer else {
            throw ChatTemplateError(message: "\(lm.file.path): its tokenizer has no special tokens for chat")
        }
        guard let eot = tok.specialID(template.endOfTurnToken) else {
            throw ChatTemplateError(message: "\(lm.file.path): the vocabulary lacks \(template.endOfTurnToken)")
        }
        self.lm = lm
        self.template = template
        self.tokenizer = tok
        self.system = system
        self.endOfTurnID = eot
        self.stops = Set([eot, tok.eosID].compactMap { $0 })
        self.sampler = Sampler(vocab: lm.model.shape.vocabSize, config: sampling)
        if let system { messages.append(ChatMessage(role: "system", content: system)) }
    }

    /// The text the next user turn prefills (for tests and `--json`).
    package func promptText(for user: String) -> String {
        if positions == 0 {
            return template.opening(system: system) + template.turn(ChatMessage(role: "user", content: user), first: true, system: system)
                + template.generationPrompt
        }
        return pendingText + template.turn(ChatMessage(role: "user", content: user), first: false, system: system) + template.generationPrompt
    }

    /// Answers `user`, calling `onText` with whole UTF-8 characters as they are sampled.
    package func reply(to user: String, maxNewTokens: Int, onText: (String) -> Void) throws -> ChatReply {
        let model = lm.model
        let text = promptText(for: user)
        var ids = tokenizer.encode(text, allowSpecial: true, addSpecial: false)
        if positions == 0, tokenizer.addBos, let bos = tokenizer.bosID { ids.insert(bos, at: 0) }
        if let p = pendingToken { ids.insert(p, at: 0) }
        let capacity = model.positionLimit
        guard positions + ids.count < capacity else {
            throw ModelError("the conversation needs \(positions + ids.count) positions; this run's context holds \(capacity) (--ctx)")
        }
        let t0 = Date()
        var next: Int32 = 0
        try model.forward(ids, startPos: positions, logitRows: ids.count - 1 ..< ids.count) { _, logits in next = sampler.sample(logits) }
        positions += ids.count
        pendingToken = nil
        messages.append(ChatMessage(role: "user", content: user))
        let promptSeconds = Date().timeIntervalSince(t0)

        let t1 = Date()
        var out: [Int32] = [], bytes: [UInt8] = [], pending: [UInt8] = []
        var stop = "max_tokens"
        var one: [Int32] = [0]
        while out.count < maxNewTokens {
            if stops.contains(next) { stop = next == endOfTurnID ? "end_of_turn" : "end_of_text"; break }
            out.append(next)
            let b = tokenizer.tokenBytes(next)
            bytes += b
            pending += b
            let n = Model.completeUTF8Prefix(pending)
            if n > 0 { onText(String(decoding: pending[..<n], as: UTF8.self)); pending.removeFirst(n) }
            if out.count == maxNewTokens { pendingToken = next; break }
            if positions >= capacity - 1 { pendingToken = next; stop = "context_full"; break }
            one[0] = next
            try model.forward(one, startPos: positions, logitRows: 0 ..< 1) { _, logits in next = sampler.sample(logits) }
            positions += 1
        }
        if !pending.isEmpty { onText(String(decoding: pending, as: UTF8.self)) }
        let answer = String(decoding: bytes, as: UTF8.self)
        messages.append(ChatMessage(role: "assistant", content: answer))
        pendingText = template.endOfReply
        return ChatReply(promptTokens: ids, tokens: out, text: answer, stopReason: stop, promptSeconds: promptSeconds,
                         decodeSeconds: Date().timeIntervalSince(t1), positions: positions)
    }
}
