import CKernels
import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// The converter reads and quantizes tensors in row bands (BandPlan) instead of one whole-tensor
/// f32 copy. Bands must give the same bytes as the whole-tensor path: the committed architecture
/// fixtures (Tests/Fixtures/arch: HF safetensors with plain, halves-to-pairs (llama, mistral) and
/// add-one (gemma2) tensors, and gemma2's GGUF for ggml rows), every tensor compared bit for bit.
final class ConverterBandTests: XCTestCase {
    static let sources: [(String, String?)] = [
        ("llama3", nil), ("mistral", nil), ("gemma2", nil), ("qwen3", nil), ("phi3", nil), ("gpt_neo", nil), ("gemma2", "model.gguf"),
    ]

    func checkpoints() throws -> [(String, Checkpoint)] {
        try Self.sources.map { name, file in
            let dir = SharedData.packageRoot.appendingPathComponent("Tests/Fixtures/arch/\(name)")
            let url = file.map { dir.appendingPathComponent($0) } ?? dir
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw QuantError(url, "committed fixture missing (scripts/oracles/make_arch_fixtures.py regenerates it)")
            }
            return ("\(name)/\(file ?? "hf")", try Checkpoint.open(url))
        }
    }

    /// readFloats(rows:) at bands of 1 and 3 multiples gives the floats readFloats(into:) puts there.
    func testBandReadsEqualWholeReads() throws {
        var banded = 0, kinds = Set<String>()
        for (label, ck) in try checkpoints() {
            for t in ck.tensors {
                guard let m = t.bandRowMultiple else { continue }
                let n = t.elementCount, rl = t.rowLength
                var whole = [Float](repeating: .nan, count: n), part = [Float](repeating: .nan, count: n)
                whole.withUnsafeMutableBufferPointer { t.readFloats(into: $0.baseAddress!) }
                for step in [m, 3 * m] {
                    part.withUnsafeMutableBufferPointer { p in
                        var r = 0
                        while r < t.rows {
                            let r1 = min(t.rows, r + step)
                            t.readFloats(rows: r ..< r1, into: p.baseAddress! + r * rl)
                            r = r1
                        }
                    }
                    let same = whole.withUnsafeBytes { a in part.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
                    XCTAssertTrue(same, "\(label) \(t.name): bands of \(step) rows differ from the whole-tensor read")
                }
                banded += 1
                if case .ggml = t.payload { kinds.insert("ggml") } else { kinds.insert("\(t.adjust)") }
            }
        }
        // The fixtures exercise each kind of band read (a change to them should not silently drop one).
        XCTAssertGreaterThan(banded, 50)
        XCTAssertTrue(kinds.contains { $0.hasPrefix("halvesToPairs") }, "no halves-to-pairs tensor read in bands: \(kinds)")
        XCTAssertTrue(kinds.contains { $0.hasPrefix("addOne") }, "no add-one tensor read in bands: \(kinds)")
        XCTAssertTrue(kinds.contains("ggml"), "no ggml tensor read in bands: \(kinds)")
    }

    /// BandPlan with small bands on 2 workers quantizes to the bytes of one whole-tensor
    /// qlm_quantize_rows over the whole read, for a plain and a row-grouped type.
    func testBandQuantizeEqualsWholeTensor() throws {
        var compared = 0
        for (label, ck) in try checkpoints() {
            for t in ck.tensors where t.shape.count == 2 {
                for type in [QuantType.q8_0, .q4_0x8, .q4_1] where type.allows(rowLength: t.rowLength) {
                    let info = TensorInfo(name: t.name, type: type, encoding: .raw, shape: t.shape)
                    // About 3 rows a band: many bands, and bands that end inside an 8-row group's multiple.
                    guard let plan = BandPlan(t, info, threads: 2, targetFloats: 3 * t.rowLength) else { continue }
                    XCTAssertEqual(plan.rows % type.rowGroup, 0, "\(label) \(t.name): band of \(plan.rows) rows splits a \(type) group")
                    var floats = [Float](repeating: 0, count: t.elementCount)
                    floats.withUnsafeMutableBufferPointer { t.readFloats(into: $0.baseAddress!) }
                    var whole = [UInt8](repeating: 0, count: info.expectedRawLength), banded = [UInt8](repeating: 0xA5, count: info.expectedRawLength)
                    let rcWhole = whole.withUnsafeMutableBytes {
                        qlm_quantize_rows_imp(type.rawValue, floats, nil, $0.baseAddress, Int64(t.rows), Int64(t.rowLength), 1)
                    }
                    var scratch = [Float](repeating: 0, count: plan.workers * plan.rows * t.rowLength)
                    let rcBand = scratch.withUnsafeMutableBufferPointer { s in
                        banded.withUnsafeMutableBytes { plan.run(t, info, floats: s.baseAddress!, imp: nil, into: $0.baseAddress!) }
                    }
                    XCTAssertEqual(rcWhole, -1)
                    XCTAssertEqual(rcBand, -1, "\(label) \(t.name) \(type)")
                    XCTAssertEqual(whole, banded, "\(label) \(t.name) \(type): banded quantization differs")
                    compared += 1
                }
            }
        }
        XCTAssertGreaterThan(compared, 50)
    }

    /// The streamed run (the converter's path for raw tensors: each band quantized into a worker's
    /// small buffer and handed over in row order) hands over the bytes of the whole-tensor run, in
    /// contiguous ascending row ranges that cover the tensor once.
    func testStreamedBandsEqualWholeTensorRun() throws {
        var compared = 0
        for (label, ck) in try checkpoints() {
            for t in ck.tensors where t.shape.count == 2 {
                for type in [QuantType.q8_0, .q4_0x8] where type.allows(rowLength: t.rowLength) {
                    let info = TensorInfo(name: t.name, type: type, encoding: .raw, shape: t.shape)
                    guard let plan = BandPlan(t, info, threads: 2, targetFloats: 3 * t.rowLength) else { continue }
                    var scratch = [Float](repeating: 0, count: plan.floatCount(info))
                    var whole = [UInt8](repeating: 0, count: info.expectedRawLength)
                    let rcWhole = scratch.withUnsafeMutableBufferPointer { s in
                        whole.withUnsafeMutableBytes { plan.run(t, info, floats: s.baseAddress!, imp: nil, into: $0.baseAddress!) }
                    }
                    var small = [UInt8](repeating: 0xA5, count: plan.quantBytes(info))
                    var streamed: [UInt8] = [], nextRow = 0
                    let rc = scratch.withUnsafeMutableBufferPointer { s in
                        small.withUnsafeMutableBytes { q in
                            plan.run(t, info, floats: s.baseAddress!, quant: q.baseAddress!, imp: nil) { band, rows in
                                XCTAssertEqual(rows.lowerBound, nextRow, "\(label) \(t.name): bands out of order")
                                XCTAssertEqual(band.count, rows.count * info.rowBytes)
                                nextRow = rows.upperBound
                                streamed += band
                            }
                        }
                    }
                    XCTAssertEqual(rcWhole, -1)
                    XCTAssertEqual(rc, -1, "\(label) \(t.name) \(type)")
                    XCTAssertEqual(nextRow, t.rows, "\(label) \(t.name): bands do not cover the rows")
                    XCTAssertEqual(streamed, whole, "\(label) \(t.name) \(type): streamed bands differ from the whole-tensor run")
                    compared += 1
                }
            }
        }
        XCTAssertGreaterThan(compared, 50)
    }

    /// A NaN in one row is reported at that row by the band path (the whole-tensor path's message).
    func testBandQuantizeReportsTheBadRow() throws {
        let rows = 40, cols = 64
        var values = (0 ..< rows * cols).map { Float(($0 * 7919) % 97) / 13 - 3 }
        values[29 * cols + 5] = .nan
        let bytes = values.withUnsafeBytes { [UInt8]($0) }
        try bytes.withUnsafeBytes { raw in
            let t = SourceTensor(key: TensorKey(.ffnUp, layer: 0), name: "w", shape: [rows, cols], dtype: .f32, bytes: raw,
                                 transposed: false, origin: "test: w")
            let info = TensorInfo(name: "w", type: .q8_0, encoding: .raw, shape: [rows, cols])
            let plan = try XCTUnwrap(BandPlan(t, info, threads: 2, targetFloats: 4 * cols))
            var scratch = [Float](repeating: 0, count: plan.workers * plan.rows * cols)
            var out = [UInt8](repeating: 0, count: info.expectedRawLength)
            let rc = scratch.withUnsafeMutableBufferPointer { s in out.withUnsafeMutableBytes { plan.run(t, info, floats: s.baseAddress!, imp: nil, into: $0.baseAddress!) } }
            XCTAssertEqual(rc, 29)
            // Streamed: the same row, and no band from the bad one on is handed over.
            var small = [UInt8](repeating: 0, count: plan.quantBytes(info))
            var written = 0..<0
            let rcStreamed = scratch.withUnsafeMutableBufferPointer { s in
                small.withUnsafeMutableBytes { q in
                    plan.run(t, info, floats: s.baseAddress!, quant: q.baseAddress!, imp: nil) { _, rows in written = written.lowerBound ..< rows.upperBound }
                }
            }
            XCTAssertEqual(rcStreamed, 29)
            XCTAssertLessThanOrEqual(written.upperBound, 29 / plan.rows * plan.rows, "bands at or after the bad row were written: \(written)")
        }
    }
}
