import CKernels
import Foundation

/// One metadata value of a GGUF file.
package indirect enum GGUFValue: Equatable, Sendable {
    case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), u64(UInt64), i64(Int64)
    case f32(Float), f64(Double), bool(Bool), string(String)
    /// Element type code and elements (all of that type).
    case array(UInt32, [GGUFValue])

    /// Any integer type as Int (nil for non-integers and values outside Int).
    package var int: Int? {
        switch self {
        case .u8(let v): return Int(v)
        case .i8(let v): return Int(v)
        case .u16(let v): return Int(v)
        case .i16(let v): return Int(v)
        case .u32(let v): return Int(v)
        case .i32(let v): return Int(v)
        case .u64(let v): return v <= UInt64(Int.max) ? Int(v) : nil
        case .i64(let v): return Int(v)
        default: return nil
        }
    }
    /// Either float type (or an integer) as Double.
    package var double: Double? {
        switch self {
        case .f32(let v): return Double(v)
        case .f64(let v): return v
        default: return int.map(Double.init)
        }
    }
    package var string: String? { if case .string(let s) = self { return s }; return nil }
    package var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    package var array: [GGUFValue]? { if case .array(_, let a) = self { return a }; return nil }

    /// GGUF value type codes (gguf_type).
    package static let typeNames: [UInt32: String] = [
        0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32",
        7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64",
    ]
}

/// A ggml tensor type id as stored in GGUF tensor infos, with the facts QuantLM needs.
package struct GGMLType: Equatable, Hashable, Sendable, CustomStringConvertible {
    package let rawValue: Int32
    package let blockSize: Int
    package let blockBytes: Int

    /// nil when QuantLM cannot read (dequantize) the type.
    package init?(rawValue: Int32) {
        var bs: Int64 = 0, bb: Int64 = 0
        guard qlm_ggml_type_info(rawValue, &bs, &bb) != 0 else { return nil }
        self.rawValue = rawValue; blockSize = Int(bs); blockBytes = Int(bb)
    }

    package var name: String { Self.name(rawValue) }
    package var description: String { name }
    package static func name(_ raw: Int32) -> String { String(cString: qlm_ggml_type_name(raw)) }

    package static let f32 = GGMLType(rawValue: 0)!
    package static let f16 = GGMLType(rawValue: 1)!
    package static let q4_0 = GGMLType(rawValue: 2)!
    package static let q4_1 = GGMLType(rawValue: 3)!
    package static let q8_0 = GGMLType(rawValue: 8)!
    package static let bf16 = GGMLType(rawValue: 30)!

    /// The QuantLM type whose bytes are identical to this type's (rows a whole number of blocks).
    package var identicalQuantType: QuantType? {
        switch rawValue {
        case 0: return .f32
        case 1: return .f16
        case 2: return .q4_0
        case 3: return .q4_1
        case 8: return .q8_0
        case 12: return .q4_k
        case 13: return .q5_k
        case 14: return .q6_k
        case 6: return .q5_0
        case 7: return .q5_1
        case 20: return .iq4_nl
        case 23: return .iq4_xs
        case 11: return .q3_k
        case 10: return .q2_k
        default: return nil
        }
    }

    /// Bytes of one row of n elements (n a multiple of blockSize).
    package func rowBytes(_ n: Int) -> Int { n / blockSize * blockBytes }
}

/// One tensor of a GGUF file. `shape` is QuantLM's order (outermost first: the ggml dims
/// reversed, so the last entry is the row length, ggml's ne[0]).
package struct GGUFTensorInfo: Sendable {
    package let name: String
    package let shape: [Int]
    package let type: GGMLType
    /// Offset of the data from the start of the data section.
    package let offset: Int
    package let byteCount: Int
    package var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped GGUF file (v2 or v3): header, metadata key/values, tensor infos, and the
/// data section. Every count, length, dim and offset is checked against the file before it is
/// used (counts are bounded by the bytes left before anything is allocated), so malformed
/// input throws a one-line QuantError naming the file and the field or tensor.
package final class GGUFFile: @unchecked Sendable {
    package let map: MappedFile
    package let path: String
    package let version: UInt32
    /// Key/values in file order.
    package let keys: [String]
    package let metadata: [String: GGUFValue]
    package let tensors: [GGUFTensorInfo]
    package let alignment: Int
    /// Absolute offset of the data section.
    package let dataOffset: Int

    package static let magic: [UInt8] = Array("GGUF".utf8)
    /// Nested arrays deeper than this are refused (the format has no use for them).
    static let maxArrayDepth = 4

    package convenience init(_ url: URL) throws {
        try self.init(map: MappedFile(url))
    }

    package init(map: MappedFile) throws {
        self.map = map
        let file = map.url.path
        path = file
        var r = ByteReader(map.bytes, file: file)
        guard map.count >= 4 else { throw QuantError(file, "not a GGUF file: \(map.count) bytes is shorter than the magic") }
        let m = try r.bytes(4, "magic")
        guard Array(m) == Self.magic else {
            throw QuantError(file, "not a GGUF file: bad magic \(Array(m).map { String(format: "%02x", $0) }.joined())")
        }
        version = try r.u32("version")
        guard version == 2 || version == 3 else {
            let swapped = version.byteSwapped
            throw QuantError(file, "unsupported GGUF version \(version)\(swapped == 2 || swapped == 3 ? " (a big-endian file?)" : "") (2 and 3 are supported)")
        }
        let tensorCount = try r.u64("tensor_count")
        let kvCount = try r.u64("metadata_kv_count")
        // Each key/value needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info 8 + 4 + 4 + 8.
        let remaining = UInt64(map.count - r.offset)
        guard kvCount <= remaining / 13 else { throw QuantError(file, "metadata_kv_count \(kvCount) is absurd for a \(map.count)-byte file") }
        guard tensorCount <= remaining / 24 else { throw QuantError(file, "tensor_count \(tensorCount) is absurd for a \(map.count)-byte file") }

        var keys: [String] = []
        var md: [String: GGUFValue] = [:]
        keys.reserveCapacity(Int(kvCount))
        for i in 0 ..< Int(kvCount) {
            let key = try Self.string(&r, "key of metadata entry \(i)")
            let type = try r.u32("type of metadata \(key)")
            let v = try Self.value(&r, type: type, key: key, depth: 0)
            guard md[key] == nil else { throw QuantError(file, "metadata key \(key) appears twice") }
            md[key] = v
            keys.append(key)
        }
        var align = 32
        if let a = md["general.alignment"] {
            guard case .u32(let v) = a else { throw QuantError(file, "general.alignment must be a uint32") }
            guard v > 0, v & (v - 1) == 0, v <= 1 << 20 else { throw QuantError(file, "general.alignment \(v) is not a power of two up to 1 MiB") }
            align = Int(v)
        }
        alignment = align

        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(Int(tensorCount))
        var names = Set<String>()
        for i in 0 ..< Int(tensorCount) {
            let name = try Self.string(&r, "name of tensor info \(i)"), shown = QuantError.shown(name)
            let nDims = try r.u32("n_dims of tensor \(shown)")
            guard (1 ... 4).contains(nDims) else { throw QuantError(file, "tensor \(shown): n_dims \(nDims) (1 to 4 supported)") }
            var ne: [Int] = []
            var count = 1
            for d in 0 ..< Int(nDims) {
                let v = try r.u64("dim \(d) of tensor \(shown)")
                guard v >= 1, v <= 1 << 40 else { throw QuantError(file, "tensor \(shown): absurd dim \(d) = \(v)") }
                let (p, o) = count.multipliedReportingOverflow(by: Int(v))
                guard !o, p <= 1 << 40 else { throw QuantError(file, "tensor \(shown): element count overflows (dims \(ne + [Int(v)]))") }
                count = p
                ne.append(Int(v))
            }
            let rawType = try r.u32("type of tensor \(shown)")
            guard rawType <= UInt32(Int32.max), let type = GGMLType(rawValue: Int32(rawType)) else {
                throw QuantError(file, "tensor \(shown): unsupported ggml type \(GGMLType.name(Int32(truncatingIfNeeded: rawType))) (\(rawType))")
            }
            guard ne[0] % type.blockSize == 0 else {
                throw QuantError(file, "tensor \(shown): row length \(ne[0]) is not a multiple of \(type.name)'s block of \(type.blockSize)")
            }
            let off = try r.u64("offset of tensor \(shown)")
            guard off <= 1 << 48 else { throw QuantError(file, "tensor \(shown): absurd data offset \(off)") }
            guard off % UInt64(align) == 0 else { throw QuantError(file, "tensor \(shown): data offset \(off) is not aligned to \(align)") }
            guard names.insert(name).inserted else { throw QuantError(file, "tensor \(shown) appears twice") }
            let bytes = count / type.blockSize * type.blockBytes
            infos.append(GGUFTensorInfo(name: name, shape: ne.reversed(), type: type, offset: Int(off), byteCount: bytes))
        }
        let infoEnd = r.offset
        let dataStart = (infoEnd + align - 1) / align * align
        dataOffset = dataStart
        let dataLen = max(0, map.count - dataStart)
        for t in infos {
            guard t.offset <= dataLen, t.byteCount <= dataLen - t.offset else {
                throw QuantError(file, "tensor \(QuantError.shown(t.name)): data [\(t.offset), +\(t.byteCount)) lies past the end of the file (data section is \(dataLen) bytes)")
            }
        }
        self.keys = keys
        metadata = md
        tensors = infos
    }

    /// The bytes of a tensor (a view into the map).
    package func bytes(_ t: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: map.bytes[dataOffset + t.offset ..< dataOffset + t.offset + t.byteCount])
    }

    static func string(_ r: inout ByteReader, _ what: String) throws -> String {
        let n = try r.u64("length of \(what)")
        guard n <= UInt64(r.base.count - r.offset) else {
            throw QuantError(r.file, "truncated: \(what) claims \(n) bytes at offset \(r.offset), file has \(r.base.count)")
        }
        let b = try r.bytes(Int(n), what)
        return String(decoding: b, as: UTF8.self)
    }

    static func value(_ r: inout ByteReader, type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        let what = "metadata \(key)"
        switch type {
        case 0: return .u8(try r.u8(what))
        case 1: return .i8(Int8(bitPattern: try r.u8(what)))
        case 2: return .u16(try r.u16(what))
        case 3: return .i16(Int16(bitPattern: try r.u16(what)))
        case 4: return .u32(try r.u32(what))
        case 5: return .i32(try r.i32(what))
        case 6: return .f32(try r.f32(what))
        case 7:
            let b = try r.u8(what)
            guard b <= 1 else { throw QuantError(r.file, "\(what): bool byte \(b) is neither 0 nor 1") }
            return .bool(b == 1)
        case 8: return .string(try string(&r, what))
        case 9:
            guard depth < maxArrayDepth else { throw QuantError(r.file, "\(what): arrays nested deeper than \(maxArrayDepth)") }
            let et = try r.u32("element type of \(what)")
            let n = try r.u64("element count of \(what)")
            let minSize: UInt64
            switch et {
            case 0, 1, 7: minSize = 1
            case 2, 3: minSize = 2
            case 4, 5, 6: minSize = 4
            case 8, 10, 11, 12: minSize = 8
            case 9: minSize = 12
            default: throw QuantError(r.file, "\(what): unknown array element type \(et)")
            }
            guard n <= UInt64(r.base.count - r.offset) / minSize else {
                throw QuantError(r.file, "\(what): array of \(n) \(GGUFValue.typeNames[et]!) elements is longer than the \(r.base.count - r.offset) bytes left")
            }
            var a: [GGUFValue] = []
            a.reserveCapacity(Int(n))
            for _ in 0 ..< Int(n) { a.append(try value(&r, type: et, key: key, depth: depth + 1)) }
            return .array(et, a)
        case 10: return .u64(try r.u64(what))
        case 11: return .i64(Int64(bitPattern: try r.u64(what)))
        case 12: return .f64(Double(bitPattern: try r.u64(what)))
        default: throw QuantError(r.file, "\(what): unknown value type \(type)")
        }
    }
}
