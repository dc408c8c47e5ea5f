import CKernels
import Foundation

/// A tensor storage type. The table of facts (block size, bytes per block, which activation
/// type it pairs with) lives in one place, the C traits table (`qlm_traits`), so the kernels
/// and the file format cannot disagree.
public enum QuantType: Int32, CaseIterable, Codable, Sendable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q8_0 = 2
    case q4_0 = 3
    case q4_1 = 4
    case iq4_k16 = 5
    case iq4_k32 = 6
    /// q4_0 blocks stored row-interleaved in groups of 8 rows (same numbers and bytes as q4_0).
    case q4_0x8 = 7
    case u8 = 31

    /// The types a weight matrix may be stored as.
    public static let weightTypes: [QuantType] = [.f32, .f16, .q8_0, .q4_0, .q4_1, .iq4_k16, .iq4_k32, .q4_0x8]

    private var traits: qlm_type_traits {
        guard let t = qlm_traits(rawValue) else { fatalError("C traits table lacks type \(rawValue)") }
        return t.pointee
    }

    public var name: String { self == .u8 ? "u8" : String(cString: traits.name) }
    public var description: String { name }
    public var blockSize: Int { self == .u8 ? 1 : Int(traits.block_size) }
    public var blockBytes: Int { self == .u8 ? 1 : Int(traits.block_bytes) }
    public var isQuantized: Bool { self == .u8 ? false : traits.is_quantized != 0 }
    /// Rows stored interleaved per group (8 for q4_0x8, else 1). Any row range a reader cuts out
    /// of such a tensor must start at a multiple of it (and end at one, or at the last row).
    public var rowGroup: Int { self == .u8 ? 1 : Int(traits.row_group) }
    /// Every stored bit per weight (codes, scales, mins), for rows that are whole blocks.
    public var bitsPerWeight: Double { Double(blockBytes * 8) / Double(blockSize) }

    public init?(name: String) {
        guard let t = QuantType.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = t
    }

    /// Bytes of one row of `n` elements (block formats pad the last block with zeros).
    public func rowSize(_ n: Int) -> Int {
        self == .u8 ? n : Int(qlm_row_size(rawValue, Int64(n)))
    }

    public static var namesForHelp: String {
        weightTypes.map { t in
            let bpw = t.bitsPerWeight
            if t == .iq4_k16 || t == .iq4_k32 {
                // rows are super-blocks of up to 256: shorter rows pay the 1-byte super-scale more often
                return "\(t.name) (\(String(format: "%.2f", bpw)) bits/weight in 256-weight rows, \(String(format: "%.2f", Double(t.rowSize(64) * 8) / 64)) in 64-weight rows)"
            }
            if t == .q4_0x8 { return "q4_0x8 (q4_0 stored in 8-row groups for the 8-row decode kernel, 4.50 bits/weight)" }
            return "\(t.name) (\(bpw == bpw.rounded() ? String(Int(bpw)) : String(format: "%.2f", bpw)) bits/weight)"
        }.joined(separator: ", ")
    }
}

/// A named per-tensor type choice (`convert --preset NAME`).
public struct QuantPreset: Sendable {
    public var name: String
    public var defaultType: QuantType
    /// Applied after the user's --keep patterns (theirs win: first match wins).
    public var overrides: [(glob: String, type: QuantType)]
    public var summary: String

    public static let all: [QuantPreset] = [
        QuantPreset(name: "q4_best", defaultType: .iq4_k16, overrides: [],
                    summary: "every matrix iq4_k16 (4.46 bits/weight on stories260K, all stored bits); add --calibrate for GPTQ"),
        QuantPreset(name: "q4_mix", defaultType: .iq4_k16,
                    overrides: [("*norm*", .f16), ("layers.[01].attention.wk.weight", .q8_0)],
                    summary: "iq4_k16, norms f16, wk of layers 0-1 q8_0 (4.48 bits/weight on stories260K, all stored bits; llama names, patterns matching no tensor are ignored); add --calibrate for GPTQ"),
    ]

    public init(name: String, defaultType: QuantType, overrides: [(glob: String, type: QuantType)], summary: String) {
        self.name = name; self.defaultType = defaultType; self.overrides = overrides; self.summary = summary
    }

    public init?(name: String) {
        guard let p = QuantPreset.all.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = p
    }

    public static var namesForHelp: String { all.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ") }
}
