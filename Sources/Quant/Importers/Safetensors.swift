import Foundation

/// Element types a float checkpoint may hold.
package enum SourceDType: String, Sendable {
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"

    package var size: Int { self == .f32 ? 4 : 2 }
}

/// One tensor of a safetensors file, as a view into the file's memory map.
package struct SafetensorsEntry {
    package let name: String
    package let dtype: SourceDType
    package let shape: [Int]
    package let bytes: UnsafeRawBufferPointer
    package let file: String
}

/// A memory-mapped safetensors file: u64 little-endian header length N, N bytes of JSON
/// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then data.
/// Every entry is checked against the file before any data is touched.
package final class SafetensorsFile: @unchecked Sendable {
    package let map: MappedFile
    package let entries: [String: SafetensorsEntry]
    package let order: [String]

    package init(_ url: URL) throws {
        let file = url.path
        map = try MappedFile(url)
        var r = ByteReader(map.bytes, file: file)
        guard map.count >= 8 else { throw QuantError(file, "not a safetensors file: \(map.count) bytes is shorter than its 8-byte header length") }
        let headerLen = try checkedInt(try r.u64("header length"), file, "safetensors header length")
        guard headerLen >= 2, headerLen <= map.count - 8, headerLen <= 100 << 20 else {
            throw QuantError(file, "truncated or not safetensors: header length \(headerLen) but file has \(map.count) bytes")
        }
        let headerBytes = try r.bytes(headerLen, "header JSON")
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerBytes))
        } catch {
            throw QuantError(file, "safetensors header is not valid JSON")
        }
        guard let dict = json as? [String: Any] else { throw QuantError(file, "safetensors header is not a JSON object") }
        let dataStart = 8 + headerLen
        let dataLen = map.count - dataStart
        var entries: [String: SafetensorsEntry] = [:]
        var spans: [(Int, Int, String)] = []
        for (name, value) in dict where name != "__metadata__" {
            guard let e = value as? [String: Any], let dtypeName = e["dtype"] as? String,
                  let shapeAny = e["shape"] as? [Any], let offs = e["data_offsets"] as? [Any], offs.count == 2 else {
                throw QuantError(file, "tensor \(QuantError.shown(name)): malformed header entry")
            }
            guard let dtype = SourceDType(rawValue: dtypeName) else {
                throw QuantError(file, "tensor \(QuantError.shown(name)): unsupported dtype \(dtypeName) (F32, F16 and BF16 are supported)")
            }
            var shape: [Int] = []
            var count = 1
            for d in shapeAny {
                guard let n = (d as? NSNumber)?.int64Value, n >= 0, n <= 1 << 32 else {
                    throw QuantError(file, "tensor \(QuantError.shown(name)): absurd shape \(shapeAny)")
                }
                let (m, o) = count.multipliedReportingOverflow(by: Int(n))
                guard !o, m <= 1 << 40 else { throw QuantError(file, "tensor \(QuantError.shown(name)): absurd shape \(shapeAny)") }
                count = m
                shape.append(Int(n))
            }
            guard let b = (offs[0] as? NSNumber)?.int64Value, let en = (offs[1] as? NSNumber)?.int64Value,
                  b >= 0, en >= b, en <= Int64(dataLen) else {
                throw QuantError(file, "tensor \(QuantError.shown(name)): data_offsets \(offs) lie outside the file (data section is \(dataLen) bytes)")
            }
            guard Int(en - b) == count * dtype.size else {
                throw QuantError(file, "tensor \(QuantError.shown(name)): \(en - b) bytes do not hold shape \(shape) of \(dtype.rawValue)")
            }
            let start = dataStart + Int(b)
            let view = UnsafeRawBufferPointer(rebasing: map.bytes[start ..< dataStart + Int(en)])
            entries[name] = SafetensorsEntry(name: name, dtype: dtype, shape: shape, bytes: view, file: file)
            spans.append((Int(b), Int(en), name))
        }
        spans.sort { $0.0 < $1.0 }
        for (a, c) in zip(spans, spans.dropFirst()) where a.1 > c.0 {
            throw QuantError(file, "tensors \(a.2) and \(c.2) overlap")
        }
        self.entries = entries
        self.order = spans.map(\.2)
    }
}
