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

/// A request body: one JSON object decoded (`RequestBody`) into a typed request, each field
/// checked with an error naming it (OpenAI's `param`).
protocol APIRequest {
    init(_ fields: JSONFields) throws
}

/// The Decodable face of an APIRequest: the body must be an object; its fields go to `R`.
struct RequestBody<R: APIRequest>: Decodable {
    let request: R
    init(from decoder: Decoder) throws {
        guard let c = try? decoder.container(keyedBy: JSONFields.Key.self) else {
            throw APIError(status: .badRequest, message: "the request body must be a JSON object, got \(try JSONValue(from: decoder).typeName)")
        }
        request = try R(JSONFields(c, vocabSize: decoder.userInfo[JSONFields.vocabSizeKey] as? Int ?? Int(Int32.max)))
    }
}

extension APIRequest {
    /// Decodes `body`; `vocabSize` bounds token ids and top_k.
    static func decode(_ body: [UInt8], vocabSize: Int) throws -> Self {
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
        let decoder = JSONDecoder()
        decoder.userInfo[JSONFields.vocabSizeKey] = vocabSize
        do { return try decoder.decode(RequestBody<Self>.self, from: Data(body)).request } catch let e as APIError { throw e } catch {
            throw APIError(status: .badRequest, message: "the request body is not valid JSON (\(body.count) bytes)")
        }
    }
}

/// The fields of a request object, read by name and type (null = absent).
struct JSONFields {
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
    static let vocabSizeKey = CodingUserInfoKey(rawValue: "vocabSize")!

    let container: KeyedDecodingContainer<Key>
    let vocabSize: Int
    init(_ c: KeyedDecodingContainer<Key>, vocabSize: Int) { container = c; self.vocabSize = vocabSize }

    subscript(_ key: String) -> JSONValue? {
        get throws {
            switch try container.decodeIfPresent(JSONValue.self, forKey: Key(stringValue: key)) {
            case nil, .null?: return nil
            case let v?: return v
            }
        }
    }

    func int(_ key: String, _ range: ClosedRange<Int64>) throws -> Int64? {
        guard let v = try self[key] else { return nil }
        let i: Int64
        switch v {
        case .int(let x): i = x
        case .double(let d) where d == d.rounded() && abs(d) < 1e15: i = Int64(d)
        default: throw APIError.badParam(key, "'\(key)' must be an integer, got \(v.typeName)")
        }
        guard range.contains(i) else { throw APIError.badParam(key, "'\(key)' must be in \(range.lowerBound)...\(range.upperBound), got \(i)") }
        return i
    }

    func number(_ key: String, _ range: ClosedRange<Double>) throws -> Double? {
        guard let v = try self[key] else { return nil }
        let d: Double
        switch v {
        case .int(let i): d = Double(i)
        case .double(let x): d = x
        default: throw APIError.badParam(key, "'\(key)' must be a number, got \(v.typeName)")
        }
        guard d.isFinite, range.contains(d) else { throw APIError.badParam(key, "'\(key)' must be in \(range.lowerBound)...\(range.upperBound), got \(d)") }
        return d
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = try self[key] else { return nil }
        guard case .bool(let b) = v else { throw APIError.badParam(key, "'\(key)' must be a boolean, got \(v.typeName)") }
        return b
    }

    func string(_ key: String) throws -> String? {
        guard let v = try self[key] else { return nil }
        guard case .string(let s) = v else { throw APIError.badParam(key, "'\(key)' must be a string, got \(v.typeName)") }
        return s
    }
}

/// What both completion endpoints take besides the prompt.
struct GenerationParams {
    var model: String?
    /// max_completion_tokens or max_tokens (nil: the endpoint's default).
    var maxTokens: Int64?
    var sampling: SamplingConfig
    var stop: [String]
    var stream: Bool
    var includeUsage: Bool

    init(_ f: JSONFields) throws {
        model = try f.string("model")
        maxTokens = try f.int("max_completion_tokens", 0 ... 1 << 40) ?? f.int("max_tokens", 0 ... 1 << 40)
        if let n = try f.int("n", 1 ... 1 << 40), n != 1 { throw APIError.badParam("n", "only n = 1 is supported, got \(n)") }
        let temperature = try f.number("temperature", 0 ... 2) ?? 1
        let topP = try f.number("top_p", 0 ... 1) ?? 1
        guard topP > 0 else { throw APIError.badParam("top_p", "'top_p' must be > 0") }
        let topK = try f.int("top_k", 0 ... Int64(f.vocabSize)) ?? 0
        let seed = try f.int("seed", Int64.min ... Int64.max).map { UInt64(bitPattern: $0) } ?? UInt64.random(in: 0 ... UInt64.max)
        sampling = SamplingConfig(temperature: Float(temperature), topK: Int(topK), topP: Float(topP), seed: seed)
        stop = []
        switch try f["stop"] {
        case nil: break
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
        stream = try f.bool("stream") ?? false
        includeUsage = false
        if case .object(let so)? = try f["stream_options"], case .bool(let b)? = so["include_usage"] { includeUsage = b }
    }
}

/// POST /v1/completions.
struct CompletionRequest: APIRequest {
    enum Prompt { case text(String), ids([Int32]) }
    /// A string, one string in an array, or an array of token ids.
    var prompt: Prompt
    var params: GenerationParams

    init(_ f: JSONFields) throws {
        let shape = "'prompt' must be a string (or one string in an array, or an array of token ids)"
        switch try f["prompt"] {
        case .string(let s)?: prompt = .text(s)
        case .array(let a)? where !a.isEmpty:
            if a.count == 1, case .string(let s) = a[0] { prompt = .text(s); break }
            prompt = .ids(try a.map { x in
                guard case .int(let i) = x, i >= 0, i < Int64(f.vocabSize) else {
                    throw APIError.badParam("prompt", "'prompt' as an array must hold one string or token ids in 0..<\(f.vocabSize)")
                }
                return Int32(i)
            })
        case nil: throw APIError.badParam("prompt", "'prompt' is required")
        default: throw APIError.badParam("prompt", shape)
        }
        params = try GenerationParams(f)
    }
}

/// POST /v1/chat/completions.
struct ChatCompletionRequest: APIRequest {
    /// The messages as ChatTemplate takes them: the system messages (anywhere; "developer" is
    /// one) joined into one first system prompt, then the others in order.
    var conversation: [ChatMessage]
    var params: GenerationParams

    init(_ f: JSONFields) throws {
        guard case .array(let msgs)? = try f["messages"], !msgs.isEmpty else {
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
        let systems = turns.filter { $0.role == "system" }.map(\.content)
        conversation = (systems.isEmpty ? [] : [ChatMessage(role: "system", content: systems.joined(separator: "\n\n"))])
            + turns.filter { $0.role != "system" }
        params = try GenerationParams(f)
    }
}

/// POST /tokenize.
struct TokenizeRequest: APIRequest {
    var content: String
    init(_ f: JSONFields) throws {
        guard let s = try f.string("content") else { throw APIError.badParam("content", "'content' is required") }
        content = s
    }
}
