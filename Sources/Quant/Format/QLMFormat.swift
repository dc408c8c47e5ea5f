import CKernels
import Foundation

/// The .qlm container, byte for byte as docs/format.md describes it.
///
///     [0, 64)             header
///     [64, ...)           metadata JSON (UTF-8)
///     (64-aligned)        tensor table: tensor_count records of 128 bytes
///     (64-aligned)        tensor data, each tensor starting on a 64-byte boundary
package enum QLMFormat {
    package static let magic: [UInt8] = Array("QUANTLM\0".utf8)
    package static let version: UInt32 = 1
    package static let headerSize = 64
    package static let recordSize = 128
    package static let alignment = 64
    package static let maxNameBytes = 63
    package static let maxDims = 4
    package static let chunkMagic: [UInt8] = Array("QZC1".utf8)
    package static let chunkHeaderSize = 24
    /// A filtered chunk stream (QZC2): the QZC1 header plus filter u8, reserved u8, head u16, record u32.
    package static let chunkMagic2: [UInt8] = Array("QZC2".utf8)
    package static let chunkHeaderSize2 = 32
    package static let chunkEntrySize = 16

    static func align(_ x: Int) -> Int { (x + alignment - 1) / alignment * alignment }
}

package enum TensorEncoding: UInt8, Codable, Sendable, CustomStringConvertible {
    case raw = 0
    case zstd = 1
    package var description: String { self == .raw ? "raw" : "zstd" }
}

/// One row of the tensor table.
package struct TensorInfo: Equatable, Sendable {
    package var name: String
    package var type: QuantType
    package var encoding: TensorEncoding
    /// Outermost first; the last dimension is the row length. A 2-D weight is [rows, n].
    package var shape: [Int]
    package var offset: Int
    package var storedLength: Int
    package var rawLength: Int
    package var checksum: UInt32

    package init(name: String, type: QuantType, encoding: TensorEncoding, shape: [Int],
                offset: Int = 0, storedLength: Int = 0, rawLength: Int = 0, checksum: UInt32 = 0) {
        self.name = name; self.type = type; self.encoding = encoding; self.shape = shape
        self.offset = offset; self.storedLength = storedLength; self.rawLength = rawLength; self.checksum = checksum
    }

    package var rowLength: Int { shape.last ?? 1 }
    package var rows: Int { shape.dropLast().reduce(1, *) }
    package var elementCount: Int { shape.reduce(1, *) }
    package var rowBytes: Int { type.rowSize(rowLength) }
    /// The size the raw data must have for this shape and type.
    package var expectedRawLength: Int { rows * rowBytes }

    func record() -> [UInt8] {
        var w = ByteWriter()
        var nameBytes = Array(name.utf8)
        nameBytes.append(contentsOf: repeatElement(0, count: 64 - nameBytes.count))
        w.raw(nameBytes)
        w.u8(UInt8(type.rawValue))
        w.u8(encoding.rawValue)
        w.u8(UInt8(shape.count))
        w.u8(0)
        w.u32(checksum)
        for i in 0 ..< QLMFormat.maxDims { w.u64(UInt64(i < shape.count ? shape[i] : 0)) }
        w.u64(UInt64(offset))
        w.u64(UInt64(storedLength))
        w.u64(UInt64(rawLength))
        precondition(w.bytes.count == QLMFormat.recordSize)
        return w.bytes
    }

    static func parse(_ r: inout ByteReader, index: Int, fileLength: Int, dataOffset: Int) throws -> TensorInfo {
        let file = r.file
        let nameRaw = try r.bytes(64, "tensor \(index) name")
        let nameEnd = nameRaw.firstIndex(of: 0) ?? 64
        guard nameEnd > 0, nameEnd <= QLMFormat.maxNameBytes,
              let name = String(validating: nameRaw[0 ..< nameEnd], as: UTF8.self) else {
            throw QuantError(file, "tensor \(index) has an invalid name")
        }
        let typeRaw = try r.u8("tensor \(name) type")
        guard let type = QuantType(rawValue: Int32(typeRaw)) else {
            throw QuantError(file, "tensor \(name) has unknown type \(typeRaw)")
        }
        let encRaw = try r.u8("tensor \(name) encoding")
        guard let encoding = TensorEncoding(rawValue: encRaw) else {
            throw QuantError(file, "tensor \(name) has unknown encoding \(encRaw)")
        }
        let ndim = Int(try r.u8("tensor \(name) ndim"))
        _ = try r.u8("reserved")
        guard ndim >= 1, ndim <= QLMFormat.maxDims else { throw QuantError(file, "tensor \(name) has \(ndim) dimensions") }
        let checksum = try r.u32("tensor \(name) checksum")
        var shape: [Int] = []
        var elements = 1
        for i in 0 ..< QLMFormat.maxDims {
            let d = try r.u64("tensor \(name) shape")
            if i < ndim {
                guard d >= 1, d <= 1 << 31 else { throw QuantError(file, "tensor \(name) has absurd dimension \(d)") }
                let (m, o) = elements.multipliedReportingOverflow(by: Int(d))
                guard !o, m <= 1 << 40 else { throw QuantError(file, "tensor \(name) has absurd shape") }
                elements = m
                shape.append(Int(d))
            }
        }
        let offset = try checkedInt(try r.u64("tensor \(name) offset"), file, "tensor \(name) offset")
        let stored = try checkedInt(try r.u64("tensor \(name) stored length"), file, "tensor \(name) stored length")
        let rawLen = try checkedInt(try r.u64("tensor \(name) raw length"), file, "tensor \(name) raw length")
        let info = TensorInfo(name: name, type: type, encoding: encoding, shape: shape, offset: offset,
                              storedLength: stored, rawLength: rawLen, checksum: checksum)
        guard type.allows(rowLength: info.rowLength) else {
            throw QuantError(file, "tensor \(name): type \(type) needs rows that are a multiple of \(type.blockSize) weights, not \(info.rowLength)")
        }
        guard rawLen == info.expectedRawLength else {
            throw QuantError(file, "tensor \(name): raw length \(rawLen) does not match shape \(shape) of type \(type) (\(info.expectedRawLength) bytes)")
        }
        guard offset >= dataOffset, offset % QLMFormat.alignment == 0, offset <= fileLength,
              stored <= fileLength - offset else {
            throw QuantError(file, "tensor \(name): data [\(offset), +\(stored)) lies outside the file's data section (file is \(fileLength) bytes)")
        }
        if encoding == .raw, stored != rawLen {
            throw QuantError(file, "tensor \(name): raw tensor stores \(stored) bytes but needs \(rawLen)")
        }
        return info
    }
}
