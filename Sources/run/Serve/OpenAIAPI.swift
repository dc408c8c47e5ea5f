import Foundation
import NIOHTTP1
import Runtime

/// The OpenAI-compatible endpoints over one `ServingEngine`, as a route table: a new endpoint is
/// one line in `routes` and its handler. Bodies decode into typed requests (APIRequests.swift);
/// every failure becomes one OpenAI error object (`APIError.init(_:)`), sent whole or, once a
/// stream has started, as its last event (`EventStream`).
final class OpenAIAPI: @unchecked Sendable {
    /// Method + path → handler.
    struct Route: Sendable {
        let method: HTTPMethod
        let path: String
        let handler: @Sendable (OpenAIAPI, HTTPRequestData, ResponseWriter) throws -> Void
        init(_ method: HTTPMethod, _ path: String, _ handler: @escaping @Sendable (OpenAIAPI, HTTPRequestData, ResponseWriter) throws -> Void) {
            self.method = method; self.path = path; self.handler = handler
        }
    }

    static let routes: [Route] = [
        Route(.GET, "/health") { api, req, w in api.health(req, w) },
        Route(.GET, "/v1/models") { api, req, w in api.models(req, w) },
        Route(.POST, "/v1/completions") { api, req, w in try api.completions(req, w) },
        Route(.POST, "/v1/chat/completions") { api, req, w in try api.chatCompletions(req, w) },
        Route(.POST, "/tokenize") { api, req, w in try api.tokenize(req, w) },
    ]

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

    func handle(_ req: HTTPRequestData, _ w: ResponseWriter) {
        let onPath = Self.routes.filter { $0.path == req.path }
        guard let route = onPath.first(where: { $0.method == req.method }) else {
            let e = onPath.isEmpty
                ? APIError(status: .notFound, message: "no such endpoint: \(req.method) \(req.path)", code: "not_found")
                : APIError(status: .methodNotAllowed, message: "\(req.method) is not allowed on \(req.path)", code: "method_not_allowed")
            return w.send(e.status, json: e.body)
        }
        do { try route.handler(self, req, w) } catch {
            let e = APIError(error)
            w.send(e.status, json: e.body)
        }
    }

    /// Waits until every response in progress has ended.
    func waitIdle() {
        inflightLock.lock()
        while inflight > 0 { inflightLock.wait() }
        inflightLock.unlock()
    }

    // MARK: - Handlers

    func health(_ req: HTTPRequestData, _ w: ResponseWriter) {
        let l = engine.load
        w.send(.ok, json: ["status": "ok", "slots_active": l.active, "slots_total": engine.parallel, "waiting": l.waiting])
    }

    func models(_ req: HTTPRequestData, _ w: ResponseWriter) {
        w.send(.ok, json: ["object": "list", "data": [["id": modelID, "object": "model", "created": created, "owned_by": "quantlm"]]])
    }

    func completions(_ req: HTTPRequestData, _ w: ResponseWriter) throws {
        let r = try CompletionRequest.decode(req.body, vocabSize: engine.tokenizer.vocabSize)
        try checkModel(r.params)
        let tok = engine.tokenizer
        var prompt: [Int32]
        switch r.prompt {
        case .text(let s): try checkLength(s, param: "prompt"); prompt = tok.encode(s)
        case .ids(let ids): prompt = ids
        }
        if prompt.isEmpty, let bos = tok.bosID { prompt = [bos] }
        // As `run generate`: the end-of-text and begin-of-text tokens end a completion.
        try complete(prompt, r.params, stopTokens: Set([tok.eosID, tok.bosID].compactMap { $0 }), chatMode: false, w)
    }

    func chatCompletions(_ req: HTTPRequestData, _ w: ResponseWriter) throws {
        let r = try ChatCompletionRequest.decode(req.body, vocabSize: engine.tokenizer.vocabSize)
        try checkModel(r.params)
        let chat: ChatTemplate
        switch self.chat {
        case .success(let c): chat = c
        case .failure(let e):
            throw APIError(status: .badRequest, message: "chat is not available for this model: \(e); use /v1/completions",
                           param: "messages", code: "no_chat_template")
        }
        guard let ctok = engine.tokenizer as? any ChatTokenizer else {
            throw APIError(status: .badRequest, message: "this model's tokenizer has no special tokens; use /v1/completions", param: "messages")
        }
        let text = chat.render(r.conversation, addGenerationPrompt: true)
        try checkLength(text, param: "messages")
        var stopTokens = Set([ctok.eosID, ctok.bosID].compactMap { $0 })
        if let end = ctok.specialID(chat.endOfTurnToken) { stopTokens.insert(end) }
        try complete(ctok.encode(text, allowSpecial: true, addSpecial: true), r.params, stopTokens: stopTokens, chatMode: true, w)
    }

    /// {"content": text} → {"tokens": ids}: the ids /v1/completions prefills for that prompt
    /// (llama.cpp's server has the same endpoint).
    func tokenize(_ req: HTTPRequestData, _ w: ResponseWriter) throws {
        let r = try TokenizeRequest.decode(req.body, vocabSize: engine.tokenizer.vocabSize)
        try checkLength(r.content, param: "content")
        w.send(.ok, json: ["tokens": engine.tokenizer.encode(r.content).map { Int($0) }])
    }

    // MARK: - Checks

    /// model: this server's id (an OpenAI client always sends one).
    private func checkModel(_ p: GenerationParams) throws {
        guard let s = p.model, s != modelID else { return }
        throw APIError(status: .notFound, message: "the model '\(s)' does not exist; this server serves '\(modelID)'", param: "model", code: "model_not_found")
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

    /// The engine's request: the prompt fits a slot with room for max_tokens (default: the
    /// room left for chat, OpenAI's 16 for completions).
    private func serveRequest(_ prompt: [Int32], _ p: GenerationParams, stopTokens: Set<Int32>, chatMode: Bool) throws -> ServeRequest {
        let param = chatMode ? "messages" : "prompt"
        guard !prompt.isEmpty else { throw APIError.badParam(param, "the prompt encodes to no tokens") }
        let ctx = engine.contextPerSlot
        guard prompt.count < ctx else {
            throw APIError(status: .badRequest,
                           message: "the prompt is \(prompt.count) tokens; this server's context per request is \(ctx) tokens (prompt + completion)",
                           param: param, code: "context_length_exceeded")
        }
        let room = ctx - prompt.count
        if let m = p.maxTokens, m > Int64(room) {
            throw APIError(status: .badRequest,
                           message: "max_tokens \(m) + the prompt's \(prompt.count) tokens exceed this server's context of \(ctx) tokens",
                           param: "max_tokens", code: "context_length_exceeded")
        }
        let maxTokens = p.maxTokens.map { Int($0) } ?? (chatMode ? room : min(16, room))
        return ServeRequest(prompt: prompt, maxTokens: maxTokens, sampling: p.sampling, stop: p.stop, stopTokens: stopTokens)
    }

    // MARK: - Completions (both endpoints)

    private func nextID(_ prefix: String) -> String {
        counterLock.lock(); defer { counterLock.unlock() }
        counter += 1
        return "\(prefix)-\(counter)"
    }

    /// Submits the completion and answers it: one JSON object, or server-sent events as the
    /// engine produces text.
    private func complete(_ prompt: [Int32], _ p: GenerationParams, stopTokens: Set<Int32>, chatMode: Bool, _ w: ResponseWriter) throws {
        let r = try serveRequest(prompt, p, stopTokens: stopTokens, chatMode: chatMode)
        let id = nextID(chatMode ? "chatcmpl" : "cmpl")
        let object = chatMode ? "chat.completion" : "text_completion"
        let chunkObject = chatMode ? "chat.completion.chunk" : "text_completion"
        let modelID = self.modelID, created = Int(Date().timeIntervalSince1970)
        let collected = Collected()
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
        let stream = p.stream ? EventStream(w, includeUsage: p.includeUsage) : nil
        @Sendable func chunk(_ choices: [[String: Any]]) -> [String: Any] {
            ["id": id, "object": chunkObject, "created": created, "model": modelID, "choices": choices]
        }
        stream?.start()
        do {
            try engine.submit(r, isCancelled: { w.cancelled.isSet }) { ev in
                switch ev {
                case .text(let t, _):
                    guard let stream else { return collected.append(t) }
                    guard !t.isEmpty else { return }
                    stream.send(chunk([choiceDelta(t, finish: nil, first: collected.markFirst())]))
                case .done(let reason, let promptTokens, let completionTokens):
                    defer { done() }
                    if reason == "cancelled" { w.endEvents(); return }
                    let usage: [String: Any] = ["prompt_tokens": promptTokens, "completion_tokens": completionTokens,
                                                "total_tokens": promptTokens + completionTokens]
                    if let stream {
                        let first = collected.markFirst()
                        stream.send(chunk([choiceDelta(first && chatMode ? "" : nil, finish: reason, first: first)]))
                        stream.finish(usage: chunk([]).merging(["usage": usage]) { $1 })
                    } else {
                        let text = collected.text
                        let choice: [String: Any] = chatMode
                            ? ["index": 0, "message": ["role": "assistant", "content": text], "finish_reason": reason]
                            : ["index": 0, "text": text, "finish_reason": reason, "logprobs": NSNull()]
                        w.send(.ok, json: ["id": id, "object": object, "created": created, "model": modelID, "choices": [choice], "usage": usage])
                    }
                case .failed(let message):
                    defer { done() }
                    let e = APIError(status: .internalServerError, message: message, type: "server_error")
                    if let stream { stream.fail(e) } else { w.send(e.status, json: e.body) }
                }
            }
        } catch {
            done()
            guard let stream else { throw error }
            stream.fail(APIError(error))
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
}

/// A 4xx/5xx answer with OpenAI's error shape.
struct APIError: Error {
    var status: HTTPResponseStatus
    var message: String
    var type = "invalid_request_error"
    var param: String?
    var code: String?

    init(status: HTTPResponseStatus, message: String, type: String = "invalid_request_error", param: String? = nil, code: String? = nil) {
        self.status = status; self.message = message; self.type = type; self.param = param; self.code = code
    }

    static func badParam(_ p: String, _ message: String) -> APIError { APIError(status: .badRequest, message: message, param: p) }

    /// The one error mapper: an APIError as it is, the engine's refusals by their HTTP status,
    /// anything else a 500.
    init(_ error: Error) {
        switch error {
        case let e as APIError: self = e
        case let e as ServeRejection:
            let (status, code): (HTTPResponseStatus, String) = {
                switch e {
                case .queueFull, .memoryFull: return (.tooManyRequests, "server_busy")
                case .promptTooLong: return (.badRequest, "context_length_exceeded")
                case .stopping: return (.serviceUnavailable, "shutting_down")
                }
            }()
            self.init(status: status, message: e.description, type: status == .badRequest ? "invalid_request_error" : "server_error", code: code)
        default:
            self.init(status: .internalServerError, message: "\(error)", type: "server_error")
        }
    }

    /// {"error": {"message", "type", "param", "code"}}.
    var body: [String: Any] {
        ["error": ["message": message, "type": type, "param": param as Any? ?? NSNull(), "code": code as Any? ?? NSNull()]]
    }
}

/// The one server-sent-event writer: `data: {chunk}` events, then (with include_usage) a usage
/// chunk, `data: [DONE]` and the end; or an error object as the last event.
struct EventStream: Sendable {
    let w: ResponseWriter
    let includeUsage: Bool
    init(_ w: ResponseWriter, includeUsage: Bool) { self.w = w; self.includeUsage = includeUsage }

    func start() { w.startEvents() }

    /// A completion chunk (`"usage": null` in every chunk when the client asked for usage).
    func send(_ chunk: [String: Any]) {
        var c = chunk
        if includeUsage { c["usage"] = NSNull() }
        w.event(json: c)
    }

    func finish(usage: [String: Any]) {
        if includeUsage { w.event(json: usage) }
        w.event("[DONE]")
        w.endEvents()
    }

    func fail(_ e: APIError) {
        w.event(json: e.body)
        w.endEvents()
    }
}
