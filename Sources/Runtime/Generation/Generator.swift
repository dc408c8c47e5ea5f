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
    /// Speculative decoding (nil: one token per forward pass). `.draft` needs a draft model.
    package var speculative: SpeculativeOptions?

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
    /// Passes, drafted and accepted tokens (speculative decoding only).
    package var speculative: SpeculativeStats?

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", tokens, text, stopReason = "stop_reason"
        case promptSeconds = "prompt_seconds", decodeSeconds = "decode_seconds"
        case promptTokensPerSecond = "prompt_tokens_per_second", decodeTokensPerSecond = "decode_tokens_per_second"
        case kvCacheBytes = "kv_cache_bytes", memory, memoryPlan = "memory_plan", speculative
    }
}

package enum Generator {
    /// The KV positions and batch a generation needs (prompt + new tokens; one batch for the
    /// prompt up to `maxBatch`, and at least a verification pass of 1 + k tokens when speculating,
    /// whose cache must roll back k positions), for LoadOptions.sizing: the cache the budget plans
    /// is the one used.
    package static func sizing(prompt: String, options: GenerationOptions, maxBatch: Int = 128) -> (any Tokenizer, ModelShape) -> RunSizing {
        { tok, hp in
            var n = tok.encode(prompt).count
            if n == 0, tok.bosID != nil { n = 1 }
            n = max(n, 1)
            let positions = options.steps.map { max($0, n) } ?? n + options.maxNewTokens
            let k = options.speculative.map { max(1, $0.draftLength) } ?? 0
            return RunSizing(kvPositions: min(hp.nCtx, positions), maxBatch: max(min(maxBatch, n), k + 1), kvRollback: k + 1)
        }
    }

    /// Encodes the prompt, prefills it as one batch, then decodes (a `DecodeSession`), calling
    /// `onText` with the prompt's text first, then the generated text in whole UTF-8 characters
    /// as soon as they exist. `onPiece(bytes, ids)` sees the same generated text with the ids it
    /// came from; decoding stops (reason "cancelled") before the next forward pass once
    /// `isCancelled` returns true. With `options.speculative`, tokens come from verification
    /// passes (`SpeculativeDecoder`); `.draft` drafts with `draft`.
    package static func generate(_ lm: LoadedModel, prompt: String, options: GenerationOptions, draft: LoadedModel? = nil,
                                onPiece: ((ArraySlice<UInt8>, ArraySlice<Int32>) -> Void)? = nil, isCancelled: (() -> Bool)? = nil,
                                onText: @escaping ([UInt8]) -> Void) throws -> GenerationResult {
        var promptIDs = lm.tokenizer.encode(prompt)
        if promptIDs.isEmpty, let bos = lm.tokenizer.bosID { promptIDs = [bos] }
        return try generate(lm, promptIDs: promptIDs, promptText: prompt, options: options, draft: draft,
                            onPiece: onPiece, isCancelled: isCancelled, onText: onText)
    }

    /// The same from token ids (`promptText`: what to echo for tokenizers whose pieces are not
    /// printed one by one; nil: the ids' bytes).
    package static func generate(_ lm: LoadedModel, promptIDs: [Int32], promptText: String? = nil, options: GenerationOptions,
                                draft: LoadedModel? = nil, onPiece: ((ArraySlice<UInt8>, ArraySlice<Int32>) -> Void)? = nil,
                                isCancelled: (() -> Bool)? = nil, onText: @escaping ([UInt8]) -> Void) throws -> GenerationResult {
        let model = lm.model, tok = lm.tokenizer
        let hp = model.shape
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
        var echo: [UInt8] = []
        if tok is Llama2cTokenizer {
            var streamer = TextStreamer(tokenizer: tok, prev: promptIDs[0])
            for id in promptIDs.dropFirst() { echo += streamer.piece(id) }
        } else {
            echo = promptText.map { Array($0.utf8) } ?? promptIDs.flatMap { tok.tokenBytes($0) }
        }
        if options.echoPrompt { onText(echo) }

        let session = try DecodeSession(model: model, tokenizer: tok, prompt: promptIDs, sampling: options.sampling,
                                        rules: StopRules(maxTokens: budget, tokens: stops), positionLimit: capacity,
                                        speculative: options.speculative, draft: draft, isCancelled: isCancelled) { bytes, ids in
            onText(Array(bytes))
            onPiece?(bytes, ids)
        }
        try session.prefill()
        let streamed0 = lm.streamedCounters, read0 = lm.weights.streamReadSeconds
        try session.run()
        // Decoded tokens = forward passes after the prompt (the last sampled token needs none).
        let decoded = max(0, session.pos - promptIDs.count)
        return GenerationResult(
            promptTokens: promptIDs, tokens: session.tokens, text: String(decoding: echo + session.text, as: UTF8.self),
            stopReason: session.stopReason!.rawValue,
            promptSeconds: session.promptSeconds, decodeSeconds: session.decodeSeconds,
            promptTokensPerSecond: Double(promptIDs.count) / max(session.promptSeconds, 1e-9),
            decodeTokensPerSecond: Double(decoded) / max(session.decodeSeconds, 1e-9),
            kvCacheBytes: model.cache.bytes, memory: MemoryStats.current(),
            memoryPlan: lm.memoryReport(since: streamed0, readSince: read0, tokens: decoded), speculative: session.speculativeStats)
    }
}
