import Foundation

/// A tokenizer described by its vocabulary rather than by files: what a GGUF file's
/// `tokenizer.ggml.*` keys hold. The checkpoint readers fill it; the runtime builds the
/// tokenizer from it (byte-level BPE for `model == "gpt2"`, SentencePiece for `"llama"`).
package struct TokenizerData: Sendable, Equatable, Codable {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE with merges) or "llama" (SentencePiece
    /// with scores and byte fallback).
    package var model: String
    /// `tokenizer.ggml.pre`: the pre-tokenizer ("default", "gpt2", "smollm", "llama3", "qwen2", ...).
    package var pre: String?
    /// `tokenizer.ggml.tokens`: the token strings, index = id.
    package var tokens: [String]
    /// `tokenizer.ggml.scores` (SentencePiece piece scores), one per token.
    package var scores: [Float]?
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    package var tokenTypes: [Int32]?
    /// `tokenizer.ggml.merges`: "left right" per line, in rank order (BPE only).
    package var merges: [String]?
    package var bos: Int?
    package var eos: Int?
    package var unk: Int?
    package var pad: Int?
    package var addBos: Bool?
    package var addEos: Bool?
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece's dummy prefix).
    package var addSpacePrefix: Bool?
    /// `tokenizer.chat_template` (Jinja text), kept so `run chat` can recognise the format.
    package var chatTemplate: String?
    /// A Unicode normalization applied to text before encoding ("nfc": tokenizer.json's NFC
    /// normalizer, as Qwen 2 uses); nil: none.
    package var normalizer: String? = nil
    /// The file it came from, for messages (the bpe-json payload stores it empty: see
    /// `TokenizerPayloads.make`).
    package var source: String

    package init(model: String, pre: String? = nil, tokens: [String], scores: [Float]? = nil, tokenTypes: [Int32]? = nil,
                merges: [String]? = nil, bos: Int? = nil, eos: Int? = nil, unk: Int? = nil, pad: Int? = nil,
                addBos: Bool? = nil, addEos: Bool? = nil, addSpacePrefix: Bool? = nil, chatTemplate: String? = nil,
                source: String) {
        self.model = model; self.pre = pre; self.tokens = tokens; self.scores = scores; self.tokenTypes = tokenTypes
        self.merges = merges; self.bos = bos; self.eos = eos; self.unk = unk; self.pad = pad
        self.addBos = addBos; self.addEos = addEos; self.addSpacePrefix = addSpacePrefix
        self.chatTemplate = chatTemplate; self.source = source
    }
}
