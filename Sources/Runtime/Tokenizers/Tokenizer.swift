import Foundation

/// A text tokenizer. Token ids are `Int32` (the width model files and kernels use).
///
/// `decode` returns bytes rather than a `String` because a single token can hold part of a
/// UTF-8 sequence (byte-level BPE, byte-fallback pieces); callers that stream output should
/// concatenate `tokenBytes` and decode UTF-8 themselves.
package protocol Tokenizer: Sendable {
    /// Number of token ids (ids are `0..<vocabSize`).
    var vocabSize: Int { get }
    /// Beginning-of-sequence id, if the tokenizer has one.
    var bosID: Int32? { get }
    /// End-of-sequence / end-of-text id, if the tokenizer has one.
    var eosID: Int32? { get }
    /// Encodes text as the reference implementation does (see each conforming type).
    func encode(_ text: String) -> [Int32]
    /// Decodes ids to bytes. Ids outside `0..<vocabSize` decode to nothing.
    func decode(_ ids: [Int32]) -> [UInt8]
    /// The bytes of a single token, for streaming output. Out-of-range ids give `[]`.
    func tokenBytes(_ id: Int32) -> [UInt8]
}

/// A tokenizer file that could not be loaded. `description` names the file and the problem.
package struct TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The file (or embedded-blob source) that was being read.
    package let file: String
    /// What was wrong with it.
    package let problem: String

    package init(file: String, problem: String) {
        self.file = file
        self.problem = problem
    }

    package var description: String { "tokenizer \(file): \(problem)" }
}

/// Loads a tokenizer from a path on disk.
///
/// - A directory holding `encoder.json` + `vocab.bpe` (OpenAI GPT-2 layout) or
///   `vocab.json` + `merges.txt` (Hugging Face layout) gives a `GPT2Tokenizer`.
/// - A directory holding `tokenizer.bin` or `tok512.bin`, or such a file itself, gives a
///   `Llama2cTokenizer` (needs `vocabSize`, which the llama2.c format does not store).
/// - Any other file is sniffed: a llama2.c tokenizer starts with an int32 max token length
///   in `1...1024`.
package enum TokenizerLoader {
    package static func load(path: String, vocabSize: Int? = nil) throws -> any Tokenizer {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TokenizerError(file: path, problem: "no such file or directory")
        }
        if isDir.boolValue {
            let dir = URL(fileURLWithPath: path)
            func has(_ name: String) -> Bool { fm.fileExists(atPath: dir.appendingPathComponent(name).path) }
            if has("encoder.json") || has("vocab.bpe") {
                return try GPT2Tokenizer(encoderJSON: dir.appendingPathComponent("encoder.json").path,
                                         merges: dir.appendingPathComponent("vocab.bpe").path)
            }
            if has("vocab.json") || has("merges.txt") {
                return try GPT2Tokenizer(encoderJSON: dir.appendingPathComponent("vocab.json").path,
                                         merges: dir.appendingPathComponent("merges.txt").path)
            }
            for name in ["tokenizer.bin", "tok512.bin"] where has(name) {
                return try loadLlama2c(path: dir.appendingPathComponent(name).path, vocabSize: vocabSize)
            }
            throw TokenizerError(file: path, problem: "directory has no encoder.json+vocab.bpe, vocab.json+merges.txt or tokenizer.bin")
        }
        let bytes = try readFile(path)
        if looksLikeLlama2c(bytes) {
            return try loadLlama2c(bytes: bytes, path: path, vocabSize: vocabSize)
        }
        if bytes.starts(with: GPT2Tokenizer.serializationMagic) {
            return try GPT2Tokenizer(serialized: bytes, source: path)
        }
        throw TokenizerError(file: path, problem: "unrecognized tokenizer file (expected a llama2.c tokenizer.bin, a serialized GPT-2 tokenizer, or a directory)")
    }

    /// True if `bytes` starts with an int32 that is a plausible llama2.c max token length.
    package static func looksLikeLlama2c(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= 12 else { return false }
        let maxLen = Int32(bitPattern: UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24)
        return maxLen >= 1 && maxLen <= 1024
    }

    static func loadLlama2c(path: String, vocabSize: Int?) throws -> Llama2cTokenizer {
        try loadLlama2c(bytes: readFile(path), path: path, vocabSize: vocabSize)
    }

    static func loadLlama2c(bytes: [UInt8], path: String, vocabSize: Int?) throws -> Llama2cTokenizer {
        guard let vocabSize else {
            throw TokenizerError(file: path, problem: "llama2.c tokenizer needs the vocabulary size from the model (none given)")
        }
        return try Llama2cTokenizer(data: bytes, vocabSize: vocabSize, source: path)
    }

    /// Reads a whole file, turning I/O failures into a `TokenizerError` naming the file.
    static func readFile(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            let exists = FileManager.default.fileExists(atPath: path)
            throw TokenizerError(file: path, problem: exists ? "cannot read file" : "file not found")
        }
        return [UInt8](data)
    }
}
