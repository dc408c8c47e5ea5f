import Foundation
import NIOHTTP1
import Runtime

/// A JSON value decoded strictly (a boolean is not a number; numbers outside Int64 / Double fail).
enum JSONValue: Decodable {
    case null, bool(Bool), int(Int64), double(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// A 4xx/5xx answer with OpenAI's error shape.
struct APIError: Error {
    var status: HTTPResponseStatus
    var message: String
    var type = "invalid_request_error"
    var param: String?
    var code: String?

    static func badParam(_ p: String, _ message: String) -> APIError { APIError(status: .badRequest, message: message, param: p) }
}

/// The OpenAI-compatible endpoints over one `ServingEngine`.
final class OpenAIAPI: @unchecked Sendable {
    let engine: ServingEngine
    let modelID: String
    let chat: Result<ChatTemplate, Error>
    private let created = Int(Date().timeIntervalSince1970)
    private let counterLock = NSLock()
    private var counter = 0
    private let inflightLock = NSCondition()
    private var inflight = 0

    /// The longest token's bytes: a text longer than context × this cannot fit, and is refused
    /// before tokenizing (some tokenizers are quadratic in the text length).
    private let longestToken: Int

    init(engine: ServingEngine, modelID: String, chat: Result<ChatTemplate, Error>) {
        self.engine = engine; self.modelID = modelID; self.chat = chat
        let tok = engine.tokenizer
        longestToken = max(1, (0 ..< Int32(tok.vocabSize)).map { tok.tokenBytes($0).count }.max() ?? 1)
    }

    /// Refuses a text that must encode to more tokens than a slot holds.
    private func checkLength(_ text: String, param: String) throws {
        let limit = engine.contextPerSlot * longestToken
        guard text.utf8.count <= limit else {
            throw APIError(status: .badRequest,
                           message: "the prompt is \(text.utf8.count) bytes, more than \(engine.contextPerSlot) tokens of at most \(longestToken) bytes; this server's context per request is \(engine.contextPerSlot) tokens",
                           param: param, code: "context_length_exceeded")
        }
    }

    private func nextID(_ prefix: String) -> String {
        counterLock.lock(); defer { counterLock.unlock() }
        counter += 1
        return "\(prefix)-\(counter)"
    }

    /// Waits until every response in progress has ended.
    func waitIdle() {
        inflightLock.lock()
        while inflight > 0 { inflightLock.wait() }
        inflightLock.unlock()
    }

    func handle(_ req: HTTPRequestData, _ w: ResponseWriter) {
        switch (req.method, req.path) {
        case (.GET, "/health"):
            let l = engine.load
            w.send(.ok, json: ["status": "ok", "slots_active": l.active, "slots_total": engine.parallel, "waiting": l.waiting])
        case (.GET, "/v1/models"):
            w.send(.ok, json: ["object": "list", "data": [["id": modelID, "object": "model", "created": created, "owned_by": "quantlm"]]])
        case (.POST, "/v1/completions"):
            complete(req, w, chatMode: false)
        case (.POST, "/v1/chat/completions"):
            complete(req, w, chatMode: true)
        case (_, "/health"), (_, "/v1/models"), (_, "/v1/completions"), (_, "/v1/chat/completions"):
            w.error(.methodNotAllowed, "\(req.method) is not allowed on \(req.path)", code: "method_not_allowed")
        default:
            w.error(.notFound, "no such endpoint: \(req.method) \(req.path)", code: "not_found")
        }
    }

    // MARK: - completions

    private struct Parsed {
        var prompt: [Int32]
        var maxTokens: Int
        var sampling: SamplingConfig
        var stop: [String]
        var stream: Bool
        var includeUsage: Bool
        var stopTokens: Set<Int32>
    }

    private func complete(_ req: HTTPRequestData, _ w: ResponseWriter, chatMode: Bool) {
        let p: Parsed
        do { p = try parse(req.body, chatMode: chatMode) } catch let e as APIError {
            w.error(e.status, e.message, type: e.type, param: e.param, code: e.code); return
        } catch {
            w.error(.badRequest, "\(error)"); return
        }
        let id = nextID(chatMode ? "chatcmpl" : "cmpl")
        let object = chatMode ? "chat.completion" : "text_completion"
        let modelID = self.modelID, created = Int(Date().timeIntervalSince1970)
        let collected = Collected()
        let r = ServeRequest(prompt: p.prompt, maxTokens: p.maxTokens, sampling: p.sampling, stop: p.stop, stopTokens: p.stopTokens)
        inflightLock.lock(); inflight += 1; inflightLock.unlock()
        let done: @Sendable () -> Void = { [self] in
            inflightLock.lock(); inflight -= 1; inflightLock.broadcast(); inflightLock.unlock()
        }
        @Sendable func choiceDelta(_ text: String?, finish: String?, first: Bool) -> [String: Any] {
            if chatMode {
                var delta: [String: Any] = [:]
                if first { delta["role"] = "assistant" }
                if let t = text { delta["content"] = t }
                return ["index": 0, "delta": delta, "finish_reason": finish as Any? ?? NSNull()]
            }
            return ["index": 0, "text": text ?? "", "finish_reason": finish as Any? ?? NSNull(), "logprobs": NSNull()]
        }
        let chunkObject = chatMode ? "chat.completion.chunk" : "text_completion"
        let stream = p.stream, includeUsage = p.includeUsage
        do {
            if stream { w.startEvents() }
            try engine.submit(r, isCancelled: { w.cancelled.isSet }) { ev in
                switch ev {
                case .text(let t, _):
                    if stream {
                        guard !t.isEmpty else { return }
                        let first = collected.markFirst()
                        var chunk: [String: Any] = ["id": id, "object": chunkObject, "created": created, "model": modelID,
                                                    "choices": [choiceDelta(t, finish: nil, first: first)]]
                        if includeUsage { chunk["usage"] = NSNull() }
                        w.event(json: chunk)
                    } else {
                        collected.append(t)
                    }
                case .done(let reason, let promptTokens, let completionTokens):
                    defer { done() }
                    if reason == "cancelled" { w.endEvents(); return }
                    let usage: [String: Any] = ["prompt_tokens": promptTokens, "completion_tokens": completionTokens,
                                                "total_tokens": promptTokens + completionTokens]
                    if stream {
                        let first = collected.markFirst()
                        var chunk: [String: Any] = ["id": id, "object": chunkObject, "created": created, "model": modelID,
                                                    "choices": [choiceDelta(first && chatMode ? "" : nil, finish: reason, first: first)]]
                        if includeUsage { chunk["usage"] = NSNull() }
                        w.event(json: chunk)
                        if includeUsage {
                            w.event(json: ["id": id, "object": chunkObject, "created": created, "model": modelID, "choices": [], "usage": usage])
                        }
                        w.event("[DONE]")
                        w.endEvents()
                    } else {
                        let text = collected.text
                        let choice: [String: Any] = chatMode
                            ? ["index": 0, "message": ["role": "assistant", "content": text], "finish_reason": reason]
                            : ["index": 0, "text": text, "finish_reason": reason, "logprobs": NSNull()]
                        w.send(.ok, json: ["id": id, "object": object, "created": created, "model": modelID, "choices": [choice], "usage": usage])
                    }
                case .failed(let message):
                    defer { done() }
                    if stream {
                        w.event(json: ["error": ["message": message, "type": "server_error", "param": NSNull(), "code": NSNull()]])
                        w.endEvents()
                    } else {
                        w.error(.internalServerError, message, type: "server_error")
                    }
                }
            }
        } catch let e as ServeRejection {
            done()
            let (status, code): (HTTPResponseStatus, String) = {
                switch e {
                case .queueFull, .memoryFull: return (.tooManyRequests, "server_busy")
                case .promptTooLong: return (.badRequest, "context_length_exceeded")
                case .stopping: return (.serviceUnavailable, "shutting_down")
                }
            }()
            if stream {
                w.event(json: ["error": ["message": e.description, "type": "invalid_request_error", "param": NSNull(), "code": code]])
                w.endEvents()
            } else {
                w.error(status, e.description, type: status == .badRequest ? "invalid_request_error" : "server_error", code: code)
            }
        } catch {
            done()
            w.error(.internalServerError, "\(error)", type: "server_error")
        }
    }

    private final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var parts: [String] = []
        private var sentFirst = false
        func append(_ s: String) { lock.lock(); parts.append(s); lock.unlock() }
        var text: String { lock.lock(); defer { lock.unlock() }; return parts.joined() }
        /// True the first time only.
        func markFirst() -> Bool { lock.lock(); defer { lock.unlock() }; if sentFirst { return false }; sentFirst = true; return true }
    }

    /// `prompt`: a string, one string in an array, or an array of token ids.
    private func promptIDs(_ v: JSONValue?, _ tok: any Tokenizer) throws -> [Int32] {
        switch v {
        case .string(let s)?: try checkLength(s, param: "prompt"); return tok.encode(s)
        case .array(let a)?:
            if a.count == 1, case .string(let s) = a[0] { try checkLength(s, param: "prompt"); return tok.encode(s) }
            guard !a.isEmpty else { break }
            return try a.map { x in
                guard case .int(let i) = x, i >= 0, i < Int64(tok.vocabSize) else {
                    throw APIError.badParam("prompt", "'prompt' as an array must hold one string or token ids in 0..<\(tok.vocabSize)")
                }
                return Int32(i)
            }
        case nil: throw APIError.badParam("prompt", "'prompt' is required")
        default: break
        }
        throw APIError.badParam("prompt", "'prompt' must be a string (or one string in an array, or an array of token ids)")
    }

    private func parse(_ body: [UInt8], chatMode: Bool) throws -> Parsed {
        let root: [String: JSONValue]
        // The decoder recurses per nesting level: refuse absurd depth before decoding.
        var depth = 0, inString = false, escaped = false
        for b in body {
            if inString {
                if escaped { escaped = false } else if b == 0x5C { escaped = true } else if b == 0x22 { inString = false }
                continue
            }
            switch b {
            case 0x22: inString = true
            case 0x5B, 0x7B:
                depth += 1
                if depth > 64 { throw APIError(status: .badRequest, message: "the request body nests JSON deeper than 64 levels") }
            case 0x5D, 0x7D: depth -= 1
            default: break
            }
        }
        do {
            let v = try JSONDecoder().decode(JSONValue.self, from: Data(body))
            guard case .object(let o) = v else { throw APIError(status: .badRequest, message: "the request body must be a JSON object, got \(v.typeName)") }
            root = o
        } catch let e as APIError { throw e } catch {
            throw APIError(status: .badRequest, message: "the request body is not valid JSON (\(body.count) bytes)")
        }
        // model: this server's id (an OpenAI client always sends one).
        if let m = root["model"] {
            guard case .string(let s) = m else { throw APIError.badParam("model", "'model' must be a string, got \(m.typeName)") }
            guard s == modelID else {
                throw APIError(status: .notFound, message: "the model '\(s)' does not exist; this server serves '\(modelID)'", param: "model", code: "model_not_found")
            }
        }
        let tok = engine.tokenizer
        // As `run generate`: the end-of-text and begin-of-text tokens end a completion.
        var stopTokens = Set([tok.eosID, tok.bosID].compactMap { $0 })
        var prompt: [Int32]
        if chatMode {
            let chat: ChatTemplate
            switch self.chat {
            case .success(let c): chat = c
            case .failure(let e):
                throw APIError(status: .badRequest, message: "chat is not available for this model: \(e); use /v1/completions",
                               param: "messages", code: "no_chat_template")
            }
            guard let ctok = tok as? any ChatTokenizer else {
                throw APIError(status: .badRequest, message: "this model's tokenizer has no special tokens; use /v1/completions", param: "messages")
            }
            guard case .array(let msgs)? = root["messages"], !msgs.isEmpty else {
                throw APIError.badParam("messages", "'messages' must be a non-empty array of {role, content} objects")
            }
            var turns: [ChatMessage] = []
            for (i, m) in msgs.enumerated() {
                guard case .object(let o) = m, case .string(let role)? = o["role"] else {
                    throw APIError.badParam("messages[\(i)]", "messages[\(i)] must be an object with a string 'role'")
                }
                guard ["system", "user", "assistant", "developer"].contains(role) else {
                    throw APIError.badParam("messages[\(i)].role", "messages[\(i)].role must be system, user or assistant, got '\(role)'")
                }
                let content: String
                switch o["content"] {
                case .string(let s)?: content = s
                case .array(let parts)?:
                    // [{type: "text", text: ...}, ...]
                    var s = ""
                    for part in parts {
                        guard case .object(let po) = part, case .string(let t)? = po["text"] else {
                            throw APIError.badParam("messages[\(i)].content", "messages[\(i)].content parts must be {type: \"text\", text: ...}")
                        }
                        s += t
                    }
                    content = s
                default: throw APIError.badParam("messages[\(i)].content", "messages[\(i)].content must be a string")
                }
                turns.append(ChatMessage(role: role == "developer" ? "system" : role, content: content))
            }
            // A system message anywhere but first joins the system prompt (ChatTemplate takes it first).
            let systems = turns.filter { $0.role == "system" }.map(\.content)
            let rest = turns.filter { $0.role != "system" }
            let conversation = (systems.isEmpty ? [] : [ChatMessage(role: "system", content: systems.joined(separator: "\n\n"))]) + rest
            let text = chat.render(conversation, addGenerationPrompt: true)
            try checkLength(text, param: "messages")
            prompt = ctok.encode(text, allowSpecial: true, addSpecial: true)
            if let end = ctok.specialID(chat.endOfTurnToken) { stopTokens.insert(end) }
        } else {
            prompt = try promptIDs(root["prompt"], tok)
            if prompt.isEmpty, let bos = tok.bosID { prompt = [bos] }
        }
        guard !prompt.isEmpty else { throw APIError.badParam(chatMode ? "messages" : "prompt", "the prompt encodes to no tokens") }
        let ctx = engine.contextPerSlot
        guard prompt.count < ctx else {
            throw APIError(status: .badRequest,
                           message: "the prompt is \(prompt.count) tokens; this server's context per request is \(ctx) tokens (prompt + completion)",
                           param: chatMode ? "messages" : "prompt", code: "context_length_exceeded")
        }
        func int(_ key: String, _ range: ClosedRange<Int64>) throws -> Int64? {
            guard let v = root[key] else { return nil }
            switch v {
            case .null: return nil
            case .int(let i):
                guard range.contains(i) else { throw APIError.badParam(key, "'\(key)' must be in \(range.lowerBound)...\(range.upperBound), got \(i)") }
                return i
            case .double(let d) where d == d.rounded() && abs(d) < 1e15:
                let i = Int64(d)
                guard range.contains(i) else { throw APIError.badParam(key, "'\(key)' must be in \(range.lowerBound)...\(range.upperBound), got \(i)") }
                return i
            default: throw APIError.badParam(key, "'\(key)' must be an integer, got \(v.typeName)")
            }
        }
        func number(_ key: String, _ range: ClosedRange<Double>) throws -> Double? {
            guard let v = root[key] else { return nil }
            let d: Double
            switch v {
            case .null: return nil
            case .int(let i): d = Double(i)
            case .double(let x): d = x
            default: throw APIError.badParam(key, "'\(key)' must be a number, got \(v.typeName)")
            }
            guard d.isFinite, range.contains(d) else { throw APIError.badParam(key, "'\(key)' must be in \(range.lowerBound)...\(range.upperBound), got \(d)") }
            return d
        }
        func bool(_ key: String) throws -> Bool? {
            guard let v = root[key] else { return nil }
            switch v {
            case .null: return nil
            case .bool(let b): return b
            default: throw APIError.badParam(key, "'\(key)' must be a boolean, got \(v.typeName)")
            }
        }
        let room = ctx - prompt.count
        let maxTokens: Int
        if let m = try int("max_completion_tokens", 0 ... 1 << 40) ?? int("max_tokens", 0 ... 1 << 40) {
            guard m <= Int64(room) else {
                throw APIError(status: .badRequest,
                               message: "max_tokens \(m) + the prompt's \(prompt.count) tokens exceed this server's context of \(ctx) tokens",
                               param: "max_tokens", code: "context_length_exceeded")
            }
            maxTokens = Int(m)
        } else {
            maxTokens = chatMode ? room : min(16, room)   // OpenAI's completions default is 16
        }
        if let n = try int("n", 1 ... 1 << 40), n != 1 { throw APIError.badParam("n", "only n = 1 is supported, got \(n)") }
        let temperature = try number("temperature", 0 ... 2) ?? 1
        let topP = try number("top_p", 0 ... 1) ?? 1
        guard topP > 0 else { throw APIError.badParam("top_p", "'top_p' must be > 0") }
        let topK = try int("top_k", 0 ... Int64(tok.vocabSize)) ?? 0
        let seed = try int("seed", Int64.min ... Int64.max).map { UInt64(bitPattern: $0) } ?? UInt64.random(in: 0 ... UInt64.max)
        var stop: [String] = []
        switch root["stop"] {
        case nil, .null?: break
        case .string(let s)?: stop = [s]
        case .array(let a)?:
            guard a.count <= 4 else { throw APIError.badParam("stop", "at most 4 stop sequences, got \(a.count)") }
            for v in a {
                guard case .string(let s) = v else { throw APIError.badParam("stop", "'stop' must be a string or an array of strings") }
                stop.append(s)
            }
        case let v?: throw APIError.badParam("stop", "'stop' must be a string or an array of strings, got \(v.typeName)")
        }
        guard stop.allSatisfy({ $0.utf8.count <= 256 }) else { throw APIError.badParam("stop", "stop sequences are at most 256 bytes") }
        let stream = try bool("stream") ?? false
        var includeUsage = false
        if case .object(let so)? = root["stream_options"], case .bool(let b)? = so["include_usage"] { includeUsage = b }
        return Parsed(prompt: prompt, maxTokens: maxTokens,
                      sampling: SamplingConfig(temperature: Float(temperature), topK: Int(topK), topP: Float(topP), seed: seed),
                      stop: stop, stream: stream, includeUsage: includeUsage, stopTokens: stopTokens)
    }
}
