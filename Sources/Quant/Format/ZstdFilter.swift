import CKernels
import CZstd
import Foundation

/// A reversible byte layout applied to each zstd chunk's raw bytes before compression (and
/// undone after decompression), so that similar bytes sit together: fp16 scales apart from
/// codes, their high bytes apart from their low bytes. Kernels in CKernels/zfilter.c; the
/// layouts are specified in docs/format.md ("QZC2").
package enum ZstdFilter: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case none = 0
    /// Byte planes: byte j of every record together (j = 0 ..< record).
    case shuffle = 1
    /// Every record's head (scale) bytes, then every record's code bytes.
    case split = 2
    /// The head bytes as byte planes, each XOR-delta'd along the records; then the codes.
    case delta = 3
    /// As delta, then the codes as a low-nibble plane and a high-nibble plane.
    case nibble = 4
    /// The head bytes as byte planes (no delta), then the codes.
    case planes = 5

    package var description: String { ["none", "shuffle", "split", "delta", "nibble", "planes"][Int(rawValue)] }

    package init?(name: String) {
        guard let f = ZstdFilter.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = f
    }
}

/// A filter with its record geometry: chunks are runs of `record`-byte records whose first
/// `head` bytes are scales.
package struct ZstdFilterSpec: Equatable, Sendable, CustomStringConvertible {
    package var filter: ZstdFilter
    package var record: Int
    package var head: Int

    package init(filter: ZstdFilter, record: Int, head: Int) {
        self.filter = filter; self.record = record; self.head = head
    }

    package static let none = ZstdFilterSpec(filter: .none, record: 1, head: 0)

    package var description: String { filter == .none ? "none" : "\(filter)(record \(record), head \(head))" }

    /// Records must tile a row exactly (so every chunk of whole rows is whole records).
    package func isValid(rowBytes: Int) -> Bool {
        record >= 1 && record <= UInt32.max && head <= record && head <= UInt16.max && rowBytes % record == 0
    }

    /// The record geometry of a tensor type, from its row of the C type table: the type's own
    /// record when it defines one (iq4_k*: one super-block, or a whole row when rows are not whole
    /// 256-weight super-blocks); else its block with the block's fp16 scales (which lead it) as the
    /// head, a group block (rowGroup blocks, rowGroup times the scales) when the rows are whole
    /// group blocks; the element for f32/f16/u8 (no head).
    package static func geometry(type: QuantType, rowLength n: Int) -> (record: Int, head: Int) {
        if let r = type.zstdRecord(rowLength: n) { return r }
        let bb = type.blockBytes
        guard type.isQuantized else { return (bb, 0) }
        let head = type.fp16Offsets.map { $0 + 2 }.max() ?? 0
        let g = type.rowGroup
        return g > 1 && type.rowSize(n) % (g * bb) == 0 ? (g * bb, g * head) : (bb, head)
    }

    /// The filters worth trying for a type (none first): byte planes need records of more than
    /// one byte, the head/code filters a quantized type, the nibble planes 4-bit codes.
    package static func candidates(type: QuantType) -> [ZstdFilter] {
        guard type.blockBytes > 1 else { return [.none] }
        guard type.isQuantized else { return [.none, .shuffle] }
        return [.none, .shuffle, .split, .planes, .delta] + (type.codeBits == 4 ? [.nibble] : [])
    }

    package static func make(_ filter: ZstdFilter, type: QuantType, rowLength: Int) -> ZstdFilterSpec {
        guard filter != .none else { return .none }
        let g = geometry(type: type, rowLength: rowLength)
        return ZstdFilterSpec(filter: filter, record: g.record, head: g.head)
    }
}

/// What `convert --zstd-filter` asks for: one filter for every tensor, or `auto` (per tensor,
/// the candidate that compresses the tensor's first chunk smallest at the chosen level).
package enum ZstdFilterChoice: Equatable, Sendable, CustomStringConvertible {
    case fixed(ZstdFilter)
    case auto

    package init?(name: String) {
        if name.lowercased() == "auto" { self = .auto; return }
        guard let f = ZstdFilter(name: name) else { return nil }
        self = .fixed(f)
    }

    package var description: String {
        switch self { case .auto: return "auto"; case .fixed(let f): return f.description }
    }

    package static var namesForHelp: String { (["auto"] + ZstdFilter.allCases.map(\.description)).joined(separator: "|") }

    /// The filter for one tensor. A fixed filter the type has no use for (nibble for q8_0,
    /// anything but shuffle for f32/f16) falls back to none.
    package func resolve(_ data: UnsafeRawBufferPointer, type: QuantType, rows: Int, rowLength: Int,
                        level: Int, chunkBytes: Int) throws -> ZstdFilterSpec {
        let cands = ZstdFilterSpec.candidates(type: type)
        switch self {
        case .fixed(let f):
            return cands.contains(f) ? ZstdFilterSpec.make(f, type: type, rowLength: rowLength) : .none
        case .auto:
            guard cands.count > 1, rows > 0 else { return .none }
            let rowBytes = type.rowSize(rowLength)
            let rpc = max(1, chunkBytes / max(1, rowBytes))
            let first = UnsafeRawBufferPointer(rebasing: data[0 ..< min(rows, rpc) * rowBytes])
            var best = ZstdFilterSpec.none, bestSize = Int.max
            for f in cands {
                let spec = ZstdFilterSpec.make(f, type: type, rowLength: rowLength)
                guard f == .none || spec.isValid(rowBytes: rowBytes) else { continue }
                let size = try ZstdChunks.compressedSize(first, level: level, filter: spec)
                if size < bestSize { best = spec; bestSize = size }
            }
            return best
        }
    }
}

extension ZstdChunks {
    /// Bytes of one zstd frame of `data` (one chunk) after `filter`: for choosing a filter.
    package static func compressedSize(_ data: UnsafeRawBufferPointer, level: Int, filter: ZstdFilterSpec) throws -> Int {
        let n = data.count
        let buf = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1), alignment: 64)
        defer { buf.deallocate() }
        if n > 0 {
            guard qlm_zf_encode(Int32(filter.filter.rawValue), data.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                buf.assumingMemoryBound(to: UInt8.self), n, filter.record, filter.head) == 0 else {
                throw QuantError("<zstd>", "invalid zstd filter \(filter) for \(n) bytes")
            }
        }
        let bound = ZSTD_compressBound(n)
        let out = UnsafeMutableRawPointer.allocate(byteCount: bound, alignment: 64)
        defer { out.deallocate() }
        guard let cctx = ZSTD_createCCtx() else { throw QuantError("<zstd>", "ZSTD_createCCtx failed") }
        defer { ZSTD_freeCCtx(cctx) }
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, Int32(level))
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
        let r = ZSTD_compress2(cctx, out, bound, buf, n)
        if ZSTD_isError(r) != 0 { throw QuantError("<zstd>", "zstd compression failed: \(String(cString: ZSTD_getErrorName(r)))") }
        return r
    }
}

/// A parsed chunk-stream header (QZC1 or QZC2).
package struct ZstdChunkHeader: Sendable {
    package var chunkCount: Int
    /// As stored (may exceed the tensor's rows: one chunk).
    package var rowsPerChunk: UInt64
    /// 24 (QZC1) or 32 (QZC2): where the chunk table starts.
    package var headerSize: Int
    package var filter: ZstdFilterSpec
}
