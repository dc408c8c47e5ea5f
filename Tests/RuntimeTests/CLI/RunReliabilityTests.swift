import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// Issue 25's audit, the `run` side: a model file truncated under a running generation (row 1),
/// the llama2.c tokenizer's merges on long input (row 3), `run kv-budget` with absurd sizes (row 4).
final class RunReliabilityTests: XCTestCase {
    /// SmolLM2 at q8_0 (converted once per test process, shared with ServeTests' file name).
    static func smolQ8() throws -> URL {
        let gguf = try SharedData.model("SmolLM2-135M-Instruct.Q4_1.gguf")
        let qlm = TestFiles.tempRoot.appendingPathComponent("serve-smollm2-q8_0.qlm")
        if !FileManager.default.fileExists(atPath: qlm.path) {
            let c = try Executables.run("convert", [gguf.path, "-o", qlm.path, "--type", "q8_0", "--quiet"])
            guard c.status == 0 else { throw SharedData.Missing(description: "convert SmolLM2 failed: \(c.stderr)") }
        }
        return qlm
    }

    /// Row 1: `run generate` from a copy that is truncated while it generates exits with a
    /// one-line error naming the file (exit 74), not SIGBUS (signal 7, exit 135).
    func testTruncatedModelUnderGenerateExitsWithTheFileName() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qlm-sigbus-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let copy = dir.appendingPathComponent("model.qlm")
        try FileManager.default.copyItem(at: try Self.smolQ8(), to: copy)
        let p = Process()
        p.executableURL = try Executables.url("run")
        p.arguments = ["generate", copy.path, "--prompt", "Once upon a time", "--max-tokens", "400", "--temperature", "0", "--threads", "1"]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Wait for the first generated text (the weights are in use), then stop it, cut the
        // file to its first page and let it go on: its next read of a cut page faults.
        _ = out.fileHandleForReading.availableData
        kill(p.processIdentifier, SIGSTOP)
        XCTAssertEqual(truncate(copy.path, 4096), 0)
        kill(p.processIdentifier, SIGCONT)
        DispatchQueue.global().async { while !out.fileHandleForReading.availableData.isEmpty {} }
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit, "ended by signal \(p.terminationStatus): \(errText)")
        XCTAssertEqual(p.terminationStatus, 74, errText)
        XCTAssertTrue(errText.contains("Error: \(copy.path): the file changed while it was mapped"), errText)
    }

    /// Row 3: the heap merge gives run.c's ids (its quadratic rescan, `encodeByRescan`) on
    /// random inputs (pieces of the vocabulary, stray bytes, repeats that tie scores) and on a
    /// long story text.
    func testLlama2cHeapMergeEqualsTheRescan() throws {
        let t = try Llama2cTokenizer(path: SharedData.path("models/stories260K/tok512.bin").path, vocabSize: 512)
        var rng = SplitMix64(seed: 25)
        var inputs: [[UInt8]] = []
        for _ in 0 ..< 300 {
            var b: [UInt8] = []
            for _ in 0 ..< Int(rng.next() % 40) {
                switch rng.next() % 4 {
                case 0: b += t.pieces[Int(rng.next() % 512)].filter { $0 != 0 }
                case 1: b.append(UInt8(truncatingIfNeeded: rng.next()))
                case 2: b += Array("aaaa".utf8)
                default: b += Array(" the".utf8)
                }
            }
            inputs.append(b)
        }
        let story = try Data(contentsOf: SharedData.path("data/tinystories/tinystories_valid_first1000.txt"))
        inputs.append([UInt8](story.prefix(1500)))
        for b in inputs {
            XCTAssertEqual(t.encode(bytes: b, bos: true, eos: false), t.encodeByRescan(bytes: b, bos: true), "input \(b.prefix(40))")
        }
    }

    /// Row 4: sizes past the loader's limits are refused by name before anything is allocated;
    /// a total past 2^63 bytes says so.
    func testKVBudgetRefusesAbsurdSizes() throws {
        let r = try Executables.run("run", ["kv-budget", "--layers", "99999999999", "--kv-heads", "12", "--head-dim", "64", "--ctx", "1024"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains("--layers 99999999999 is outside 1...1024"), r.stderr)
        let big = try Executables.run("run", ["kv-budget", "--layers", "1024", "--kv-heads", "1024", "--head-dim", "1024", "--ctx", "1048576",
                                              "--tokens", "9000000000000000"])
        XCTAssertEqual(big.status, 64, big.stderr)
        XCTAssertTrue(big.stderr.contains("overflow"), big.stderr)
        let ok = try Executables.run("run", ["kv-budget", "--layers", "12", "--kv-heads", "12", "--head-dim", "64", "--ctx", "1024", "--json"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("\"bytes\":[18874368,"), ok.stdout) // 12 layers × 2 × 12 heads × 128 B × 512
    }
}
