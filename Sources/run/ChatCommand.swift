import ArgumentParser
import Foundation
import Quant
import Runtime

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with an instruct model, using its chat template.",
        discussion: """
        The chat format comes from the model's tokenizer.chat_template (ChatML's <|im_start|> or Gemma's <start_of_turn>), or, when the file has none, from the turn tokens in its vocabulary; --template overrides. Gemma has no system role: --system opens the first user turn. Replies stop at the end-of-turn token (<|im_end|>, <end_of_turn>) or end-of-text.

        Without --prompt, lines are read from stdin, one user turn each; the KV cache is kept across turns and only the new turn is prefilled.

        Examples:
          run chat smollm2.qlm --prompt "What is the capital of France?" --temperature 0
          run chat gemma3.qlm --system "Answer briefly." --max-tokens 200
        """
    )

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "One user turn: answer it and exit (otherwise read turns from stdin).")
    var prompt: String?

    @Option(name: .long, help: "System prompt.")
    var system: String?

    @OptionGroup var template: TemplateOption

    @Option(name: .long, help: "New tokens per reply at most.")
    var maxTokens: Int = 512

    @Option(name: .long, help: "KV positions for the whole conversation (at most the model's n_ctx).")
    var ctx: Int = 4096

    @OptionGroup var sampling: SamplingOptions

    @Flag(name: .long, help: "With --prompt: print one JSON object (template, rendered prompt, reply, token ids, speeds).")
    var json = false

    @Option(name: .long, help: ScreenHelp.text)
    var screen: Int?

    func validate() throws {
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be > 0") }
        guard ctx > 0 else { throw ValidationError("--ctx must be > 0") }
        if json && prompt == nil { throw ValidationError("--json needs --prompt (one-shot mode)") }
        try ScreenHelp.validate(screen, sampling)
    }

    func run() throws {
        do {
            let lm = try options.load(sizing: { [ctx] _, hp in RunSizing(kvPositions: min(hp.nCtx, ctx), maxBatch: 128) }, screen: screen)
            let chosen = try ChatTemplate.resolve(template: lm.file.metadata.tokenizer.chatTemplate, override: template.template,
                                                  tokenizer: lm.tokenizer, file: options.model)
            let session = try ChatSession(lm, template: chosen, system: system, sampling: sampling.config)
            func write(_ s: String) { FileHandle.standardOutput.write(Data(s.utf8)) }
            if let prompt {
                let rendered = session.promptText(for: prompt)
                let reply = try session.reply(to: prompt, maxNewTokens: maxTokens) { if !json { write($0) } }
                if json {
                    struct Out: Encodable {
                        var model: String; var template: String; var default_system: String?; var load_seconds: Double
                        var prompt: String; var reply: ChatReply
                    }
                    print(jsonLine(Out(model: options.model, template: chosen.format.rawValue, default_system: chosen.defaultSystem,
                                       load_seconds: lm.loadSeconds, prompt: rendered, reply: reply)))
                } else {
                    write("\n")
                    printError(summary(reply))
                }
                return
            }
            let interactive = isatty(0) != 0
            printError("chat (\(chosen.format.rawValue) format, \(lm.model.cache.capacity) positions); one line per turn, end with Ctrl-D")
            while true {
                if interactive { FileHandle.standardError.write(Data("> ".utf8)) }
                guard let line = readLine(strippingNewline: true) else { break }
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                let reply = try session.reply(to: line, maxNewTokens: maxTokens) { write($0) }
                write("\n")
                if interactive || reply.stopReason != "end_of_turn" { printError(summary(reply)) }
            }
        }
    }

    func summary(_ r: ChatReply) -> String {
        String(format: "prompt %d tok, %.1f tok/s | reply %d tok, %.1f tok/s | %d positions used | stop: %@",
               r.promptTokens.count, Double(r.promptTokens.count) / max(r.promptSeconds, 1e-9), r.tokens.count,
               Double(r.tokens.count) / max(r.decodeSeconds, 1e-9), r.positions, r.stopReason)
    }
}
