import CKernels
import Foundation
import Quant
import TestSupport
import XCTest

/// Writes small GGUF v3 files for tests, remembering where every count, length, dim, type and
/// offset field sits so the fuzzer can make them lie.
struct GGUFBuilder {
    enum V { case u32(UInt32), f32(Float), bool(Bool), str(String), strs([String]), f32s([Float]), i32s([Int32]) }
    var kvs: [(String, V)] = []
    /// (name, ggml dims ne[0] first, ggml type, bytes)
    var tensors: [(String, [Int], Int32, [UInt8])] = []
    var alignment = 32

    /// Byte ranges of fields worth lying about: (offset, width, label).
    var fields: [(Int, Int, String)] = []

    mutating func build() -> [UInt8] {
        var b: [UInt8] = []
        fields = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func str(_ s: String, _ label: String) { fields.append((b.count, 8, label + " length")); u64(UInt64(s.utf8.count)); b += Array(s.utf8) }
        b += Array("GGUF".utf8); u32(3)
        fields.append((b.count, 8, "tensor_count")); u64(UInt64(tensors.count))
        fields.append((b.count, 8, "kv_count")); u64(UInt64(kvs.count))
        for (k, v) in kvs {
            str(k, "key")
            fields.append((b.count, 4, "value type"))
            switch v {
            case .u32(let x): u32(4); u32(x)
            case .f32(let x): u32(6); u32(x.bitPattern)
            case .bool(let x): u32(7); b.append(x ? 1 : 0)
            case .str(let s): u32(8); str(s, "string")
            case .strs(let a): u32(9); fields.append((b.count, 4, "array type")); u32(8); fields.append((b.count, 8, "array count")); u64(UInt64(a.count)); for s in a { str(s, "element") }
            case .f32s(let a): u32(9); fields.append((b.count, 4, "array type")); u32(6); fields.append((b.count, 8, "array count")); u64(UInt64(a.count)); for x in a { u32(x.bitPattern) }
            case .i32s(let a): u32(9); fields.append((b.count, 4, "array type")); u32(5); fields.append((b.count, 8, "array count")); u64(UInt64(a.count)); for x in a { u32(UInt32(bitPattern: x)) }
            }
        }
        var off = 0
        var offs: [Int] = []
        for (name, ne, type, data) in tensors {
            str(name, "tensor name")
            fields.append((b.count, 4, "n_dims")); u32(UInt32(ne.count))
            for d in ne { fields.append((b.count, 8, "dim")); u64(UInt64(d)) }
            fields.append((b.count, 4, "ggml type")); u32(UInt32(type))
            fields.append((b.count, 8, "tensor offset")); u64(UInt64(off))
            offs.append(off)
            off = (off + data.count + alignment - 1) / alignment * alignment
        }
        while b.count % alignment != 0 { b.append(0) }
        let start = b.count
        for (i, t) in tensors.enumerated() {
            while b.count < start + offs[i] { b.append(0) }
            b += t.3
        }
        return b
    }

    /// The built file and where a fuzzer's mutations go: the field table, the start of the tensor
    /// infos and of the (32-aligned) data section.
    mutating func buildForFuzzing() -> (bytes: [UInt8], fields: [(Int, Int, String)], infoStart: Int, dataStart: Int) {
        let b = build()
        return (b, fields, fields.first { $0.2 == "tensor name length" }!.0, (fields.last!.0 + 8 + 31) / 32 * 32)
    }

    /// Random block bytes of `type` for `elements` elements, every fp16 field finite.
    static func randomBlocks(_ type: Int32, elements: Int, rng: inout SplitMix64) -> [UInt8] {
        let g = GGMLType(rawValue: type)!
        let nb = elements / g.blockSize
        var out: [UInt8] = (0 ..< nb * g.blockBytes).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
        func fixHalf(_ o: Int) { out[o + 1] &= 0xBB } // exponent bits 0x7C00 never all set (clears 0x4400)
        let halves: [Int]
        switch type {
        case 0: // f32: keep exponents below 0xFF
            for i in stride(from: 0, to: out.count, by: 4) { out[i + 3] &= 0xBF }
            return out
        case 1: for i in stride(from: 0, to: out.count, by: 2) { fixHalf(i) }; return out
        case 30: for i in stride(from: 0, to: out.count, by: 2) { out[i + 1] &= 0xBF }; return out
        case 2, 8, 6, 20, 23: halves = [0]
        case 3, 7, 12, 13: halves = [0, 2]
        case 10: halves = [80, 82]
        case 11: halves = [108]
        case 14: halves = [208]
        default: halves = []
        }
        for b in 0 ..< nb { for h in halves { fixHalf(b * g.blockBytes + h) } }
        return out
    }

    /// A small valid llama GGUF: 1 layer, d 32, 2 heads / 1 kv head, ffn 64, vocab 8, tensors of
    /// several ggml types (ne[0] first, as ggml orders dims).
    static func tinyLlama(seed: UInt64 = 1) -> GGUFBuilder {
        var rng = SplitMix64(seed: seed)
        var g = GGUFBuilder()
        let toks = ["<unk>", "<s>", "</s>", "a", "b", "c", "d", "e"]
        g.kvs = [("general.architecture", .str("llama")), ("general.alignment", .u32(32)),
                 ("llama.block_count", .u32(1)), ("llama.embedding_length", .u32(32)), ("llama.feed_forward_length", .u32(64)),
                 ("llama.attention.head_count", .u32(2)), ("llama.attention.head_count_kv", .u32(1)),
                 ("llama.context_length", .u32(64)), ("llama.rope.freq_base", .f32(10000)),
                 ("llama.attention.layer_norm_rms_epsilon", .f32(1e-5)),
                 ("tokenizer.ggml.model", .str("llama")), ("tokenizer.ggml.tokens", .strs(toks)),
                 ("tokenizer.ggml.scores", .f32s((0 ..< 8).map { -Float($0) })), ("tokenizer.ggml.token_type", .i32s([2, 3, 3, 1, 1, 1, 1, 1])),
                 ("tokenizer.ggml.bos_token_id", .u32(1)), ("tokenizer.ggml.eos_token_id", .u32(2)),
                 ("tokenizer.ggml.add_bos_token", .bool(true)), ("tokenizer.chat_template", .str("{{ x }}"))]
        func t(_ name: String, _ ne: [Int], _ type: Int32) {
            g.tensors.append((name, ne, type, randomBlocks(type, elements: ne.reduce(1, *), rng: &rng)))
        }
        t("token_embd.weight", [32, 8], 8)       // q8_0
        t("blk.0.attn_norm.weight", [32], 0)
        t("blk.0.attn_q.weight", [32, 32], 2)    // q4_0
        t("blk.0.attn_k.weight", [32, 16], 3)    // q4_1
        t("blk.0.attn_v.weight", [32, 16], 1)    // f16
        t("blk.0.attn_output.weight", [32, 32], 6) // q5_0
        t("blk.0.ffn_norm.weight", [32], 0)
        t("blk.0.ffn_gate.weight", [32, 64], 7)  // q5_1
        t("blk.0.ffn_down.weight", [64, 32], 20) // iq4_nl
        t("blk.0.ffn_up.weight", [32, 64], 30)   // bf16
        t("output_norm.weight", [32], 0)
        return g
    }
}

/// --type keep's pass-through: QuantLM's own row of the tensor's native type reads the very
/// bytes to the floats `y` the ggml dequantizer gave (asserted bit for bit); that type, or nil
/// when the tensor does not pass through.
func assertPassthroughDecodesSame(_ t: SourceTensor, _ y: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) -> QuantType? {
    guard let q = t.nativeType, q.isQuantized, let same = t.passthrough(to: q) else { return nil }
    var z = [Float](repeating: .nan, count: t.elementCount)
    let rl = t.rowLength, rs = q.rowSize(rl)
    z.withUnsafeMutableBufferPointer { zp in
        for r in 0 ..< t.rows { qlm_dequantize_row(q.rawValue, same.baseAddress! + r * rs, zp.baseAddress! + r * rl, Int64(rl)) }
    }
    XCTAssertEqual(z.map(\.bitPattern), y.map(\.bitPattern), "\(what): \(t.name) as \(q)", file: file, line: line)
    return q
}

/// Runs a Tests/reference script with python3; stdout, or throws with stderr.
func referencePython(_ script: String, _ args: [String]) throws -> String {
    let path = SharedData.packageRoot.appendingPathComponent("Tests/reference/\(script)").path
    let r = try Executables.run(url: URL(fileURLWithPath: "/usr/bin/env"), ["python3", path] + args)
    guard r.status == 0 else {
        throw SharedData.Missing(description: "python3 \(script) failed (\(r.status)); it needs numpy and the gguf package (pip install gguf): \(r.stderr)")
    }
    return r.stdout
}
