import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// `ConversionJob`: the preset and calibration orchestration `convert` delegates to.
final class ConversionJobTests: XCTestCase {
    func testPresetAndCalibrationRunInOrderAndAreRecorded() throws {
        let out = TestFiles.tempRoot.appendingPathComponent("job-q4mix-gptq.qlm")
        var job = ConversionJob(input: try Stories.model(), output: out, type: "q8_0")
        job.tokenizer = try Stories.tokenizer()
        job.preset = "q4_mix"
        job.keep = ["layers.3.feed_forward.w2.weight=q4_0"]
        var cal = ConversionJob.CalibrationRequest(file: try SharedData.path("data/tinystories/tinystories_valid_first1000.txt").path)
        cal.documents = 900 ..< 1000
        cal.maxTokens = 2048
        cal.ctx = 256
        cal.skip = ["layers.0.*"]
        job.calibration = cal
        job.threads = 2
        var notes: [String] = []
        var lastProgress = (0, 0)
        let r = try job.run(note: { n in
            switch n {
            case .preset(let s): notes.append("preset:" + s)
            case .calibrationStage(let s): notes.append("stage:" + s)
            case .calibration(let s): notes.append("calibration:" + s)
            }
        }, progress: { lastProgress = ($0, $1) })

        // The preset replaces --type (q4_mix's default is iq4_k16), is announced before
        // calibration, and the caller's --keep pattern still wins over it.
        XCTAssertEqual(notes.count, 2, "\(notes)")
        XCTAssertTrue(notes.first?.hasPrefix("preset:preset q4_mix: matrices iq4_k16") == true, "\(notes)")
        XCTAssertTrue(notes.last?.hasPrefix("calibration:GPTQ (float), damp 0.01; calibration tinystories_valid_first1000.txt documents 900..<1000") == true, "\(notes)")
        XCTAssertEqual(r.policy.defaultType, .iq4_k16)
        let f = try QLMFile(out)
        XCTAssertEqual(try f.info("layers.2.attention.wq.weight").type, .iq4_k16)
        XCTAssertEqual(try f.info("layers.1.attention.wk.weight").type, .q8_0)   // the preset's own override
        XCTAssertEqual(try f.info("layers.3.feed_forward.w2.weight").type, .q4_0)   // the caller's
        // The recorded calibration note is the one reported, and GPTQ touched exactly the
        // matrices not skipped: every layer-0 matrix is plain.
        XCTAssertEqual(f.metadata.quantization.calibration, r.calibrationNote)
        XCTAssertFalse(r.summary.gptqTensors.isEmpty)
        XCTAssertFalse(r.summary.gptqTensors.contains { $0.hasPrefix("layers.0.") })
        XCTAssertTrue(r.plainMatrices.contains("layers.0.attention.wq.weight"), "\(r.plainMatrices)")
        XCTAssertTrue(Set(r.plainMatrices).isDisjoint(with: r.summary.gptqTensors))
        XCTAssertNotNil(r.calibrationSeconds)
        XCTAssertEqual(lastProgress.0, lastProgress.1, "progress reaches its total")
        XCTAssertGreaterThan(lastProgress.1, 0)
    }

    func testBadRequestsNameTheInput() throws {
        let out = TestFiles.tempRoot.appendingPathComponent("job-bad.qlm")
        var job = ConversionJob(input: try Stories.model(), output: out, type: "q9_9")
        job.tokenizer = try Stories.tokenizer()
        XCTAssertThrowsError(try job.run()) { e in
            XCTAssertTrue("\(e)".contains("stories260K.bin") && "\(e)".contains("unknown type 'q9_9'"), "\(e)")
        }
        job.type = "q8_0"
        job.preset = "nope"
        XCTAssertThrowsError(try job.run()) { e in XCTAssertTrue("\(e)".contains("unknown preset 'nope'"), "\(e)") }
        job.preset = nil
        job.calibration = .init(file: "/nonexistent/cal.txt")
        XCTAssertThrowsError(try job.run()) { e in XCTAssertTrue("\(e)".contains("/nonexistent/cal.txt"), "\(e)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "no output on failure")
    }
}
