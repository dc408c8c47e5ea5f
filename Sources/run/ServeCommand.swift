import ArgumentParser
import Foundation
import NIOCore
import Quant
import Runtime

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model over HTTP with OpenAI's API (completions, chat completions, models, health).",
        discussion: """
        Up to --parallel requests decode together, each in a slot with its own KV cache of --ctx positions; new requests join between decode steps, and up to --queue more wait. A request that cannot be queued gets HTTP 429. SIGTERM or SIGINT stop accepting connections, let the requests in flight finish, then exit.

        The model file is memory-mapped: replace it by rename (write the new file beside it, then mv it over the old one; the server keeps the old file's pages until it restarts). A file truncated or rewritten in place (cp over it) makes the server exit with an error naming the file (exit 74), never answer from changed weights.

        Endpoints: POST /v1/completions, POST /v1/chat/completions (the model's chat template: ChatML or Gemma turns), GET /v1/models, GET /health, POST /tokenize ({"content": text} → {"tokens": ids}). Parameters: max_tokens, temperature, top_p, top_k, seed, stop (up to 4), n = 1, stream (server-sent events; stream_options.include_usage).

        Example:
          run serve smollm2-q8.qlm --port 8080 --parallel 4
          curl -s localhost:8080/v1/completions -H 'Content-Type: application/json' \\
              -d '{"model": "smollm2-q8.qlm", "prompt": "Once upon a time", "max_tokens": 32, "temperature": 0}'
        """
    )

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(name: .long, help: "TCP port (0: any free port; the one chosen is printed).")
    var port = 8080

    @Option(name: .long, help: "Requests decoded together (slots, each with its own KV cache).")
    var parallel = 4

    @Option(name: .long, help: "KV positions per slot: prompt + completion (default: the model's n_ctx, at most 2048).")
    var ctx: Int?

    @Option(name: .long, help: "Requests that may wait for a slot; beyond that, 429.")
    var queue = 16

    @Option(name: .long, help: "Largest request body in bytes (413 beyond).")
    var maxBody = 1 << 20

    @Option(name: .long, help: "Seconds a client may take to send a whole request (slow clients are disconnected).")
    var readTimeout = 10

    @Option(name: .long, help: "The model id clients name (default: the file's name).")
    var alias: String?

    @OptionGroup var template: TemplateOption

    @Option(name: .long, help: "Speculative decoding for greedy requests (temperature 0): lookup drafts the continuation of the latest earlier match of a slot's last tokens in its prompt and text; the drafts join the step's batched pass and the output is plain greedy decoding's. Sampled requests decode as usual.")
    var speculative: String?

    @Option(name: .long, help: "With --speculative: the most tokens drafted per slot and step (the length adapts below it).")
    var draftLen: Int = SpeculativeOptions.defaultDraftLength

    @Option(name: .long, help: "The most prompt tokens a decode step prefills for a new request beside the decoding slots (the prompt rides in the step's batched pass in chunks, so the others keep decoding; alone, a prompt is prefilled whole).")
    var prefillChunk = 64

    func validate() throws {
        guard (1 ... 64).contains(parallel) else { throw ValidationError("--parallel must be 1...64, got \(parallel)") }
        guard (0 ... 65535).contains(port) else { throw ValidationError("--port must be 0...65535, got \(port)") }
        if let c = ctx, c < 2 { throw ValidationError("--ctx must be at least 2") }
        guard (0 ... 100_000).contains(queue) else { throw ValidationError("--queue must be 0...100000") }
        guard maxBody >= 1024 else { throw ValidationError("--max-body must be at least 1024 bytes") }
        guard (1 ... 3600).contains(readTimeout) else { throw ValidationError("--read-timeout must be 1...3600 seconds") }
        if let s = speculative, s != "lookup" {
            throw ValidationError("--speculative: the server drafts by lookup only (no per-slot draft model), got '\(s)'")
        }
        guard (1 ... 32).contains(draftLen) else { throw ValidationError("--draft-len must be 1...32, got \(draftLen)") }
        guard (1 ... 128).contains(prefillChunk) else { throw ValidationError("--prefill-chunk must be 1...128 (the pass holds 128 rows), got \(prefillChunk)") }
    }

    func run() throws {
        // SIGTERM / SIGINT are taken by sigwait on a thread of their own: blocked here, before
        // any thread starts, so every thread inherits the mask and none dies of them.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGTERM)
        sigaddset(&stopSignals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &stopSignals, nil)

        let file = try QLMFile(URL(fileURLWithPath: options.model))
        let hp = file.metadata.hparams
        let positions = min(ctx ?? min(hp.nCtx, 2048), hp.nCtx)
        let spec = speculative.map { _ in SpeculativeOptions(kind: .lookup, draftLength: draftLen) }
        let rollback = spec.map { $0.draftLength + 1 } ?? 1
        // Under a memory budget (auto included) the plan counts one KV pool for every slot and
        // requests are admitted by the KV bytes they need (KVAdmission); without, every slot's
        // whole context.
        let parallel = self.parallel
        let lm = try options.load(maxBatch: 128, sizing: { _, _ in RunSizing(kvPositions: positions, maxBatch: 128, kvRollback: rollback) },
                                  plannedKV: { budget, slot in
                                      KVAdmission.poolBytes(budget: budget, parallel: parallel, fullSlotBytes: slot,
                                                            minimumSlotBytes: slot * min(positions, 64) / max(1, positions))
                                  })
        let pool = lm.plan.budget == nil ? nil : lm.plan.kvBytes
        let engine = try ServingEngine(loaded: lm, parallel: parallel, contextPerSlot: positions, queueLimit: queue, speculative: spec,
                                       prefillChunk: prefillChunk, kvPool: pool)
        let id = alias ?? URL(fileURLWithPath: options.model).lastPathComponent
        // The chat format, or why there is none (then /v1/chat/completions answers 400 with it).
        let chat = Result { try ChatTemplate.resolve(template: file.metadata.tokenizer.chatTemplate, override: template.template,
                                                     tokenizer: lm.tokenizer, file: options.model) }
        let api = OpenAIAPI(engine: engine, modelID: id, chat: chat)
        let server = HTTPServer()
        let bound = try server.start(host: host, port: port, maxBody: maxBody, readTimeout: .seconds(Int64(readTimeout))) { req, w in
            api.handle(req, w)
        }
        printError("listening on http://\(host):\(bound) — model \(id), \(parallel) slots × \(positions) positions (KV \(formatBytes(lm.model.cache.bytes)) each), queue \(queue)"
            + (pool.map { " | memory budget \(formatBytes(lm.plan.budget!)): requests admitted by KV bytes from a \(formatBytes($0)) pool" } ?? ""))

        // SIGTERM / SIGINT: stop accepting, finish what is in flight, exit.
        let waitSet = stopSignals
        let waiter = Thread {
            var set = waitSet
            var sig: Int32 = 0
            sigwait(&set, &sig)
            printError("signal \(sig): draining \(engine.load.active) active and \(engine.load.waiting) waiting requests")
            server.stopAccepting()
        }
        waiter.start()
        try server.channel?.closeFuture.wait()
        engine.drain()
        api.waitIdle()
        try? server.group.syncShutdownGracefully()
        printError("stopped")
    }
}
