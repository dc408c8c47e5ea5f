import CKernels
import Foundation

/// A tensor storage type. Every fact and behaviour of a type lives in one place, its row of the
/// C traits table (`qlm_traits`, qlm_type_traits in CKernels/include/qlm_kernels.h): every
/// property here is read from that row, so the kernels, the file format, the converter and the
/// zstd filters cannot disagree. The cases only name the rows (their raw values are the type
/// numbers stored in .qlm files).
package enum QuantType: Int32, CaseIterable, Codable, Sendable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q8_0 = 2
    case q4_0 = 3
    case q4_1 = 4
    case iq4_k16 = 5
    case iq4_k32 = 6
    /// q4_0 blocks stored row-interleaved in groups of 8 rows (same numbers and bytes as q4_0).
    case q4_0x8 = 7
    /// q8_0 blocks stored the same way (same numbers and bytes as q8_0).
    case q8_0x8 = 8
    /// ggml's K-quants, byte for byte (GGUF blocks pass through); rows must be whole 256-weight blocks.
    case q4_k = 9
    case q5_k = 10
    case q6_k = 11
    /// ggml's Q5_0 / Q5_1 / IQ4_NL blocks, byte for byte (GGUF tensors of these types pass through).
    case q5_0 = 12, q5_1 = 13, iq4_nl = 14
    /// ggml's IQ4_XS / Q3_K / Q2_K super-blocks, byte for byte.
    case iq4_xs = 15, q3_k = 16, q2_k = 17
    /// q5_0 blocks stored row-interleaved in groups of 8 rows (same numbers and bytes as q5_0),
    /// written by `convert --type q5_0x8` and by `--type keep` for a GGUF's q5_0 matrices.
    case q5_0x8 = 18
    /// q5_1 blocks stored the same way (same numbers and bytes as q5_1), written by `convert --type
    /// q5_1x8` and by `--type keep` for a GGUF's q5_1 matrices.
    case q5_1x8 = 19
    /// iq4_nl blocks stored the same way (same numbers and bytes as iq4_nl), written by
    /// `convert --type iq4_nlx8` and by `--type keep` for a GGUF's iq4_nl matrices.
    case iq4_nlx8 = 20
    /// q4_k / q6_k / q5_k super-blocks stored the same way (same numbers and bytes as q4_k / q6_k /
    /// q5_k), written by `convert --type q4_kx8` etc. and by `--type keep` for a GGUF's q4_k / q6_k /
    /// q5_k matrices.
    case q4_kx8 = 21, q6_kx8 = 22, q5_kx8 = 23
    /// iq4_xs / q3_k super-blocks stored the same way (same numbers and bytes as iq4_xs / q3_k), written
    /// by `convert --type iq4_xsx8` / `q3_kx8` and by `--type keep` for a GGUF's iq4_xs / q3_k matrices.
    case iq4_xsx8 = 24, q3_kx8 = 25
    case u8 = 31

    /// The types a weight matrix may be stored as: those whose row has product kernels (u8 has
    /// none), in type-number order.
    package static let weightTypes: [QuantType] = allCases.filter { $0.traits.dotn.0 != nil }

    /// The activation format a type's products take (qlm_act_type).
    package enum Activation: UInt32, Sendable {
        case f32 = 0, q8a = 1, q8i = 2, q8k = 3
    }

    private var traits: qlm_type_traits {
        guard let t = qlm_traits(rawValue) else { fatalError("C traits table lacks type \(rawValue)") }
        return t.pointee
    }

    package var name: String { String(cString: traits.name) }
    package var description: String { name }
    package var blockSize: Int { Int(traits.block_size) }
    package var blockBytes: Int { Int(traits.block_bytes) }
    package var isQuantized: Bool { traits.is_quantized != 0 }
    /// Rows stored interleaved per group (8 for q4_0x8 and q8_0x8, else 1). Any row range a reader cuts out
    /// of such a tensor must start at a multiple of it (and end at one, or at the last row).
    package var rowGroup: Int { Int(traits.row_group) }
    /// The type of a row-grouped type's rows (q5_0x8: q5_0; its groups hold that type's bytes
    /// regrouped), else the type itself.
    package var plainType: QuantType {
        guard rowGroup > 1 else { return self }
        guard let p = QuantType(rawValue: traits.plain_type), p.rowGroup == 1, p != .f32 else {
            fatalError("C traits table: grouped type \(name) names no plain type")
        }
        return p
    }
    /// The 8-row layout of this (plain) type's rows, if the table has one (q5_0: q5_0x8).
    package var groupedLayout: QuantType? {
        QuantType.weightTypes.first { $0.rowGroup > 1 && $0.plainType == self && $0 != self }
    }
    /// Every stored bit per weight (codes, scales, mins), for rows that are whole blocks.
    package var bitsPerWeight: Double { Double(blockBytes * 8) / Double(blockSize) }
    package var activation: Activation { Activation(rawValue: traits.act_type.rawValue)! }
    /// Bits per stored weight code (4 for the 4-bit formats).
    package var codeBits: Int { Int(traits.code_bits) }
    /// Byte offsets of the fp16 numbers within one block (f16: the value; q8_0/q4_0: the scale;
    /// q4_1: scale and min). In a row group's block, field `o` of row `r` sits at `o * rowGroup + 2r`.
    package var fp16Offsets: [Int] {
        let t = traits
        return withUnsafeBytes(of: t.fp16_offsets) { Array($0.bindMemory(to: Int32.self).prefix(Int(t.fp16_count))).map(Int.init) }
    }
    /// Whether only rows that are a whole number of blocks may be stored as this type (the K-quants).
    package var wholeBlocks: Bool { traits.whole_blocks != 0 }
    /// Whether rows of `n` weights may be stored as this type.
    package func allows(rowLength n: Int) -> Bool { !wholeBlocks || n % blockSize == 0 }
    /// The type rows this type does not allow are stored as (`allows(rowLength:)`): the row's
    /// choice (llama.cpp's fallback) when the table has it, else q8_0.
    package var rowFallback: QuantType {
        QuantType(rawValue: traits.row_fallback).flatMap { $0.traits.dotn.0 != nil ? $0 : nil } ?? .q8_0
    }
    /// Whether qlm_gptq_quantize supports the type (its row has a GPTQ row quantizer).
    package var supportsGPTQ: Bool { traits.gptq_row != nil }
    /// Whether the type has an importance-weighted quantizer (its row's quantize_row_imp).
    package var supportsImportance: Bool { traits.quantize_row_imp != nil }
    /// The zstd filter record of rows of `n` elements when the type defines its own (iq4_k*), else nil.
    package func zstdRecord(rowLength n: Int) -> (record: Int, head: Int)? {
        guard let f = traits.zstd_record else { return nil }
        var record: Int32 = 0, head: Int32 = 0
        f(Int64(n), &record, &head)
        return (Int(record), Int(head))
    }

    package init?(name: String) {
        guard let t = QuantType.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = t
    }

    /// Bytes of one row of `n` elements (block formats pad the last block with zeros).
    package func rowSize(_ n: Int) -> Int { Int(qlm_row_size(rawValue, Int64(n))) }

    /// `convert --help`'s list: every weight type with its bits per weight (and, for types whose
    /// short rows cost more, e.g. the super-block types, the cost at 64-weight rows) and summary.
    package static var namesForHelp: String {
        func f2(_ v: Double) -> String { String(format: "%.2f", v) }
        return weightTypes.map { t in
            let bpw = t.bitsPerWeight, short = Double(t.rowSize(64) * 8) / 64
            if t.wholeBlocks {
                return "\(t.name) (\(t.traits.summary.map { String(cString: $0) + ", " } ?? "")\(f2(bpw)) bits/weight; rows not a multiple of \(t.blockSize) become \(t.rowFallback.name))"
            }
            if short != bpw {
                return "\(t.name) (\(f2(bpw)) bits/weight in \(t.blockSize)-weight rows, \(f2(short)) in 64-weight rows)"
            }
            let b = bpw == bpw.rounded() ? String(Int(bpw)) : f2(bpw)
            if let s = t.traits.summary { return "\(t.name) (\(String(cString: s)), \(b) bits/weight)" }
            return "\(t.name) (\(b) bits/weight)"
        }.joined(separator: ", ")
    }
}

/// A named per-tensor type choice (`convert --preset NAME`).
package struct QuantPreset: Sendable {
    package var name: String
    package var defaultType: QuantType
    /// Applied after the user's --keep patterns (theirs win: first match wins).
    package var overrides: [(glob: String, type: QuantType)]
    package var summary: String

    package static let all: [QuantPreset] = [
        QuantPreset(name: "q4_best", defaultType: .iq4_k16, overrides: [],
                    summary: "every matrix iq4_k16 (4.46 bits/weight on stories260K, all stored bits); add --calibrate for GPTQ"),
        QuantPreset(name: "q4_mix", defaultType: .iq4_k16,
                    overrides: [("*norm*", .f16), ("layers.[01].attention.wk.weight", .q8_0)],
                    summary: "iq4_k16, norms f16, wk of layers 0-1 q8_0 (4.48 bits/weight on stories260K, all stored bits; llama names, patterns matching no tensor are ignored); add --calibrate for GPTQ"),
    ]

    package init(name: String, defaultType: QuantType, overrides: [(glob: String, type: QuantType)], summary: String) {
        self.name = name; self.defaultType = defaultType; self.overrides = overrides; self.summary = summary
    }

    package init?(name: String) {
        guard let p = QuantPreset.all.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = p
    }

    package static var namesForHelp: String { all.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ") }
}
