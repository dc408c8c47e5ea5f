import CKernels
import CKernels.Testing
import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

/// Shared helpers for the QuantTests: temp directories, a deterministic RNG, synthetic
/// llama2.c and safetensors writers, and the stories260K paths.

/// A fresh directory under /tmp, removed by the test's teardown.
func makeTempDir(_ test: XCTestCase, _ label: String = "qlmtest") throws -> URL {
    let url = URL(fileURLWithPath: NSTemporaryDirectory())
        .appendingPathComponent("\(label)-\(getpid())-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

func readBytes(_ url: URL) throws -> [UInt8] { [UInt8](try Data(contentsOf: url)) }

func floatsOf(_ bytes: UnsafeRawBufferPointer) -> [Float] {
    (0 ..< bytes.count / 4).map { bytes.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
}

func bytesOf(_ floats: [Float]) -> [UInt8] { floats.withUnsafeBytes { [UInt8]($0) } }

/// Quantizes rows×n floats into one buffer of rows × rowSize(n) bytes with the C kernel.
func quantize(_ type: QuantType, _ x: [Float], rows: Int, n: Int) -> [UInt8] {
    let rs = type.rowSize(n)
    var out = [UInt8](repeating: 0, count: rows * rs)
    x.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBytes { op in
            for r in 0 ..< rows {
                let rc = qlm_quantize_row(type.rawValue, xp.baseAddress! + r * n, op.baseAddress! + r * rs, Int64(n))
                precondition(rc == 0)
            }
        }
    }
    return out
}

func dequantize(_ type: QuantType, _ bytes: UnsafeRawBufferPointer, n: Int) -> [Float] {
    var y = [Float](repeating: 0, count: n)
    y.withUnsafeMutableBufferPointer { qlm_dequantize_row(type.rawValue, bytes.baseAddress!, $0.baseAddress!, Int64(n)) }
    return y
}

func bitsEqual(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

/// Asserts that `body` throws a QuantError whose description contains every one of `needles`.
@discardableResult
func assertQuantError(_ needles: [String], file: StaticString = #filePath, line: UInt = #line,
                      _ body: () throws -> Void) -> QuantError? {
    do {
        try body()
        XCTFail("expected a QuantError mentioning \(needles), but nothing was thrown", file: file, line: line)
        return nil
    } catch let e as QuantError {
        for n in needles where !e.description.contains(n) {
            XCTFail("QuantError '\(e)' does not mention '\(n)'", file: file, line: line)
        }
        return e
    } catch {
        XCTFail("expected QuantError, got \(type(of: error)): \(error)", file: file, line: line)
        return nil
    }
}

/// An independent reading of a llama2.c legacy .bin (run.c's order), used as the oracle
/// for what the converter should have stored. Names are QuantLM's canonical ones.
struct Llama2cOracle {
    var header: [Int32]
    var tensors: [(name: String, shape: [Int], floats: [Float])]

    init(_ bytes: [UInt8]) {
        header = (0 ..< 7).map { i in bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i * 4, as: Int32.self) } }
        let dim = Int(header[0]), hidden = Int(header[1]), L = Int(header[2]), heads = Int(header[3])
        let kv = Int(header[4]), vocab = Int(abs(header[5])), seq = Int(header[6])
        let kvDim = dim / heads * kv
        var off = 28
        func take(_ n: Int) -> [Float] {
            let f = bytes.withUnsafeBytes { b in (0 ..< n).map { b.loadUnaligned(fromByteOffset: off + $0 * 4, as: Float.self) } }
            off += n * 4
            return f
        }
        var per: [String: (shape: [Int], floats: [Float])] = [:]
        per["tok_embeddings.weight"] = ([vocab, dim], take(vocab * dim))
        let layered: [(String, [Int])] = [
            ("attention_norm.weight", [dim]), ("attention.wq.weight", [dim, dim]), ("attention.wk.weight", [kvDim, dim]),
            ("attention.wv.weight", [kvDim, dim]), ("attention.wo.weight", [dim, dim]), ("ffn_norm.weight", [dim]),
            ("feed_forward.w1.weight", [hidden, dim]), ("feed_forward.w2.weight", [dim, hidden]),
            ("feed_forward.w3.weight", [hidden, dim]),
        ]
        for (name, shape) in layered {
            for l in 0 ..< L { per["layers.\(l).\(name)"] = (shape, take(shape.reduce(1, *))) }
        }
        per["norm.weight"] = ([dim], take(dim))
        off += 2 * seq * (dim / heads / 2) * 4
        if header[5] < 0 { per["output.weight"] = ([vocab, dim], take(vocab * dim)) }
        precondition(off == bytes.count, "oracle: llama2.c file size mismatch")
        var list: [(String, [Int], [Float])] = [("tok_embeddings.weight", per["tok_embeddings.weight"]!.shape, per["tok_embeddings.weight"]!.floats)]
        for l in 0 ..< L {
            for (name, _) in layered { let t = per["layers.\(l).\(name)"]!; list.append(("layers.\(l).\(name)", t.shape, t.floats)) }
        }
        list.append(("norm.weight", [dim], per["norm.weight"]!.floats))
        if let o = per["output.weight"] { list.append(("output.weight", o.shape, o.floats)) }
        tensors = list
    }
}


// MARK: - safetensors

struct STTensor {
    var name: String
    var dtype: String
    var shape: [Int]
    var data: [UInt8]
}

/// Serializes tensors as a safetensors file: u64 LE header length, JSON header, data.
/// `headerOverride` lets a test corrupt individual entries.
func safetensorsBytes(_ tensors: [STTensor], metadata: [String: String]? = ["format": "pt"],
                      mutateHeader: ((inout [String: Any]) -> Void)? = nil) throws -> [UInt8] {
    var header: [String: Any] = [:]
    var data: [UInt8] = []
    for t in tensors {
        header[t.name] = ["dtype": t.dtype, "shape": t.shape, "data_offsets": [data.count, data.count + t.data.count]] as [String: Any]
        data += t.data
    }
    if let metadata { header["__metadata__"] = metadata }
    mutateHeader?(&header)
    var json = [UInt8](try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
    while json.count % 8 != 0 { json.append(0x20) } // the reference writer pads with spaces
    var out: [UInt8] = []
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
    return out + json + data
}

// MARK: - executables

extension QLMFile {
    /// A copy of a tensor's raw bytes. (TensorData owns a decompressed buffer: copying out of
    /// `load(name).bytes` directly could read it after the TensorData was released.)
    func rawBytes(_ name: String) throws -> [UInt8] {
        let d = try load(name)
        return withExtendedLifetime(d) { [UInt8](d.bytes) }
    }
}
