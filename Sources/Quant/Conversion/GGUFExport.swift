import CKernels
import Foundation

/// Writes a .qlm file's tensors as a GGUF v3 file (`convert --format gguf`), so llama.cpp runs
/// QuantLM's quantization. Every tensor must be stored in a type whose bytes ggml has
/// (GGMLType.identicalQuantType: f32, f16, q8_0, q4_0, q4_1, and what later types add there);
/// row-grouped tensors (q4_0x8, q8_0x8, q5_0x8, q5_1x8) are written as their plain rows. The metadata (the
/// architecture's keys, the tokenizer) is copied from the GGUF the model came from, key for key in
/// its order, except general.file_type (dropped: the mix is per tensor) and
/// general.quantized_by (set to QuantLM); tensors get GGUF's names (`blk.N.attn_q.weight`).
package enum GGUFExport {
    /// The ggml type id whose blocks are `type`'s bytes (row-grouped types: their plain type's), or nil.
    package static func ggmlType(for type: QuantType) -> Int32? {
        let plain = type.plainType
        return (0 ..< 64).first { GGMLType(rawValue: Int32($0))?.identicalQuantType == plain }.map(Int32.init)
    }

    /// - Parameters:
    ///   - ggufNames: QuantLM tensor name -> GGUF tensor name.
    package static func write(_ qlm: QLMFile, like source: GGUFFile, ggufNames: [String: String], to url: URL) throws {
        let tensors = qlm.tensors.filter { $0.type != .u8 }
        var types: [Int32] = []
        for t in tensors {
            guard let g = ggmlType(for: t.type) else {
                let ok = QuantType.allCases.filter { ggmlType(for: $0) != nil && QuantType.weightTypes.contains($0) }.map(\.name)
                throw QuantError(qlm.path, "tensor \(t.name) is \(t.type.name), which ggml lacks; GGUF export needs ggml's types (\(ok.joined(separator: ", ")))")
            }
            guard let gt = GGMLType(rawValue: g), t.rowLength % gt.blockSize == 0 else {
                throw QuantError(qlm.path, "tensor \(t.name): rows of \(t.rowLength) are not whole \(t.type.name) blocks, which ggml needs")
            }
            guard ggufNames[t.name] != nil else { throw QuantError(qlm.path, "tensor \(t.name) has no GGUF name") }
            types.append(g)
        }
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func str(_ s: String) { let b = Array(s.utf8); u64(UInt64(b.count)); out.append(contentsOf: b) }
        func value(_ v: GGUFValue) {
            switch v {
            case .u8(let x): out.append(x)
            case .i8(let x): out.append(UInt8(bitPattern: x))
            case .u16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .i16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .u32(let x): u32(x)
            case .i32(let x): u32(UInt32(bitPattern: x))
            case .u64(let x): u64(x)
            case .i64(let x): u64(UInt64(bitPattern: x))
            case .f32(let x): u32(x.bitPattern)
            case .f64(let x): u64(x.bitPattern)
            case .bool(let b): out.append(b ? 1 : 0)
            case .string(let s): str(s)
            case .array(let et, let items):
                u32(et); u64(UInt64(items.count))
                for i in items { value(i) }
            }
        }
        func code(_ v: GGUFValue) -> UInt32 {
            switch v {
            case .u8: return 0
            case .i8: return 1
            case .u16: return 2
            case .i16: return 3
            case .u32: return 4
            case .i32: return 5
            case .f32: return 6
            case .bool: return 7
            case .string: return 8
            case .array: return 9
            case .u64: return 10
            case .i64: return 11
            case .f64: return 12
            }
        }
        var kv: [(String, GGUFValue)] = source.keys.compactMap { k in
            k == "general.file_type" || k == "general.quantized_by" ? nil : source.metadata[k].map { (k, $0) }
        }
        kv.append(("general.quantized_by", .string("QuantLM")))
        let align = source.alignment
        out.append(contentsOf: GGUFFile.magic)
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(kv.count))
        for (k, v) in kv { str(k); u32(code(v)); value(v) }
        var offset = 0
        var offsets: [Int] = []
        for (t, g) in zip(tensors, types) {
            str(ggufNames[t.name]!)
            u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { u64(UInt64(d)) }
            u32(UInt32(g))
            u64(UInt64(offset))
            offsets.append(offset)
            offset += t.rows * t.type.rowSize(t.rowLength)
            offset = (offset + align - 1) / align * align
        }
        while out.count % align != 0 { out.append(0) }
        let dataStart = out.count
        out.reserveCapacity(dataStart + offset)
        for (i, t) in tensors.enumerated() {
            let data = try qlm.load(t.name)
            precondition(out.count == dataStart + offsets[i])
            let rs = t.type.rowSize(t.rowLength)
            if t.type.rowGroup > 1 {
                var row = [UInt8](repeating: 0, count: rs)
                for r in 0 ..< t.rows {
                    row.withUnsafeMutableBytes { qlm_plain_row(t.type.rawValue, data.bytes.baseAddress, Int64(t.rows), Int64(t.rowLength), Int64(r), $0.baseAddress) }
                    out.append(contentsOf: row)
                }
            } else {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: data.bytes[0 ..< t.rows * rs]))
            }
            while (out.count - dataStart) % align != 0 { out.append(0) }
        }
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        do {
            try out.write(to: tmp)
            _ = try? FileManager.default.removeItem(at: url)
            try FileManager.default.moveItem(at: tmp, to: url)
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw QuantError(url.path, "cannot write: \(error.localizedDescription)")
        }
    }
}
