import Foundation
import Quant

/// Why a generation ended.
package enum StopReason: String, Sendable, Codable {
    /// A stop token (end/begin of text).
    case endOfText = "end_of_text"
    /// The stop token named as the end of a chat turn.
    case endOfTurn = "end_of_turn"
    /// A stop sequence appeared in the text (the text ends before it).
    case stopSequence = "stop_sequence"
    case maxTokens = "max_tokens"
    /// The next token has no position left.
    case contextFull = "context_full"
    /// The owner went away (checked before each token and each forward pass).
    case cancelled

    /// OpenAI's finish_reason: "stop", "length" or "cancelled".
    package var finishReason: String {
        switch self {
        case .endOfText, .endOfTurn, .stopSequence: return "stop"
        case .maxTokens, .contextFull: return "length"
        case .cancelled: return "cancelled"
        }
    }
}

/// When a generation stops.
package struct StopRules: Sendable {
    /// New tokens at most.
    package var maxTokens: Int
    /// Tokens that end the generation (not part of it).
    package var tokens: Set<Int32>
    /// The one of `tokens` reported as `.endOfTurn` (a chat's turn marker).
    package var endOfTurn: Int32?
    /// Texts that end the generation; the text stops where the first one starts.
    package var sequences: [String]

    package init(maxTokens: Int, tokens: Set<Int32> = [], endOfTurn: Int32? = nil, sequences: [String] = []) {
        self.maxTokens = maxTokens; self.tokens = tokens; self.endOfTurn = endOfTurn; self.sequences = sequences
    }
}

/// One generation over one sequence (a model and its KV cache): the single place where a token
/// is sampled, checked against the stop rules, turned into whole UTF-8 text and counted.
/// `run generate`, `run chat`, every `run serve` slot and `Model.generate` decode through it.
///
/// A token goes through three states: sampled (`next`, at position `pos`, not yet in the cache),
/// emitted (`emit()`: stop checks, text, usage), run (`step()`, or a batched pass over many
/// sessions: `proposeDraft` / `decide` / `passRan`), which samples the next one. With speculation
/// a pass may decide several tokens; `emit()` emits them in order and stops among them.
package final class DecodeSession {
    package let model: LanguageModel
    package let sampler: Sampler
    package let rules: StopRules
    /// Forward passes run at positions below this (the token sampled at the limit is the last).
    package let positionLimit: Int
    /// The prompt's ids (prefilled from `startPos`).
    package let prompt: [Int32]
    package let startPos: Int
    /// Generated ids (usage), and the completion's bytes (cut where a stop sequence starts).
    package private(set) var tokens: [Int32] = []
    package private(set) var text: [UInt8] = []
    /// The token to emit or run next, and its position.
    package private(set) var next: Int32 = 0
    package private(set) var pos: Int
    package private(set) var stopReason: StopReason?
    package private(set) var promptSeconds = 0.0
    package private(set) var decodeSeconds = 0.0

    private let isCancelled: (() -> Bool)?
    private let onText: (ArraySlice<UInt8>, ArraySlice<Int32>) -> Void
    private var streamer: TextStreamer
    private let stopBytes: [[UInt8]]
    /// Bytes not yet passed to onText (an incomplete UTF-8 character or a possible stop prefix)
    /// and the ids they came from.
    private var pending: [UInt8] = []
    private var pendingIDs: [Int32] = []
    /// Tokens a speculative pass decided after `next` (their positions follow).
    private var ready: [Int32] = []
    private var readyHead = 0
    private let speculation: SpeculativeDecoder?
    /// Sampled from the row of a batched pass (plain decoding).
    private var decided: Int32 = -1
    private var one: [Int32] = [0]

    /// `onText(bytes, ids)`: whole UTF-8 characters (at the end, whatever is left) and the ids
    /// generated since the last call. `sampler`: a generator to continue (a chat's across turns);
    /// nil: a new one from `sampling`. `speculative`: drafts verified by this session's passes
    /// (`.draft` needs `draft`).
    package init(model: LanguageModel, tokenizer: any Tokenizer, prompt: [Int32], startPos: Int = 0, sampling: SamplingConfig = SamplingConfig(),
                 sampler: Sampler? = nil, rules: StopRules, positionLimit: Int, speculative: SpeculativeOptions? = nil,
                 draft: LoadedModel? = nil, isCancelled: (() -> Bool)? = nil,
                 onText: @escaping (ArraySlice<UInt8>, ArraySlice<Int32>) -> Void) throws {
        precondition(!prompt.isEmpty)
        let sampler = sampler ?? Sampler(vocab: model.shape.vocabSize, config: sampling)
        self.model = model; self.sampler = sampler; self.rules = rules; self.positionLimit = positionLimit
        self.prompt = prompt; self.startPos = startPos; pos = startPos
        self.isCancelled = isCancelled; self.onText = onText
        streamer = TextStreamer(tokenizer: tokenizer, prev: prompt.last!)
        stopBytes = rules.sequences.filter { !$0.isEmpty }.map { Array($0.utf8) }
        tokens.reserveCapacity(min(max(rules.maxTokens, 0), 4096))
        if let so = speculative {
            let vocab = model.shape.vocabSize
            let drafter: Drafter
            switch so.kind {
            case .lookup:
                drafter = LookupDrafter(ngramMax: so.ngramMax, ngramMin: so.ngramMin)
            case .draft:
                guard let draft else { throw ModelError("speculative decoding with a draft model needs one (--draft MODEL.qlm)") }
                guard draft.model.shape.vocabSize == vocab else {
                    throw ModelError("the draft model's vocabulary has \(draft.model.shape.vocabSize) tokens; the model's has \(vocab)")
                }
                drafter = ModelDrafter(draft, sampling: sampler.config, maxDraft: max(1, so.draftLength))
            }
            speculation = SpeculativeDecoder(model: model, sampler: sampler, drafter: drafter, options: so, prompt: prompt)
        } else {
            speculation = nil
        }
    }

    /// Passes, drafted and accepted tokens (speculation only).
    package var speculativeStats: SpeculativeStats? { speculation?.stats }

    // MARK: - One sequence alone

    /// Prefills the prompt as one batch and samples the first token.
    package func prefill() throws {
        let t0 = Date()
        var first: Int32 = 0
        try model.forward(prompt, startPos: startPos, logitRows: prompt.count - 1 ..< prompt.count) { _, logits in first = sampler.sample(logits) }
        prefilled(first: first)
        promptSeconds = Date().timeIntervalSince(t0)
    }

    /// Emits and runs tokens until a stop rule ends the generation; returns why.
    @discardableResult
    package func run() throws -> StopReason {
        MemoryStats.sample()
        let t0 = Date()
        while emit() {
            try step()
            if tokens.count & 15 == 0 { MemoryStats.sample() }
        }
        MemoryStats.sample()
        decodeSeconds = Date().timeIntervalSince(t0)
        return stopReason!
    }

    /// Runs `next` at `pos` (with speculation: a verification pass of it and its drafts) and
    /// samples what follows.
    package func step() throws {
        if let spec = speculation {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let m = try proposeDraft(rows: Int.max)
            try spec.withPass(current: next, drafted: m) { batch in
                try model.forward(batch, startPos: pos, logitRows: 0 ..< m + 1) { i, logits in spec.verify(row: i, logits) }
            }
            _ = try passRan(seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        } else {
            one[0] = next
            try model.forward(one, startPos: pos, logitRows: 0 ..< 1) { _, logits in decided = sampler.sample(logits) }
            _ = try passRan(seconds: 0)
        }
    }

    // MARK: - Many sequences in one pass (the server's step)

    /// The prompt is in the cache and `first` sampled from its last row.
    package func prefilled(first: Int32) {
        next = first
        pos = startPos + prompt.count
    }

    /// Samples a token from logits with this session's generator.
    package func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 { sampler.sample(logits) }

    /// Drafts for the coming pass, at most `rows` (0 without speculation); they follow `next` as
    /// rows at pos + 1 ... over this session's cache.
    package func proposeDraft(rows: Int) throws -> Int {
        guard let spec = speculation else { return 0 }
        // (every pass starts here, drafting or not: it resets the pass's verdict)
        return try spec.propose(limit: min(spec.options.draftLength, rules.maxTokens - tokens.count - 1, positionLimit - 1 - pos, rows))
    }

    /// Draft k (0 ..< what `proposeDraft` returned).
    package func draft(_ k: Int) -> Int32 { speculation!.drafts[k] }

    /// The logits of row `row` of this session's rows in a pass (0: `next`, k: draft k).
    package func decide(row: Int, _ logits: UnsafeBufferPointer<Float>) {
        if let spec = speculation { spec.verify(row: row, logits) } else { decided = sampler.sample(logits) }
    }

    /// After the pass: the cache keeps what was accepted, `next` is the token that follows.
    /// `record`: the pass's time says what drafts cost (false for a pass that also prefilled).
    /// Returns the tokens drafted and accepted.
    package func passRan(seconds: Double, record: Bool = true) throws -> (drafted: Int, accepted: Int) {
        guard let spec = speculation else {
            precondition(decided >= 0, "the pass decided no token")
            next = decided
            decided = -1
            pos += 1
            return (0, 0)
        }
        let (m, a, final) = try spec.commit(pos: pos, seconds: seconds, record: record)
        ready.removeAll(keepingCapacity: true)
        readyHead = 0
        if a == 0 {
            next = final
        } else {
            next = spec.drafts[0]
            for k in 1 ..< a { ready.append(spec.drafts[k]) }
            ready.append(final)
        }
        pos += 1
        return (m, a)
    }

    // MARK: - Emitting

    /// Emits `next` (and any tokens the last pass decided after it) through the stop rules;
    /// true when `next` must be run (`step()` or a batched pass), false once the generation has
    /// ended (`stopReason`; the text left over is passed on first, unless cancelled).
    package func emit() -> Bool {
        guard stopReason == nil else { return false }
        while true {
            if isCancelled?() == true { return end(.cancelled) }
            if tokens.count >= rules.maxTokens { return end(.maxTokens) }
            let id = next
            if rules.tokens.contains(id) { return end(id == rules.endOfTurn ? .endOfTurn : .endOfText) }
            tokens.append(id)
            speculation?.emitted(id)
            let bytes = streamer.piece(id)
            let searchFrom = text.count
            text += bytes
            pending += bytes
            pendingIDs.append(id)
            if !stopBytes.isEmpty, cutAtStopSequence(from: searchFrom) { return end(.stopSequence) }
            passOnText()
            if tokens.count >= rules.maxTokens { return end(.maxTokens) }
            if readyHead < ready.count {
                next = ready[readyHead]; readyHead += 1; pos += 1
                continue
            }
            if isCancelled?() == true { return end(.cancelled) }
            if pos >= positionLimit { return end(.contextFull) }
            return true
        }
    }

    /// Ends the generation (emit's false).
    package func end(_ reason: StopReason) -> Bool {
        guard stopReason == nil else { return false }
        stopReason = reason
        ready.removeAll()
        readyHead = 0
        if reason != .cancelled, !pending.isEmpty || !pendingIDs.isEmpty { onText(pending[...], pendingIDs[...]) }
        pending.removeAll()
        pendingIDs.removeAll()
        return false
    }

    /// A stop sequence in the text: pass on the text before it and cut it there. Only new matches
    /// can appear: the search starts where the longest stop could begin across the new bytes.
    private func cutAtStopSequence(from searchFrom: Int) -> Bool {
        for stop in stopBytes {
            guard let at = Self.find(stop, in: text, from: max(0, searchFrom - stop.count + 1)) else { continue }
            let keep = at - (text.count - pending.count)
            if keep > 0 { onText(pending[..<keep], pendingIDs[...]) }
            pending.removeAll(); pendingIDs.removeAll()
            text.removeSubrange(at...)
            return true
        }
        return false
    }

    /// Passes on what can no longer start a stop sequence and is whole UTF-8.
    private func passOnText() {
        var hold = 0
        for stop in stopBytes { hold = max(hold, Self.suffixPrefixOverlap(text, stop)) }
        let n = Self.completeUTF8Prefix(pending, count: max(0, pending.count - hold))
        guard n > 0 else { return }
        onText(pending[..<n], pendingIDs[...])
        pending.removeFirst(n)
        pendingIDs.removeAll(keepingCapacity: true)
    }

    /// Bytes of b[0 ..< count] up to the last whole UTF-8 character (an incomplete sequence at the end waits).
    static func completeUTF8Prefix(_ b: [UInt8], count: Int) -> Int {
        var i = count - 1, back = 0
        while i >= 0, back < 4, b[i] & 0xC0 == 0x80 { i -= 1; back += 1 }
        guard i >= 0 else { return count }
        let lead = b[i], need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        return count - i >= need ? count : i
    }

    /// First index of `needle` in `hay` at or after `start`.
    static func find(_ needle: [UInt8], in hay: [UInt8], from start: Int = 0) -> Int? {
        guard !needle.isEmpty, needle.count <= hay.count else { return nil }
        var i = start
        while i + needle.count <= hay.count {
            if hay[i] == needle[0] && hay[i ..< i + needle.count].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// The longest k < needle.count such that hay ends with needle's first k bytes.
    static func suffixPrefixOverlap(_ hay: [UInt8], _ needle: [UInt8]) -> Int {
        var k = min(needle.count - 1, hay.count)
        while k > 0 {
            if hay[(hay.count - k)...].elementsEqual(needle[..<k]) { return k }
            k -= 1
        }
        return 0
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
