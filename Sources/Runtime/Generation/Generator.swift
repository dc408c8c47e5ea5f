import Foundation
import Quant

package struct GenerationOptions: Sendable {
    /// New tokens to produce at most.
    package var maxNewTokens: Int
    /// llama2.c's `-n`: total positions including the prompt (overrides maxNewTokens when set).
    package var steps: Int?
    package var sampling: SamplingConfig
    /// Stop at the tokenizer's end/begin-of-text token.
    package var stopAtEndOfText: Bool
    /// Pass the prompt's text to `onText` first, as the reference programs print it.
    package var echoPrompt: Bool = true

    package init(maxNewTokens: Int = 128, steps: Int? = nil, sampling: SamplingConfig = SamplingConfig(), stopAtEndOfText: Bool = true) {
        self.maxNewTokens = maxNewTokens; self.steps = steps; self.sampling = sampling; self.stopAtEndOfText = stopAtEndOfText
    }
}

package struct GenerationResult: Codable, Sendable {
    package var promptTokens: [Int32]
    package var tokens: [Int32]
    package var text: String
    package var stopReason: String
    package var promptSeconds: Double
    package var decodeSeconds: Double
    package var promptTokensPerSecond: Double
    package var decodeTokensPerSecond: Double
    package var kvCacheBytes: Int
    package var memory: MemoryStats
    /// The memory plan (budget, planned bytes, buffers) and bytes streamed per decoded token.
    package var memoryPlan: MemoryReport

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", tokens, text, stopReason = "stop_reason"
        case promptSeconds = "prompt_seconds", decodeSeconds = "decode_seconds"
        case promptTokensPerSecond = "prompt_tokens_per_second", decodeTokensPerSecond = "decode_tokens_per_second"
        case kvCacheBytes = "kv_cache_bytes", memory, memoryPlan = "memory_plan"
    }
}

/// Turns token ids into the bytes to print, the way each tokenizer's reference does it.
struct TextStreamer {
    let tokenizer: any Tokenizer
    /// Resolved once: a dynamic cast per token showed up in profiles.
    private let llama: Llama2cTokenizer?
    var prev: Int32

    init(tokenizer: any Tokenizer, prev: Int32) {
        self.tokenizer = tokenizer
        self.llama = tokenizer as? Llama2cTokenizer
        self.prev = prev
    }

    mutating func piece(_ id: Int32) -> [UInt8] {
        defer { prev = id }
        if let l = llama {
            return Llama2cTokenizer.printablePiece(l.decodePiece(prev: prev, token: id))
        }
        return tokenizer.tokenBytes(id)
    }
}

package enum Generator {
    /// The KV positions and batch a generation needs (prompt + new tokens; one batch for the
    /// prompt up to `maxBatch`), for LoadOptions.sizing: the cache the budget plans is the one used.
    package static func sizing(prompt: String, options: GenerationOptions, maxBatch: Int = 128) -> (any Tokenizer, HParams) -> RunSizing {
        { tok, hp in
            var n = tok.encode(prompt).count
            if n == 0, tok.bosID != nil { n = 1 }
            n = max(n, 1)
            let positions = options.steps.map { max($0, n) } ?? n + options.maxNewTokens
            return RunSizing(kvPositions: min(hp.nCtx, positions), maxBatch: min(maxBatch, n))
        }
    }

    /// Encodes the prompt, prefills it as one batch, then samples token by token, calling
    /// `onText` with each piece of text (the prompt's first) as soon as it exists.
    /// `onToken(id, bytes)` sees each new token with its text; decoding stops (reason "cancelled")
    /// before the next forward pass once `isCancelled` returns true.
    package static func generate(_ lm: LoadedModel, prompt: String, options: GenerationOptions,
                                onToken: ((Int32, [UInt8]) -> Void)? = nil, isCancelled: (() -> Bool)? = nil,
                                onText: ([UInt8]) -> Void) throws -> GenerationResult {
        let model = lm.model, tok = lm.tokenizer
        let hp = model.hparams
        var promptIDs = tok.encode(prompt)
        if promptIDs.isEmpty, let bos = tok.bosID { promptIDs = [bos] }
        guard !promptIDs.isEmpty else { throw ModelError("the prompt encodes to no tokens and the tokenizer has no start token") }
        let capacity = model.positionLimit
        guard promptIDs.count <= capacity else {
            throw ModelError("the prompt is \(promptIDs.count) tokens; this model's context holds \(capacity) (n_ctx \(hp.nCtx))")
        }
        var budget = options.maxNewTokens
        // run.c prints the token sampled at every position 0 ..< steps, so the last one is new too.
        if let steps = options.steps { budget = max(0, min(steps, capacity) - promptIDs.count + 1) }
        let stops: Set<Int32> = options.stopAtEndOfText ? Set([tok.bosID, tok.eosID].compactMap { $0 }) : []

        // Echo the prompt as the reference implementations do.
        var streamer = TextStreamer(tokenizer: tok, prev: promptIDs[0])
        var text: [UInt8] = []
        if tok is Llama2cTokenizer {
            for id in promptIDs.dropFirst() { let p = streamer.piece(id); text += p; if options.echoPrompt { onText(p) } }
        } else {
            let p = Array(prompt.utf8); text += p; if options.echoPrompt { onText(p) }
            streamer.prev = promptIDs.last!
        }

        let sampler = Sampler(vocab: hp.vocabSize, config: options.sampling)
        let t0 = Date()
        var next: Int32 = 0
        try model.forward(promptIDs, startPos: 0, logitRows: promptIDs.count - 1 ..< promptIDs.count) { _, logits in
            next = sampler.sample(logits)
        }
        let promptSeconds = Date().timeIntervalSince(t0)
        var out: [Int32] = []
        out.reserveCapacity(budget)
        var pos = promptIDs.count
        var stop = "max_tokens"
        MemoryStats.sample()
        let streamed0 = lm.streamedCounters
        let t1 = Date()
        var one: [Int32] = [0]
        while out.count < budget {
            if stops.contains(next) { stop = "end_of_text"; break }
            out.append(next)
            let p = streamer.piece(next); text += p; onText(p)
            onToken?(next, p)
            if out.count == budget { break }
            if isCancelled?() == true { stop = "cancelled"; break }
            if pos >= capacity { stop = "context_full"; break }
            one[0] = next
            try model.forward(one, startPos: pos, logitRows: 0 ..< 1) { _, logits in next = sampler.sample(logits) }
            pos += 1
            if out.count & 15 == 0 { MemoryStats.sample() }
        }
        MemoryStats.sample()
        let decodeSeconds = Date().timeIntervalSince(t1)
        // Decoded tokens = forward passes after the prompt (the last sampled token needs none).
        let decoded = max(0, pos - promptIDs.count)
        return GenerationResult(
            promptTokens: promptIDs, tokens: out, text: String(decoding: text, as: UTF8.self), stopReason: stop,
            promptSeconds: promptSeconds, decodeSeconds: decodeSeconds,
            promptTokensPerSecond: Double(promptIDs.count) / max(promptSeconds, 1e-9),
            decodeTokensPerSecond: Double(decoded) / max(decodeSeconds, 1e-9),
            kvCacheBytes: model.cache.bytes, memory: MemoryStats.current(),
            memoryPlan: lm.memoryReport(since: streamed0, tokens: decoded))
    }
}
