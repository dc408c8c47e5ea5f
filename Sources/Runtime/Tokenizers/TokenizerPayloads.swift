import Foundation
import Quant

/// How tokenizers travel inside .qlm files: "gpt2-bpe" is GPT2Tokenizer's compact blob,
/// "llama2c" is the tokenizer.bin bytes verbatim, "bpe-json" a checkpoint's byte-level BPE
/// vocabulary (TokenizerData as JSON), "spm" SentencePieceTokenizer's compact blob.
package enum TokenizerPayloads {
    /// Reads and validates the tokenizer files of a checkpoint and serializes them for the file.
    package static func make(_ source: TokenizerSource, vocabSize: Int) throws -> TokenizerPayload {
        switch source {
        case .gpt2(let vocab, let merges):
            let tok = try GPT2Tokenizer(encoderJSON: vocab.path, merges: merges.path)
            guard tok.vocabSize == vocabSize else {
                throw TokenizerError(file: vocab.path, problem: "has \(tok.vocabSize) tokens but the model's vocab_size is \(vocabSize)")
            }
            return TokenizerPayload(kind: "gpt2-bpe", blob: tok.serialized(), bos: tok.bosID.map(Int.init),
                                    eos: tok.eosID.map(Int.init), sourceFiles: [vocab, merges])
        case .llama2c(let url):
            guard let data = FileManager.default.contents(atPath: url.path) else {
                throw TokenizerError(file: url.path, problem: "cannot read file")
            }
            let bytes = [UInt8](data)
            let tok = try Llama2cTokenizer(data: bytes, vocabSize: vocabSize, source: url.path)
            return TokenizerPayload(kind: "llama2c", blob: bytes, bos: tok.bosID.map(Int.init),
                                    eos: tok.eosID.map(Int.init), sourceFiles: [url])
        case .data(let d) where d.model == "llama":
            let tok = try SentencePieceTokenizer(d)
            // A model's embedding may have rows past the tokenizer's pieces (padded for speed);
            // those ids decode to nothing. More pieces than rows is an error.
            guard tok.vocabSize <= vocabSize else {
                throw TokenizerError(file: d.source, problem: "has \(tok.vocabSize) tokens but the model's vocab_size is \(vocabSize)")
            }
            return TokenizerPayload(kind: "spm", blob: tok.serialized(), bos: tok.bosID.map(Int.init),
                                    eos: tok.eosID.map(Int.init), sourceFiles: [], chatTemplate: d.chatTemplate)
        case .data(let d):
            guard d.model == "gpt2" else {
                throw TokenizerError(file: d.source, problem: "tokenizer model '\(d.model)' from checkpoint metadata is not supported (byte-level BPE 'gpt2' and SentencePiece 'llama' are)")
            }
            let tok = try BPETokenizer(d)
            // A model's embedding may have rows past the tokenizer's pieces (padded for speed);
            // those ids decode to nothing. More pieces than rows is an error.
            guard tok.vocabSize <= vocabSize else {
                throw TokenizerError(file: d.source, problem: "has \(tok.vocabSize) tokens but the model's vocab_size is \(vocabSize)")
            }
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            // The path stays out of the blob: one vocabulary read from two files is one tokenizer
            // (`run compare` requires identical blobs); `load` names the .qlm in its messages.
            var stored = d
            stored.source = ""
            return TokenizerPayload(kind: "bpe-json", blob: [UInt8](try enc.encode(stored)), bos: tok.bosID.map(Int.init),
                                    eos: tok.eosID.map(Int.init), sourceFiles: [], chatTemplate: d.chatTemplate)
        }
    }

    /// The tokenizer embedded in a .qlm file.
    package static func load(from file: QLMFile) throws -> any Tokenizer {
        let info = file.metadata.tokenizer
        let blob = try file.load(info.tensor)
        let bytes = withExtendedLifetime(blob) { [UInt8](blob.bytes) }
        return try load(kind: info.kind, blob: bytes, vocabSize: file.metadata.hparams.vocabSize,
                        source: "\(file.path) (embedded \(info.kind))", file: file.path)
    }

    /// A tokenizer from an embedded blob of the given kind.
    package static func load(kind: String, blob bytes: [UInt8], vocabSize: Int, source: String, file: String) throws -> any Tokenizer {
        switch kind {
        case "gpt2-bpe": return try GPT2Tokenizer(serialized: bytes, source: source)
        case "llama2c": return try Llama2cTokenizer(data: bytes, vocabSize: vocabSize, source: source)
        case "spm": return try SentencePieceTokenizer(serialized: bytes, source: source)
        case "bpe-json":
            guard var d = try? JSONDecoder().decode(TokenizerData.self, from: Data(bytes)) else {
                throw TokenizerError(file: file, problem: "embedded bpe-json tokenizer is not valid TokenizerData JSON")
            }
            d.source = source
            return try BPETokenizer(d)
        default: throw TokenizerError(file: file, problem: "unknown embedded tokenizer kind '\(kind)'")
        }
    }
}
