import CKernels
import Foundation
import Quant

/// A weight matrix [rows, cols] in its stored type, as the kernels read it.
public struct Matrix {
    public let name: String
    public let type: QuantType
    public let rows: Int
    public let cols: Int
    public let data: UnsafeRawPointer

    public var rowBytes: Int { type.rowSize(cols) }
    public var byteCount: Int { rows * rowBytes }
}

/// Binds a model's tensors from a .qlm file: raw tensors are used in place in the memory
/// map (no copy); zstd tensors are decompressed into owned buffers; 1-D tensors that were
/// stored quantized (an unusual --keep) are dequantized once into owned float buffers.
/// Every tensor's shape is checked against what the architecture expects.
public final class WeightStore {
    public let file: QLMFile
    private var kept: [TensorData] = []
    private var ownedFloats: [UnsafeMutablePointer<Float>] = []
    /// Bytes held in owned buffers (decompressed or dequantized), i.e. not file-backed.
    public private(set) var ownedBytes = 0
    /// Bytes of weights read from the file map in place.
    public private(set) var mappedBytes = 0

    public init(file: QLMFile) { self.file = file }

    deinit { ownedFloats.forEach { $0.deallocate() } }

    private func load(_ name: String, shape: [Int]) throws -> TensorData {
        let info = try file.info(name)
        guard info.shape == shape else {
            throw QuantError(file.path, "tensor \(name) has shape \(info.shape), expected \(shape) for this model's hyper-parameters")
        }
        let t = try file.load(name)
        if t.isOwned { ownedBytes += t.bytes.count } else { mappedBytes += t.bytes.count }
        kept.append(t)
        return t
    }

    public func matrix(_ name: String, rows: Int, cols: Int) throws -> Matrix {
        let t = try load(name, shape: [rows, cols])
        guard QuantType.weightTypes.contains(t.info.type) else {
            throw QuantError(file.path, "tensor \(name) has type \(t.info.type), which is not a weight type")
        }
        return Matrix(name: name, type: t.info.type, rows: rows, cols: cols, data: t.bytes.baseAddress!)
    }

    public func vector(_ name: String, count: Int) throws -> UnsafePointer<Float> {
        let t = try load(name, shape: [count])
        if t.info.type == .f32 { return t.bytes.baseAddress!.assumingMemoryBound(to: Float.self) }
        guard QuantType.weightTypes.contains(t.info.type) else {
            throw QuantError(file.path, "tensor \(name) has type \(t.info.type), which is not a weight type")
        }
        let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
        qlm_dequantize_row(t.info.type.rawValue, t.bytes.baseAddress!, p, Int64(count))
        ownedFloats.append(p)
        ownedBytes += count * 4
        return UnsafePointer(p)
    }
}
