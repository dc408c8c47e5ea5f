import Foundation
import Quant

/// The pre-tokenizers a byte-level BPE vocabulary can name in `tokenizer.ggml.pre`.
package enum PreTokenizerKind: String, Sendable, CaseIterable {
    /// GPT-2's `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    case gpt2
    /// SmolLM / StarCoder: every `\p{N}` is its own piece (HF `Digits(individual_digits)`),
    /// then the GPT-2 pattern runs on each stretch between the digits.
    case smollm
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    case llama3
    /// Qwen2: the Llama 3 pattern with single `\p{N}`.
    case qwen2

    /// Maps a `tokenizer.ggml.pre` value; unknown names throw naming the value.
    package init(pre: String?, source: String) throws {
        switch pre ?? "default" {
        case "default", "gpt2", "gpt-2": self = .gpt2
        case "smollm": self = .smollm
        case "llama3", "llama-bpe", "llama-v3": self = .llama3
        case "qwen2": self = .qwen2
        case let other:
            throw TokenizerError(file: source, problem: "unsupported pre-tokenizer '\(other)' (tokenizer.ggml.pre); supported: default, gpt2, smollm, llama3 (llama-bpe), qwen2")
        }
    }
}

/// Hand-written scanners over Unicode scalars (no regex engine in the hot path).
package enum PreTokenizers {
    typealias CharClass = GPT2Tokenizer.CharClass

    /// Splits valid UTF-8 into the byte ranges `kind`'s pattern matches, in order;
    /// `emit(start, end)` gets half-open byte ranges that cover the input exactly.
    package static func split(_ bytes: UnsafeBufferPointer<UInt8>, _ kind: PreTokenizerKind, _ emit: (Int, Int) -> Void) {
        switch kind {
        case .gpt2: GPT2Tokenizer.pretokenize(bytes, emit)
        case .smollm: scan(bytes, emit) { c, v, s in smollm(c, v, s, emit) }
        case .llama3: scan(bytes, emit) { c, v, s in llamaStyle(c, v, s, maxDigits: 3, emit) }
        case .qwen2: scan(bytes, emit) { c, v, s in llamaStyle(c, v, s, maxDigits: 1, emit) }
        }
    }

    /// The pieces as strings (for tests and tools).
    package static func pieces(_ text: String, _ kind: PreTokenizerKind) -> [String] {
        let bytes = Array(text.utf8)
        var out: [String] = []
        bytes.withUnsafeBufferPointer { b in
            split(b, kind) { s, e in out.append(String(decoding: b[s..<e], as: UTF8.self)) }
        }
        return out
    }

    /// Decodes scalars once (class, value, byte start) and hands them to `body`, whose
    /// emitted scalar ranges are translated to byte ranges.
    static func scan(_ bytes: UnsafeBufferPointer<UInt8>, _ emit: (Int, Int) -> Void,
                             _ body: ([CharClass], [UInt32], [Int32]) -> Void) {
        let n = bytes.count
        if n == 0 { return }
        var classes: [CharClass] = []
        var values: [UInt32] = []
        var starts: [Int32] = []
        classes.reserveCapacity(n + 1)
        values.reserveCapacity(n + 1)
        starts.reserveCapacity(n + 1)
        var i = 0
        while i < n {
            let b0 = bytes[i]
            var v: UInt32
            var len: Int
            if b0 < 0x80 { v = UInt32(b0); len = 1 }
            else if b0 < 0xE0 { v = UInt32(b0 & 0x1F); len = 2 }
            else if b0 < 0xF0 { v = UInt32(b0 & 0x0F); len = 3 }
            else { v = UInt32(b0 & 0x07); len = 4 }
            if i + len > n { len = n - i }
            for k in 1..<max(len, 1) { v = v << 6 | UInt32(bytes[i + k] & 0x3F) }
            classes.append(v < 128 ? GPT2Tokenizer.asciiClasses[Int(v)] : GPT2Tokenizer.classify(v))
            values.append(v)
            starts.append(Int32(i))
            i += len
        }
        starts.append(Int32(n))
        body(classes, values, starts)
    }

    @inline(__always) private static func isSpace(_ c: CharClass) -> Bool { c == .space || c == .whitespace }

    /// GPT-2 rules, but each number is a piece of its own and acts as the end of the text for
    /// the rules around it (HF runs ByteLevel's regex on each stretch between digits).
    private static func smollm(_ classes: [CharClass], _ values: [UInt32], _ starts: [Int32], _ emit: (Int, Int) -> Void) {
        let count = classes.count
        func at(_ k: Int) -> UInt32 { k < count && classes[k] != .number ? values[k] : 0 }
        var s = 0
        while s < count {
            let c = classes[s]
            var e = s + 1
            if c == .number { emit(Int(starts[s]), Int(starts[e])); s = e; continue }
            if values[s] == 0x27 {
                let n1 = at(s + 1), n2 = at(s + 2)
                if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 {
                    emit(Int(starts[s]), Int(starts[s + 2])); s += 2; continue
                }
                if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65) || (n1 == 0x6C && n2 == 0x6C) {
                    emit(Int(starts[s]), Int(starts[s + 3])); s += 3; continue
                }
            }
            switch c {
            case .letter, .other, .number:
                while e < count && classes[e] == c { e += 1 }
            case .space, .whitespace:
                if c == .space && e < count && (classes[e] == .letter || classes[e] == .other) {
                    let d = classes[e]
                    e += 1
                    while e < count && classes[e] == d { e += 1 }
                } else {
                    while e < count && isSpace(classes[e]) { e += 1 }
                    // \s+(?!\S): a digit ends the stretch like the end of the text does.
                    if e < count && classes[e] != .number && e - s > 1 { e -= 1 }
                }
            }
            emit(Int(starts[s]), Int(starts[e]))
            s = e
        }
    }

    /// The Llama 3 / Qwen2 pattern, alternative by alternative (leftmost first).
    private static func llamaStyle(_ classes: [CharClass], _ values: [UInt32], _ starts: [Int32], maxDigits: Int,
                                   _ emit: (Int, Int) -> Void) {
        let count = classes.count
        @inline(__always) func lower(_ k: Int) -> UInt32 {
            guard k < count else { return 0 }
            let v = values[k]
            if v >= 0x41 && v <= 0x5A { return v + 0x20 }
            if v == 0x17F { return 0x73 }      // ſ folds to s under (?i)
            return v
        }
        @inline(__always) func isNL(_ v: UInt32) -> Bool { v == 0x0A || v == 0x0D }
        var s = 0
        while s < count {
            let c = classes[s], v = values[s]
            var e = s + 1
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if v == 0x27 {
                let n1 = lower(s + 1), n2 = lower(s + 2)
                if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 {
                    emit(Int(starts[s]), Int(starts[s + 2])); s += 2; continue
                }
                if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65) || (n1 == 0x6C && n2 == 0x6C) {
                    emit(Int(starts[s]), Int(starts[s + 3])); s += 3; continue
                }
            }
            if c == .letter {
                // \p{L}+
                while e < count && classes[e] == .letter { e += 1 }
            } else if c != .number && !isNL(v) && e < count && classes[e] == .letter {
                // [^\r\n\p{L}\p{N}]\p{L}+
                e += 1
                while e < count && classes[e] == .letter { e += 1 }
            } else if c == .number {
                // \p{N}{1,maxDigits}
                while e < count && e - s < maxDigits && classes[e] == .number { e += 1 }
            } else if c == .other || (v == 0x20 && e < count && classes[e] == .other) {
                // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
                if c != .other { e += 1 }
                while e < count && classes[e] == .other { e += 1 }
                while e < count && isNL(values[e]) { e += 1 }
            } else {
                // Whitespace: \s*[\r\n]+ (up to the last newline of the run), else
                // \s+(?!\S), else \s+.
                var r = e
                while r < count && isSpace(classes[r]) { r += 1 }
                var q = r - 1
                while q >= s && !isNL(values[q]) { q -= 1 }
                if q >= s { e = q + 1 }
                else if r == count || r - s == 1 { e = r }
                else { e = r - 1 }
            }
            emit(Int(starts[s]), Int(starts[e]))
            s = e
        }
    }
}
