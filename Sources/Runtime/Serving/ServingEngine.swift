import CKernels
import Foundation
import Quant

/// One completion a client asked for, as token ids and limits.
package struct ServeRequest: Sendable {
    package var prompt: [Int32]
    package var maxTokens: Int
    package var sampling: SamplingConfig
    /// Text that ends the completion (not included in it).
    package var stop: [String]
    /// Stop at the tokenizer's end-of-text / extra end tokens (e.g. a chat's end-of-turn).
    package var stopTokens: Set<Int32>

    package init(prompt: [Int32], maxTokens: Int, sampling: SamplingConfig = SamplingConfig(), stop: [String] = [], stopTokens: Set<Int32> = []) {
        self.prompt = prompt; self.maxTokens = maxTokens; self.sampling = sampling; self.stop = stop; self.stopTokens = stopTokens
    }
}

/// What the engine tells a request's owner, in order: text pieces, then one `done`.
package enum ServeEvent: Sendable, Equatable {
    /// Whole UTF-8 text (possibly empty while a stop sequence may be starting) and the ids it came from.
    case text(String, [Int32])
    /// finishReason: "stop" (end token or stop sequence), "length" (max_tokens or the slot's
    /// context is full), "cancelled" (the owner went away).
    case done(finishReason: String, promptTokens: Int, completionTokens: Int)
    case failed(String)
}

/// Why a request was not admitted.
package enum ServeRejection: Error, CustomStringConvertible, Equatable {
    case queueFull(waiting: Int, limit: Int)
    case promptTooLong(tokens: Int, context: Int)
    case stopping

    package var description: String {
        switch self {
        case .queueFull(let w, let l): return "server busy: \(w) requests already waiting (queue limit \(l)); retry later"
        case .promptTooLong(let t, let c): return "the prompt is \(t) tokens; a slot's context holds \(c)"
        case .stopping: return "the server is shutting down"
        }
    }
}

/// Continuous batching over `parallel` slots, each a sequence with its own KV cache over the
/// shared weights. One scheduler thread owns the model: between steps it admits waiting
/// requests into free slots (prefilling each prompt), then advances every active slot by one
/// token; a slot is freed the step its request ends or its owner cancels.
package final class ServingEngine: @unchecked Sendable {
    package let parallel: Int
    package let contextPerSlot: Int
    package let queueLimit: Int
    package let tokenizer: any Tokenizer

    private let loaded: LoadedModel
    private final class Slot {
        let model: LanguageModel
        var job: Job?
        var pos = 0
        var next: Int32 = 0
        var sampler: Sampler?
        var streamer: TextStreamer
        var generated = 0
        var pending: [UInt8] = []     // bytes not yet emitted (incomplete UTF-8 or a possible stop prefix)
        var pendingIDs: [Int32] = []
        var text: [UInt8] = []        // every completion byte so far (stop-sequence search)
        // Speculation (greedy requests, --speculative lookup): the prompt and every token emitted,
        // the tokens a verification pass decided beyond `next` (emitted before the next pass),
        // the draft-length policy and the drafter of this request.
        var history: [Int32] = []
        var ready: [Int32] = []
        var policy: DraftPolicy?
        var drafter: LookupDrafter?
        var drafts: [Int32] = []
        /// Prompt tokens already in the cache while the prompt is being prefilled (nil: decoding).
        var prefilled: Int?
        init(model: LanguageModel, tokenizer: any Tokenizer) {
            self.model = model
            streamer = TextStreamer(tokenizer: tokenizer, prev: 0)
        }
    }
    private struct Job {
        let request: ServeRequest
        let stopBytes: [[UInt8]]
        let isCancelled: @Sendable () -> Bool
        let emit: @Sendable (ServeEvent) -> Void
    }

    private var slots: [Slot] = []
    /// Decode steps batch every active slot into one pass (until the model says it cannot).
    private var batched = true
    private var waiting: [Job] = []
    private let cond = NSCondition()
    private var stopping = false
    private var thread: Thread?
    /// Tokens decoded and steps run (for the server's /health and tests).
    private(set) package var stepsRun = 0
    /// Prompt-lookup speculation for greedy requests (nil: off): drafts joined into the step's
    /// batched pass, one row per drafted token, so a slot may advance several tokens per step.
    package let speculative: SpeculativeOptions?
    /// Verification passes slots took part in with a draft, tokens drafted and accepted.
    private(set) package var speculation = (passes: 0, drafted: 0, accepted: 0)
    /// The most prompt tokens a step prefills beside decoding slots (a prompt is prefilled in
    /// chunks that ride in the decode steps' batched pass, so the other slots keep decoding).
    package let prefillChunk: Int
    /// Prompt chunks that ran in a pass beside decoding slots.
    private(set) package var chunksBesideDecoding = 0

    /// `speculative`: lookup only (a draft model per slot is not supported); the loaded model's
    /// cache must roll back draftLength + 1 positions (`LoadOptions.kvRollback`).
    package init(loaded: LoadedModel, parallel: Int, contextPerSlot: Int, queueLimit: Int,
                 speculative: SpeculativeOptions? = nil, prefillChunk: Int = 64) throws {
        precondition(parallel >= 1 && queueLimit >= 0 && prefillChunk >= 1)
        self.prefillChunk = prefillChunk
        if let sp = speculative {
            guard sp.kind == .lookup else { throw ModelError("the server drafts by prompt lookup only (--speculative lookup)") }
            guard (1 ... 32).contains(sp.draftLength) else { throw ModelError("--draft-len must be 1...32, got \(sp.draftLength)") }
            guard loaded.model.cache.rollbackLimit >= sp.draftLength + 1 else {
                throw ModelError("speculation needs a KV cache that rolls back \(sp.draftLength + 1) positions (load with kvRollback)")
            }
        }
        self.speculative = speculative
        self.loaded = loaded
        self.parallel = parallel
        self.queueLimit = queueLimit
        tokenizer = loaded.tokenizer
        let ctx = min(contextPerSlot, loaded.model.positionLimit)
        self.contextPerSlot = ctx
        let rollback = speculative.map { $0.draftLength + 1 } ?? 1
        slots = [Slot(model: loaded.model, tokenizer: loaded.tokenizer)]
        for _ in 1 ..< parallel {
            slots.append(Slot(model: try loaded.makeSequence(positions: ctx, rollback: rollback), tokenizer: loaded.tokenizer))
        }
        let t = Thread { [unowned self] in self.loop() }
        t.stackSize = 1 << 22
        t.name = "quantlm-scheduler"
        thread = t
        t.start()
    }

    /// Active plus waiting requests.
    package var load: (active: Int, waiting: Int) {
        cond.lock(); defer { cond.unlock() }
        return (slots.filter { $0.job != nil }.count, waiting.count)
    }

    /// Queues a request; events arrive on the scheduler thread through `emit`. Throws a
    /// `ServeRejection` when it cannot be taken.
    package func submit(_ r: ServeRequest, isCancelled: @escaping @Sendable () -> Bool, emit: @escaping @Sendable (ServeEvent) -> Void) throws {
        guard !r.prompt.isEmpty, r.prompt.count < contextPerSlot else {
            throw ServeRejection.promptTooLong(tokens: r.prompt.count, context: contextPerSlot)
        }
        cond.lock(); defer { cond.unlock() }
        if stopping { throw ServeRejection.stopping }
        let free = slots.filter { $0.job == nil }.count
        if waiting.count >= free + queueLimit { throw ServeRejection.queueFull(waiting: waiting.count, limit: queueLimit) }
        waiting.append(Job(request: r, stopBytes: r.stop.filter { !$0.isEmpty }.map { Array($0.utf8) }, isCancelled: isCancelled, emit: emit))
        cond.signal()
    }

    /// Stops taking requests; returns once every admitted and waiting request has finished.
    package func drain() {
        cond.lock()
        stopping = true
        cond.broadcast()
        while !waiting.isEmpty || slots.contains(where: { $0.job != nil }) { cond.wait() }
        cond.unlock()
    }

    private func loop() {
        while true {
            cond.lock()
            while waiting.isEmpty && !slots.contains(where: { $0.job != nil }) {
                cond.broadcast()   // drain() waits for this
                cond.wait()
            }
            // Admit: waiting requests into free slots, oldest first.
            var admitted: [Slot] = []
            for s in slots where s.job == nil && !waiting.isEmpty {
                s.job = waiting.removeFirst()
                admitted.append(s)
            }
            let active = slots.filter { $0.job != nil }
            cond.unlock()

            for s in admitted { start(s) }
            // Every decoding slot emits the token it sampled last; those that go on need one
            // forward each, at their own position over their own cache. Slots still prefilling
            // join the same pass with a chunk of their prompt (`advance`).
            // A speculative pass may have decided several tokens: they are emitted in order (a
            // stop among them ends the request there) before the slot's next pass.
            let going = active.filter { s in
                guard s.prefilled == nil else { return false }
                var go = emitAndCheck(s)
                while go && !s.ready.isEmpty { s.next = s.ready.removeFirst(); go = emitAndCheck(s) }
                if !go { s.ready.removeAll() }
                return go
            }
            advance(going, prefilling: active.filter { $0.prefilled != nil && $0.job != nil })
            stepsRun += 1
            cond.lock()
            cond.broadcast()
            cond.unlock()
        }
    }

    private func finish(_ s: Slot, _ reason: String) {
        guard let j = s.job else { return }
        if !s.pending.isEmpty || !s.pendingIDs.isEmpty, reason != "cancelled" {
            j.emit(.text(String(decoding: s.pending, as: UTF8.self), s.pendingIDs))
        }
        j.emit(.done(finishReason: reason, promptTokens: j.request.prompt.count, completionTokens: s.generated))
        cond.lock()
        s.job = nil
        s.sampler = nil
        cond.unlock()
    }

    /// Sets a newly admitted slot up for its request; its prompt is prefilled by the next steps.
    private func start(_ s: Slot) {
        guard let j = s.job else { return }
        if j.isCancelled() { finish(s, "cancelled"); return }
        let r = j.request
        s.sampler = Sampler(vocab: s.model.shape.vocabSize, config: r.sampling)
        s.streamer = TextStreamer(tokenizer: tokenizer, prev: r.prompt.last!)
        s.generated = 0
        s.pending.removeAll(keepingCapacity: true)
        s.pendingIDs.removeAll(keepingCapacity: true)
        s.text.removeAll(keepingCapacity: true)
        s.ready.removeAll()
        s.history = r.prompt
        if let sp = speculative, r.sampling.temperature <= 0 {
            let d = LookupDrafter(ngramMax: sp.ngramMax, ngramMin: sp.ngramMin)
            s.drafter = d
            s.policy = DraftPolicy(maxK: sp.draftLength, classes: d.classes)
            if s.drafts.count < sp.draftLength { s.drafts = [Int32](repeating: 0, count: sp.draftLength) }
        } else {
            s.drafter = nil
            s.policy = nil
        }
        s.prefilled = 0
    }

    /// The whole rest of a slot's prompt in its own pass (a model that cannot batch sequences).
    private func prefillWhole(_ s: Slot) {
        guard let j = s.job, let done = s.prefilled else { return }
        let prompt = j.request.prompt, sampler = s.sampler!
        do {
            var next: Int32 = 0
            try s.model.forward(Array(prompt[done...]), startPos: done, logitRows: prompt.count - done - 1 ..< prompt.count - done) { _, l in
                next = sampler.sample(l)
            }
            s.next = next
            s.pos = prompt.count
            s.prefilled = nil
        } catch {
            j.emit(.failed("\(error)"))
            cond.lock(); s.job = nil; s.prefilled = nil; cond.unlock()
        }
    }

    /// The prompt chunk this step runs: the first prefilling slot's next tokens, at most
    /// `prefillChunk` when other slots decode in the same pass (all that fits otherwise), and at
    /// most `room` rows. Cancelled prefilling slots are finished here.
    private func chunk(_ prefilling: [Slot], decoding: Int, room: Int) -> (slot: Slot, start: Int, count: Int)? {
        for s in prefilling {
            guard let j = s.job, let done = s.prefilled else { continue }
            if j.isCancelled() { s.prefilled = nil; finish(s, "cancelled"); continue }
            let n = min(j.request.prompt.count - done, decoding > 0 ? prefillChunk : Int.max, room)
            return n >= 1 ? (s, done, n) : nil
        }
        return nil
    }

    /// After a pass that ran `c`: the slot's prompt is `count` tokens further; the last chunk's
    /// logits gave the first token (`first`).
    private func chunkRan(_ c: (slot: Slot, start: Int, count: Int), first: Int32, decoding: Int) {
        if decoding > 0 { chunksBesideDecoding += 1 }
        let s = c.slot, end = c.start + c.count
        guard let j = s.job else { return }
        if end == j.request.prompt.count { s.next = first; s.pos = end; s.prefilled = nil } else { s.prefilled = end }
    }

    /// Emits the slot's sampled token and checks the stops; true if the slot needs a forward pass.
    private func emitAndCheck(_ s: Slot) -> Bool {
        guard let j = s.job else { return false }
        if j.isCancelled() { finish(s, "cancelled"); return false }
        let r = j.request
        if s.generated >= r.maxTokens { finish(s, "length"); return false }
        let id = s.next
        if r.stopTokens.contains(id) { finish(s, "stop"); return false }
        s.generated += 1
        if s.drafter != nil { s.history.append(id) }
        let bytes = s.streamer.piece(id)
        let searchFrom = s.text.count
        s.text += bytes
        s.pending += bytes
        s.pendingIDs.append(id)
        // A stop sequence: cut the completion where it starts (only new matches can appear:
        // search from where the longest stop could begin across the new bytes).
        for stop in j.stopBytes {
            if let at = Self.find(stop, in: s.text, from: max(0, searchFrom - stop.count + 1)) {
                let keep = at - (s.text.count - s.pending.count)
                if keep > 0 { j.emit(.text(String(decoding: s.pending[..<keep], as: UTF8.self), s.pendingIDs)) }
                s.pending.removeAll(); s.pendingIDs.removeAll()
                finish(s, "stop")
                return false
            }
        }
        // Emit what can no longer start a stop sequence and is whole UTF-8.
        var hold = 0
        for stop in j.stopBytes { hold = max(hold, Self.suffixPrefixOverlap(s.text, stop)) }
        let safe = max(0, s.pending.count - hold)
        let n = Model.completeUTF8Prefix(Array(s.pending[..<safe]))
        if n > 0 {
            j.emit(.text(String(decoding: s.pending[..<n], as: UTF8.self), s.pendingIDs))
            s.pending.removeFirst(n)
            s.pendingIDs.removeAll(keepingCapacity: true)
        }
        if s.generated >= r.maxTokens { finish(s, "length"); return false }
        if s.pos >= contextPerSlot { finish(s, "length"); return false }
        return true
    }

    /// Runs the continuing slots' last tokens, each at its position over its own cache, as one
    /// batched pass (the weights are read once per step for all of them; `step`), then samples
    /// each slot's next token. Slots still prefilling add a chunk of one prompt as the pass's
    /// first rows (consecutive positions over that slot's cache; only its last row's logits are
    /// computed, and only when the chunk ends the prompt). A model that cannot batch sequences
    /// runs them one by one.
    private func advance(_ going: [Slot], prefilling: [Slot] = []) {
        guard !going.isEmpty || !prefilling.isEmpty else { return }
        let maxRows = slots[0].model.maxBatch
        if batched {
            let c = chunk(prefilling, decoding: going.count, room: maxRows - going.count)
            if going.isEmpty && c == nil { return }
            do {
                try step(going, chunk: c)
                return
            } catch {
                batched = false   // this architecture decodes one sequence per pass
            }
        }
        for s in prefilling where s.prefilled != nil { prefillWhole(s) }
        for s in going {
            guard let j = s.job, let sampler = s.sampler else { continue }
            do {
                var next: Int32 = 0
                try s.model.forward([s.next], startPos: s.pos, logitRows: 0 ..< 1) { _, l in next = sampler.sample(l) }
                s.next = next
                s.pos += 1
            } catch {
                j.emit(.failed("\(error)"))
                cond.lock(); s.job = nil; cond.unlock()
            }
        }
    }

    /// One batched pass: a prompt chunk's rows first (if any), then every going slot's current
    /// token and, for greedy slots under --speculative lookup, a draft after it (rows: the slot's
    /// token at pos, its drafts at pos + 1 ...; each row over the slot's own cache, stored and
    /// attended in order, so a draft row sees the rows before it). A slot without a draft samples
    /// its next token from its row. A greedy slot keeps its drafts up to the first one its logits
    /// disagree with, plus the token those logits pick: exactly plain greedy decoding's tokens.
    /// The cache is rolled back past what was kept.
    private func step(_ going: [Slot], chunk c: (slot: Slot, start: Int, count: Int)?) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        var tokens: [Int32] = [], positions: [Int] = [], caches: [KVCache] = []
        let n = chunkRows(c, &tokens, &positions, &caches)
        var owner = [(slot: Int, j: Int)](repeating: (-1, 0), count: n)   // chunk rows: slot -1
        var drafted = [Int](repeating: 0, count: going.count), classes = drafted
        // Drafts fill the step up to the few-token kernels' rows (QLM_FEW_MAX): past them a step
        // runs on the prefill tiles, compute-bound on 2 cores, and drafted rows cost more than
        // they save (4 clients, SmolLM2 repeat: x0.87-0.94 of plain without this cap). A step with
        // a prompt chunk drafts nothing.
        var rowsLeft = n > 0 || speculative == nil ? 0 : min(slots[0].model.maxBatch, Int(QLM_FEW_MAX)) - going.count
        for (i, s) in going.enumerated() {
            var m = 0
            if let d = s.drafter, let j = s.job, rowsLeft > 0 {
                let limit = min(speculative!.draftLength, j.request.maxTokens - s.generated - 1, contextPerSlot - 1 - s.pos, rowsLeft)
                if limit >= 1 {
                    m = try s.drafts.withUnsafeMutableBufferPointer { try d.propose(s.history, max: limit, into: $0.baseAddress!) }
                    if speculative!.adaptive && m > 0 { m = min(m, s.policy!.next(class: d.draftClass)) }
                    classes[i] = d.draftClass
                }
            }
            drafted[i] = m
            rowsLeft -= m
            tokens.append(s.next); positions.append(s.pos); caches.append(s.model.cache); owner.append((i, 0))
            for k in 0 ..< m {
                tokens.append(s.drafts[k]); positions.append(s.pos + 1 + k); caches.append(s.model.cache); owner.append((i, k + 1))
            }
        }
        var accepted = [Int](repeating: 0, count: going.count), final = [Int32](repeating: -1, count: going.count)
        let endsPrompt = c.map { $0.start + $0.count == $0.slot.job?.request.prompt.count } ?? false
        var first: Int32 = 0
        try runRows(tokens, positions, caches, logitRows: (endsPrompt ? n - 1 : n) ..< tokens.count) { t, l in
            let (i, j) = owner[t]
            if i < 0 { first = c!.slot.sampler!.sample(l); return }
            let s = going[i]
            guard final[i] < 0 else { return }
            if s.drafter == nil { final[i] = s.sampler!.sample(l); return }
            let g = Sampler.argmax(l)
            if j < drafted[i] && g == s.drafts[j] { accepted[i] += 1 } else { final[i] = g }
        }
        if let c { chunkRan(c, first: first, decoding: going.count) }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        for (i, s) in going.enumerated() {
            precondition(final[i] >= 0, "the pass decided no token")
            let a = accepted[i], m = drafted[i]
            if m > 0 {
                try s.model.cache.truncate(to: s.pos + a + 1)
                speculation.passes += 1; speculation.drafted += m; speculation.accepted += a
            }
            // (a pass with a prompt chunk says nothing of what drafts cost)
            if s.policy != nil && n == 0 { s.policy!.record(class: classes[i], drafted: m, accepted: a, seconds: seconds) }
            s.pos += a + 1
            if a == 0 { s.next = final[i] } else { s.next = s.drafts[0]; s.ready = Array(s.drafts[1 ..< a]) + [final[i]] }
        }
    }

    /// Appends the chunk's rows (its prompt tokens at consecutive positions over its slot's
    /// cache); returns how many.
    private func chunkRows(_ c: (slot: Slot, start: Int, count: Int)?, _ tokens: inout [Int32], _ positions: inout [Int],
                           _ caches: inout [KVCache]) -> Int {
        guard let c, let j = c.slot.job else { return 0 }
        tokens += j.request.prompt[c.start ..< c.start + c.count]
        positions += c.start ..< c.start + c.count
        caches += Array(repeating: c.slot.model.cache, count: c.count)
        return c.count
    }

    /// One forward over rows each at its own position and cache (several rows may share a cache,
    /// at consecutive positions in order), logits for `logitRows` only.
    private func runRows(_ tokens: [Int32], _ positions: [Int], _ caches: [KVCache], logitRows: Range<Int>,
                         onLogits: (Int, UnsafeBufferPointer<Float>) -> Void) throws {
        try tokens.withUnsafeBufferPointer { tp in
            try positions.withUnsafeBufferPointer { pp in
                try slots[0].model.forward(tp, rows: Rows(positions: pp, caches: caches), logitRows: logitRows, onLogits: onLogits)
            }
        }
    }

    /// First index of `needle` in `hay`.
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
