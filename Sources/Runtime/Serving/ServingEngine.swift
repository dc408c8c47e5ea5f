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
    /// Under a memory budget: the KV pool cannot take another slot of this request's size.
    case memoryFull(needBytes: Int, poolBytes: Int)

    package var description: String {
        switch self {
        case .memoryFull(let n, let p):
            return "server busy: the memory budget's KV pool (\(mib(p)) MiB) cannot take another request needing \(mib(n)) MiB of KV cache now; retry later"
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
        /// The request's decoding: sampling, stops, text, usage, drafts (`DecodeSession`).
        var session: DecodeSession?
        /// Prompt tokens already in the cache while the prompt is being prefilled (nil: decoding).
        var prefilled: Int?
        init(model: LanguageModel) { self.model = model }
    }
    private struct Job {
        let request: ServeRequest
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
    /// Admission by KV bytes (under a memory budget; unlimited otherwise).
    private(set) package var admission: KVAdmission

    /// `speculative`: lookup only (a draft model per slot is not supported); the loaded model's
    /// cache must roll back draftLength + 1 positions (`LoadOptions.kvRollback`).
    package init(loaded: LoadedModel, parallel: Int, contextPerSlot: Int, queueLimit: Int,
                 speculative: SpeculativeOptions? = nil, prefillChunk: Int = 64, kvPool: Int? = nil) throws {
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
        slots = [Slot(model: loaded.model)]
        for _ in 1 ..< parallel { slots.append(Slot(model: try loaded.makeSequence(positions: ctx, rollback: rollback))) }
        let cache = loaded.model.cache as? PatternKVCache
        admission = KVAdmission(poolBytes: kvPool, slots: parallel) { [cache] p in cache?.residentBytes(positions: p) ?? 0 }
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
        let need = kvNeed(r)
        if admission.neverFits(need) { throw ServeRejection.memoryFull(needBytes: need, poolBytes: admission.poolBytes!) }
        let freeSlots = slots.indices.filter { slots[$0].job == nil }
        let free = admission.admissible(need, free: freeSlots)
        if waiting.count >= free + queueLimit {
            if free < freeSlots.count { throw ServeRejection.memoryFull(needBytes: need, poolBytes: admission.poolBytes!) }
            throw ServeRejection.queueFull(waiting: waiting.count, limit: queueLimit)
        }
        waiting.append(Job(request: r, isCancelled: isCancelled, emit: emit))
        cond.signal()
    }

    /// KV bytes a request makes resident in its slot: prompt + completion (+ the drafts a
    /// verification pass stores beyond them), at most the slot's context.
    private func kvNeed(_ r: ServeRequest) -> Int {
        admission.need(positions: min(contextPerSlot, r.prompt.count + r.maxTokens + (speculative?.draftLength ?? 0) + 1))
    }

    /// A slot's request ended (under `cond`): its KV bytes go back to the pool, its pages to the kernel.
    private func freeSlot(_ s: Slot) {
        s.job = nil
        guard let i = slots.firstIndex(where: { $0 === s }), admission.held[i] > 0 else { return }
        admission.release(slot: i)
        (s.model.cache as? PatternKVCache)?.releasePages()
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
            for (i, s) in slots.enumerated() where s.job == nil && !waiting.isEmpty {
                // Oldest first, while the KV pool holds the request beside the other slots.
                let need = kvNeed(waiting[0].request)
                guard admission.fits(need, slot: i) else { break }
                if admission.poolBytes != nil { admission.take(slot: i, need: need) }
                s.job = waiting.removeFirst()
                admitted.append(s)
            }
            let active = slots.filter { $0.job != nil }
            cond.unlock()

            for s in admitted { start(s) }
            // Every decoding slot emits the token(s) it decided last (its session's stop rules may
            // end it there); those that go on need one forward each, at their own position over
            // their own cache. Slots still prefilling join the same pass with a chunk of their
            // prompt (`advance`).
            let going = active.filter { s in
                guard s.prefilled == nil, let d = s.session else { return false }
                if d.emit() { return true }
                finish(s, d.stopReason!.finishReason)
                return false
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
        if reason == "cancelled" { _ = s.session?.end(.cancelled) }   // (a session that stopped itself has ended already)
        j.emit(.done(finishReason: reason, promptTokens: j.request.prompt.count, completionTokens: s.session?.tokens.count ?? 0))
        cond.lock()
        freeSlot(s)
        s.session = nil
        cond.unlock()
    }

    /// Sets a newly admitted slot up for its request; its prompt is prefilled by the next steps.
    private func start(_ s: Slot) {
        guard let j = s.job else { return }
        s.session = nil
        if j.isCancelled() { finish(s, "cancelled"); return }
        let r = j.request
        // Speculation drafts for greedy requests only (lookup: verified by argmax).
        let spec = r.sampling.temperature <= 0 ? speculative : nil
        do {
            s.session = try DecodeSession(model: s.model, tokenizer: tokenizer, prompt: r.prompt, sampling: r.sampling,
                                          rules: StopRules(maxTokens: r.maxTokens, tokens: r.stopTokens, sequences: r.stop),
                                          positionLimit: contextPerSlot, speculative: spec, isCancelled: j.isCancelled) { bytes, ids in
                j.emit(.text(String(decoding: bytes, as: UTF8.self), Array(ids)))
            }
        } catch {
            fail(s, error)
            return
        }
        s.prefilled = 0
    }

    private func fail(_ s: Slot, _ error: Error) {
        s.job?.emit(.failed("\(error)"))
        cond.lock(); freeSlot(s); s.session = nil; s.prefilled = nil; cond.unlock()
    }

    /// The whole rest of a slot's prompt in its own pass (a model that cannot batch sequences).
    private func prefillWhole(_ s: Slot) {
        guard let j = s.job, let d = s.session, let done = s.prefilled else { return }
        let prompt = j.request.prompt
        do {
            var next: Int32 = 0
            try s.model.forward(Array(prompt[done...]), startPos: done, logitRows: prompt.count - done - 1 ..< prompt.count - done) { _, l in
                next = d.sample(l)
            }
            d.prefilled(first: next)
            s.prefilled = nil
        } catch {
            fail(s, error)
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
        if end == j.request.prompt.count { s.session?.prefilled(first: first); s.prefilled = nil } else { s.prefilled = end }
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
            do { try s.session?.step() } catch { fail(s, error) }
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
        var owner = [(slot: Int, row: Int)](repeating: (-1, 0), count: n)   // chunk rows: slot -1
        let sessions = going.map { $0.session! }
        // Drafts fill the step up to the few-token kernels' rows (QLM_FEW_MAX): past them a step
        // runs on the prefill tiles, compute-bound on 2 cores, and drafted rows cost more than
        // they save (4 clients, SmolLM2 repeat: x0.87-0.94 of plain without this cap). A step with
        // a prompt chunk drafts nothing.
        var rowsLeft = n > 0 || speculative == nil ? 0 : min(slots[0].model.maxBatch, Int(QLM_FEW_MAX)) - going.count
        for (i, d) in sessions.enumerated() {
            let m = try d.proposeDraft(rows: rowsLeft)
            rowsLeft -= m
            tokens.append(d.next); positions.append(d.pos); caches.append(d.model.cache); owner.append((i, 0))
            for k in 0 ..< m {
                tokens.append(d.draft(k)); positions.append(d.pos + 1 + k); caches.append(d.model.cache); owner.append((i, k + 1))
            }
        }
        let endsPrompt = c.map { $0.start + $0.count == $0.slot.job?.request.prompt.count } ?? false
        var first: Int32 = 0
        try runRows(tokens, positions, caches, logitRows: (endsPrompt ? n - 1 : n) ..< tokens.count) { t, l in
            let (i, row) = owner[t]
            if i < 0 { first = c!.slot.session!.sample(l) } else { sessions[i].decide(row: row, l) }
        }
        if let c { chunkRan(c, first: first, decoding: going.count) }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        for d in sessions {
            // (a pass with a prompt chunk says nothing of what drafts cost)
            let (m, a) = try d.passRan(seconds: seconds, record: n == 0)
            if m > 0 { speculation.passes += 1; speculation.drafted += m; speculation.accepted += a }
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
}
