import Foundation

/// Little-endian append helpers for building binary headers.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }
    mutating func zeros(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }
    mutating func padTo(_ alignment: Int) {
        let r = bytes.count % alignment
        if r != 0 { zeros(alignment - r) }
    }
}

/// Bounds-checked little-endian reads over a buffer; every read that would pass the end
/// throws a QuantError naming the file and what was being read.
struct ByteReader {
    let base: UnsafeRawBufferPointer
    let file: String
    var offset: Int

    init(_ base: UnsafeRawBufferPointer, file: String, offset: Int = 0) {
        self.base = base
        self.file = file
        self.offset = offset
    }

    mutating func need(_ n: Int, _ what: String) throws {
        guard n >= 0, offset >= 0, offset <= base.count, base.count - offset >= n else {
            throw QuantError(file, "truncated: \(what) needs \(n) bytes at offset \(offset), file has \(base.count)")
        }
    }
    mutating func u8(_ what: String) throws -> UInt8 {
        try need(1, what); defer { offset += 1 }
        return base[offset]
    }
    mutating func u16(_ what: String) throws -> UInt16 {
        try need(2, what); defer { offset += 2 }
        return UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    mutating func u32(_ what: String) throws -> UInt32 {
        try need(4, what); defer { offset += 4 }
        return UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    mutating func i32(_ what: String) throws -> Int32 { Int32(bitPattern: try u32(what)) }
    mutating func u64(_ what: String) throws -> UInt64 {
        try need(8, what); defer { offset += 8 }
        return UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
    mutating func f32(_ what: String) throws -> Float { Float(bitPattern: try u32(what)) }
    mutating func bytes(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        try need(n, what); defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: base[offset ..< offset + n])
    }
}

/// Converts an untrusted UInt64 from a file into an Int, or throws.
func checkedInt(_ v: UInt64, _ file: String, _ what: String) throws -> Int {
    guard v <= UInt64(Int.max / 4) else { throw QuantError(file, "\(what) is absurd (\(v))") }
    return Int(v)
}
