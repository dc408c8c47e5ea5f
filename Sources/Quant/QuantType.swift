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
    case u8 = 31

    /// The types a weight matrix may be stored as.
    public static let weightTypes: [QuantType] = [.f32, .f16, .q8_0, .q4_0, .q4_1, .iq4_k16, .iq4_k32]

    private var traits: qlm_type_traits {
        guard let t = qlm_traits(rawValue) else { fatalError("C traits table lacks type \(rawValue)") }
        return t.pointee
    }

    public var name: String { self == .u8 ? "u8" : String(cString: traits.name) }
    public var description: String { name }
    public var blockSize: Int { self == .u8 ? 1 : Int(traits.block_size) }
    public var blockBytes: Int { self == .u8 ? 1 : Int(traits.block_bytes) }
    public var isQuantized: Bool { self == .u8 ? false : traits.is_quantized != 0 }
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
            return "\(t.name) (\(bpw == bpw.rounded() ? String(Int(bpw)) : String(format: "%.2f", bpw)) bits/weight)"
        }.joined(separator: ", ")
    }
}
