import CKernels
import CZstd
import Foundation

/// A .qlm file opened by memory-mapping it. Opening validates the header, metadata and
/// tensor table (every offset and length against the file's real size), so later reads
/// never pass a tensor's bounds, however the table lies. Checksums are checked by `verify`.
package final class QLMFile: @unchecked Sendable {
    package let url: URL
    package let map: MappedFile
    package let metadata: ModelMetadata
    package let metadataJSON: Data
    package let tensors: [TensorInfo]
    package let dataOffset: Int
    private let byName: [String: Int]

    package var path: String { url.path }

    package init(_ url: URL, populate: Bool = false) throws {
        self.url = url
        map = try MappedFile(url, populate: populate)
        let file = url.path
        let bytes = map.bytes
        var r = ByteReader(bytes, file: file)
        guard bytes.count >= QLMFormat.headerSize else {
            throw QuantError(file, "not a QuantLM file: \(bytes.count) bytes is shorter than the 64-byte header")
        }
        let magic = try r.bytes(8, "magic")
        guard Array(magic) == QLMFormat.magic else { throw QuantError(file, "not a QuantLM file (wrong magic)") }
        let version = try r.u32("version")
        guard version == QLMFormat.version else {
            throw QuantError(file, "unsupported format version \(version) (this build reads \(QLMFormat.version))")
        }
        let count = Int(try r.u32("tensor count"))
        let metaOff = try checkedInt(try r.u64("metadata offset"), file, "metadata offset")
        let metaLen = Int(try r.u32("metadata length"))
        let metaCRC = try r.u32("metadata checksum")
        let tableOff = try checkedInt(try r.u64("table offset"), file, "table offset")
        let tableLen = Int(try r.u32("table length"))
        let tableCRC = try r.u32("table checksum")
        dataOffset = try checkedInt(try r.u64("data offset"), file, "data offset")
        let fileLen = try checkedInt(try r.u64("file length"), file, "file length")
        guard fileLen == bytes.count else {
            throw QuantError(file, fileLen > bytes.count
                ? "truncated: header says \(fileLen) bytes, file has \(bytes.count)"
                : "file has \(bytes.count - fileLen) unexpected trailing bytes (header says \(fileLen))")
        }
        guard metaOff == QLMFormat.headerSize, metaLen <= fileLen - metaOff,
              tableOff >= metaOff + metaLen, tableLen == count * QLMFormat.recordSize, tableOff <= fileLen,
              tableLen <= fileLen - tableOff, dataOffset >= tableOff + tableLen, dataOffset <= fileLen,
              dataOffset % QLMFormat.alignment == 0 else {
            throw QuantError(file, "corrupt header: metadata/table/data sections are out of place")
        }
        let metaBytes = UnsafeRawBufferPointer(rebasing: bytes[metaOff ..< metaOff + metaLen])
        guard qlm_crc32c(0, metaBytes.baseAddress, metaLen) == metaCRC else {
            throw QuantError(file, "metadata checksum mismatch (file is corrupt)")
        }
        let tableBytes = UnsafeRawBufferPointer(rebasing: bytes[tableOff ..< tableOff + tableLen])
        guard qlm_crc32c(0, tableBytes.baseAddress, tableLen) == tableCRC else {
            throw QuantError(file, "tensor table checksum mismatch (file is corrupt)")
        }
        metadataJSON = Data(metaBytes)
        metadata = try ModelMetadata.decode(metadataJSON, file: file)
        try metadata.hparams.validate(file: file)
        var tr = ByteReader(bytes, file: file, offset: tableOff)
        var list: [TensorInfo] = []
        var index: [String: Int] = [:]
        for i in 0 ..< count {
            let t = try TensorInfo.parse(&tr, index: i, fileLength: fileLen, dataOffset: dataOffset)
            guard index[t.name] == nil else { throw QuantError(file, "tensor \(t.name) appears twice in the table") }
            index[t.name] = i
            list.append(t)
        }
        // Stored ranges must not overlap.
        let sorted = list.sorted { $0.offset < $1.offset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.offset + a.storedLength > b.offset {
            throw QuantError(file, "tensors \(a.name) and \(b.name) overlap")
        }
        tensors = list
        byName = index
    }

    package func info(_ name: String) throws -> TensorInfo {
        guard let i = byName[name] else { throw QuantError(path, "missing tensor \(name)") }
        return tensors[i]
    }

    package func has(_ name: String) -> Bool { byName[name] != nil }

    /// The tensor's bytes as stored in the file (compressed for zstd tensors).
    package func stored(_ t: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: map.bytes[t.offset ..< t.offset + t.storedLength])
    }

    /// Checks one tensor's checksum (and, for raw tensors, that no fp16 value or scale is infinite or NaN).
    package func verify(_ t: TensorInfo) throws {
        let s = stored(t)
        let crc = s.count == 0 ? 0 : qlm_crc32c(0, s.baseAddress, s.count)
        guard crc == t.checksum else {
            throw QuantError(path, "tensor \(t.name): checksum mismatch (stored \(String(format: "%08x", t.checksum)), computed \(String(format: "%08x", crc)))")
        }
        if t.encoding == .raw, t.type != .u8, let base = s.baseAddress, let r = ConfigValidation.firstNonFiniteRow(t, base) {
            throw QuantError(path, "tensor \(t.name): row \(r) holds an infinite or NaN fp16 \(t.type == .f16 ? "value" : "scale")")
        }
    }

    /// The tensor's raw bytes: a view into the map for raw tensors (no copy), or a freshly
    /// decompressed buffer for zstd tensors.
    package func load(_ name: String, verifyChecksum: Bool = false) throws -> TensorData {
        let t = try info(name)
        if verifyChecksum { try verify(t) }
        switch t.encoding {
        case .raw:
            return TensorData(info: t, bytes: stored(t), owner: self)
        case .zstd:
            // Check the chunk index against the shape before allocating (a corrupt table may
            // claim terabytes), and allocate failably: a huge claim throws instead of aborting.
            _ = try ZstdChunks.index(of: t, stored: stored(t), file: path)
            var mem: UnsafeMutableRawPointer?
            guard posix_memalign(&mem, 64, max(t.rawLength, 1)) == 0, let mem else {
                throw QuantError(path, "tensor \(t.name): cannot allocate \(t.rawLength) bytes to decompress it")
            }
            let buf = UnsafeMutableRawBufferPointer(start: mem, count: max(t.rawLength, 1))
            do {
                try ZstdChunks.decompressAll(t, stored: stored(t), into: UnsafeMutableRawBufferPointer(rebasing: buf[0 ..< t.rawLength]), file: path)
            } catch {
                buf.deallocate()
                throw error
            }
            return TensorData(info: t, bytes: UnsafeRawBufferPointer(rebasing: buf[0 ..< t.rawLength]), owner: self, owned: buf)
        }
    }

    /// Bytes of the whole file that are tensor data as stored, and as raw.
    package var storedTensorBytes: Int { tensors.reduce(0) { $0 + $1.storedLength } }
    package var rawTensorBytes: Int { tensors.reduce(0) { $0 + $1.rawLength } }
}

/// A tensor's raw bytes, kept alive together with the file they may point into.
package final class TensorData: @unchecked Sendable {
    package let info: TensorInfo
    package let bytes: UnsafeRawBufferPointer
    private let owner: AnyObject
    private let owned: UnsafeMutableRawBufferPointer?

    init(info: TensorInfo, bytes: UnsafeRawBufferPointer, owner: AnyObject, owned: UnsafeMutableRawBufferPointer? = nil) {
        self.info = info
        self.bytes = bytes
        self.owner = owner
        self.owned = owned
    }

    deinit { owned?.deallocate() }

    package var isOwned: Bool { owned != nil }

    /// Dequantizes the whole tensor to floats (tests, tools; not for hot paths).
    package func floats() -> [Float] {
        let t = info
        var out = [Float](repeating: 0, count: t.elementCount)
        out.withUnsafeMutableBufferPointer { o in
            for r in 0 ..< t.rows {
                qlm_get_row(t.type.rawValue, bytes.baseAddress!, Int64(t.rows), Int64(t.rowLength), Int64(r), o.baseAddress! + r * t.rowLength)
            }
        }
        return out
    }
}
