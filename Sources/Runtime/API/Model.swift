import Foundation
import Quant

/// A language model loaded from a `.qlm` file, for Swift apps: load once, then stream text.
///
/// ```swift
/// let model = try Model(path: "stories-q8_0.qlm", options: .init(maxContext: 512))
/// for try await piece in model.generate("Once upon a time", .init(maxTokens: 20)) {
///     print(piece.text, terminator: "")
/// }
/// ```
///
/// The file is memory-mapped (nothing is copied) and the KV cache is sized once, from
/// `Options.maxContext`. Generations on one `Model` run one at a time, in the order they are
/// started; a `Model` may be shared across tasks and threads. Cancelling the task that
/// iterates a stream (or dropping the stream) stops decoding before the next token.
public final class Model: @unchecked Sendable {
    /// How to load.
    public struct Options: Sendable {
        /// Worker threads for the matrix products (default: every core).
        public var threads: Int
        /// The most positions (prompt + generated tokens) one generation may use; sizes the KV
        /// cache. nil: the model's trained context.
        public var maxContext: Int?
        /// KV cache element type: "f16" (default), "f32" or "q8_0".
        public var kvType: String
        /// Attention pattern (`dense`, `banded:W`, `strided:W,K`, `alternating:W`); nil: the model's own.
        public var attention: String?
        /// A hard limit in bytes for the process's resident memory (weights then stream from the file).
        public var memoryBudget: Int?

        public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount, maxContext: Int? = nil, kvType: String = "f16",
                    attention: String? = nil, memoryBudget: Int? = nil) {
            self.threads = threads; self.maxContext = maxContext; self.kvType = kvType
            self.attention = attention; self.memoryBudget = memoryBudget
        }
    }

    /// How to generate.
    public struct Parameters: Sendable {
        /// New tokens at most.
        public var maxTokens: Int
        /// 0: greedy.
        public var temperature: Float
        /// 0: no top-k cut.
        public var topK: Int
        /// 1: no nucleus cut.
        public var topP: Float
        public var seed: UInt64
        /// Stop at the tokenizer's end-of-text token.
        public var stopAtEndOfText: Bool

        public init(maxTokens: Int = 128, temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 42,
                    stopAtEndOfText: Bool = true) {
            self.maxTokens = maxTokens; self.temperature = temperature; self.topK = topK; self.topP = topP
            self.seed = seed; self.stopAtEndOfText = stopAtEndOfText
        }
    }

    /// A piece of generated text and the token ids it came from. `text` is whole UTF-8
    /// characters only: a token that ends inside a character carries its bytes over to the next piece.
    public struct Piece: Sendable, Equatable {
        public var text: String
        public var tokens: [Int32]
    }

    /// The metadata's architecture ("gpt2", "llama", ...).
    public let architecture: String
    /// Positions one generation may use.
    public let contextLength: Int
    public let vocabularySize: Int

    private let loaded: LoadedModel
    private let lock = NSLock()

    public init(path: String, options: Options = Options()) throws {
        guard let kv = KVType(rawValue: options.kvType.lowercased()) else {
            throw ModelError("kvType must be f32, f16 or q8_0, got '\(options.kvType)'")
        }
        guard options.maxContext.map({ $0 > 0 }) ?? true else { throw ModelError("maxContext must be > 0") }
        loaded = try LoadedModel(path: path, options: LoadOptions(threads: max(1, options.threads),
                                                                  attention: AttentionConfig(attention: options.attention, kvType: kv),
                                                                  memoryBudget: options.memoryBudget, kvPositions: options.maxContext))
        architecture = loaded.file.metadata.architecture
        contextLength = loaded.model.positionLimit
        vocabularySize = loaded.model.shape.vocabSize
    }

    /// Token ids of `text` with the model's tokenizer.
    public func encode(_ text: String) -> [Int32] { loaded.tokenizer.encode(text) }

    /// Streams the continuation of `prompt` (the prompt itself is not repeated).
    public func generate(_ prompt: String, _ parameters: Parameters = Parameters()) -> AsyncThrowingStream<Piece, Error> {
        let cancelled = Flag()
        return AsyncThrowingStream { continuation in
            continuation.onTermination = { _ in cancelled.set() }
            // Decoding blocks a thread for its whole length: a thread of its own, not the cooperative pool's.
            let thread = Thread { [self] in
                lock.lock()
                defer { lock.unlock() }
                var pending: [UInt8] = [], ids: [Int32] = []
                do {
                    let opts = GenerationOptions(maxNewTokens: max(0, parameters.maxTokens),
                                                 sampling: SamplingConfig(temperature: parameters.temperature, topK: parameters.topK,
                                                                          topP: parameters.topP, seed: parameters.seed),
                                                 stopAtEndOfText: parameters.stopAtEndOfText)
                    var o = opts
                    o.echoPrompt = false
                    _ = try Generator.generate(loaded, prompt: prompt, options: o, onToken: { id, bytes in
                        pending += bytes
                        ids.append(id)
                        let n = Self.completeUTF8Prefix(pending)
                        guard n > 0 else { return }
                        continuation.yield(Piece(text: String(decoding: pending[..<n], as: UTF8.self), tokens: ids))
                        pending.removeFirst(n)
                        ids.removeAll(keepingCapacity: true)
                    }, isCancelled: { cancelled.isSet }) { _ in }
                    if !pending.isEmpty || !ids.isEmpty {
                        continuation.yield(Piece(text: String(decoding: pending, as: UTF8.self), tokens: ids))
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            thread.stackSize = 1 << 22
            thread.start()
        }
    }

    /// Bytes of `b` up to the last whole UTF-8 character (an incomplete sequence at the end waits).
    static func completeUTF8Prefix(_ b: [UInt8]) -> Int {
        var i = b.count - 1, back = 0
        while i >= 0, back < 4, b[i] & 0xC0 == 0x80 { i -= 1; back += 1 }
        guard i >= 0 else { return b.count }
        let lead = b[i], need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        return b.count - i >= need ? b.count : i
    }

    private final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        func set() { lock.lock(); value = true; lock.unlock() }
        var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    }
}
