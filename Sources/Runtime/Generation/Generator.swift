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

    /// Encodes the prompt, prefills it as one batch, then samples token by token, calling
    /// `onText` with each piece of text (the prompt's first) as soon as it exists.
    /// `onToken(id, bytes)` sees each new token with its text; decoding stops (reason "cancelled")
    /// before the next forward pass once `isCancelled` returns true. With `options.speculative`,
    /// tokens come from verification passes (`SpeculativeDecoder`); `.draft` drafts with `draft`.
    package static func generate(_ lm: LoadedModel, prompt: String, options: GenerationOptions, draft: LoadedModel? = nil,
                                onToken: ((Int32, [UInt8]) -> Void)? = nil, isCancelled: (() -> Bool)? = nil,
                                onText: ([UInt8]) -> Void) throws -> GenerationResult {
        var promptIDs = lm.tokenizer.encode(prompt)
        if promptIDs.isEmpty, let bos = lm.tokenizer.bosID { promptIDs = [bos] }
        return try generate(lm, promptIDs: promptIDs, promptText: prompt, options: options, draft: draft,
                            onToken: onToken, isCancelled: isCancelled, onText: onText)
    }

    /// The same from token ids (`promptText`: what to echo for tokenizers whose pieces are not
    /// printed one by one; nil: the ids' bytes).
    package static func generate(_ lm: LoadedModel, promptIDs: [Int32], promptText: String? = nil, options: GenerationOptions,
                                draft: LoadedModel? = nil, onToken: ((Int32, [UInt8]) -> Void)? = nil,
                                isCancelled: (() -> Bool)? = nil, onText: ([UInt8]) -> Void) throws -> GenerationResult {
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
        var streamer = TextStreamer(tokenizer: tok, prev: promptIDs[0])
        var text: [UInt8] = []
        if tok is Llama2cTokenizer {
            for id in promptIDs.dropFirst() { let p = streamer.piece(id); text += p; if options.echoPrompt { onText(p) } }
        } else {
            let p = promptText.map { Array($0.utf8) } ?? promptIDs.flatMap { tok.tokenBytes($0) }
            text += p; if options.echoPrompt { onText(p) }
            streamer.prev = promptIDs.last!
        }

        let sampler = Sampler(vocab: hp.vocabSize, config: options.sampling)
        var spec: SpeculativeDecoder?
        if let so = options.speculative {
            let drafter: Drafter
            switch so.kind {
            case .lookup:
                drafter = LookupDrafter(ngramMax: so.ngramMax, ngramMin: so.ngramMin)
            case .draft:
                guard let draft else { throw ModelError("speculative decoding with a draft model needs one (--draft MODEL.qlm)") }
                guard draft.model.shape.vocabSize == hp.vocabSize else {
                    throw ModelError("the draft model's vocabulary has \(draft.model.shape.vocabSize) tokens; the model's has \(hp.vocabSize)")
                }
                drafter = ModelDrafter(draft, sampling: options.sampling, maxDraft: max(1, so.draftLength))
            }
            spec = SpeculativeDecoder(model: model, sampler: sampler, drafter: drafter, options: so, prompt: promptIDs)
        }
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
            if let spec {
                next = try spec.next(after: next, pos: pos, remaining: budget - out.count, capacity: capacity)
            } else {
                one[0] = next
                try model.forward(one, startPos: pos, logitRows: 0 ..< 1) { _, logits in next = sampler.sample(logits) }
            }
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
            memoryPlan: lm.memoryReport(since: streamed0, tokens: decoded), speculative: spec?.stats)
    }
}
