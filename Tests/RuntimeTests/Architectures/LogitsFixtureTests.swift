import CKernels
import CKernels.Testing
import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

/// Logits pinned bit for bit across refactors: the SHA-256 of every logit of a batched prefill
/// and of a few token-by-token decode steps, per model file and per CPU path, against
/// Tests/Fixtures/logits_sha256.json (scalar: recorded at commit e88f408, before the architecture
/// step; avx2: re-recorded when attention got AVX2 kernels, its "recorded_on" says so).
/// The scalar path's hashes hold on any x86-64 machine and are always checked; a SIMD path's
/// are checked where the fixture has them (it names the CPU they were recorded on).
/// Re-record (only when a change is meant to move logits): QLM_RECORD_LOGITS=1.
final class LogitsFixtureTests: XCTestCase {
    static let prompt: [Int32] = [1, 403, 407, 261, 378, 436, 271, 261, 445, 260, 340, 267]
    static let gpt2Prompt: [Int32] = [464, 2068, 7586, 50256, 18045, 625, 262, 16931, 3290, 13, 11, 290]

    func hash(_ url: URL, _ ids: [Int32]) throws -> String {
        let lm = try Fixtures.load(url)
        var sha = SHA256(hardware: false)
        // Prefill of the first 8 tokens, every row's logits.
        try lm.model.forward(Array(ids.prefix(8)), startPos: 0, logitRows: 0 ..< 8) { _, l in sha.update(UnsafeRawBufferPointer(l)) }
        // Then the rest one token at a time (the matvec path).
        for (i, id) in ids.enumerated().dropFirst(8) {
            try lm.model.forward([id], startPos: i, logitRows: 0 ..< 1) { _, l in sha.update(UnsafeRawBufferPointer(l)) }
        }
        return sha.finalize()
    }

    func testLogitsAreBitIdenticalToTheRecordedOnes() throws {
        let cases: [(String, () throws -> URL, [Int32])] = [
            ("stories-f32", { try Fixtures.stories(.f32) }, Self.prompt),
            ("stories-q8_0", { try Fixtures.stories(.q8_0) }, Self.prompt),
            ("stories-q4_0", { try Fixtures.stories(.q4_0) }, Self.prompt),
            ("gpt2-f32", { try Fixtures.gpt2(.f32) }, Self.gpt2Prompt),
            ("gpt2-q8_0", { try Fixtures.gpt2(.q8_0) }, Self.gpt2Prompt),
            ("gpt2-q4_0x8", { try Fixtures.gpt2(.q4_0x8) }, Self.gpt2Prompt),
        ]
        let fixtureURL = SharedData.packageRoot.appendingPathComponent("Tests/Fixtures/logits_sha256.json")
        let record = ProcessInfo.processInfo.environment["QLM_RECORD_LOGITS"] == "1"
        var fixture = (try? JSONSerialization.jsonObject(with: Data(contentsOf: fixtureURL))) as? [String: Any] ?? [:]
        let best = qlm_best_path()
        var paths: [Int32] = [Int32(QLM_PATH_SCALAR.rawValue)]
        if best != paths[0] { paths.append(best) }
        var checked = 0
        for p in paths {
            let name = String(cString: qlm_path_name(p))
            qlm_set_path(p)
            defer { qlm_set_path(best) }
            var got: [String: String] = [:]
            for (key, url, ids) in cases { got[key] = try hash(url(), ids) }
            if record {
                fixture[name] = got
                continue
            }
            guard let want = fixture[name] as? [String: String] else {
                XCTAssertNotEqual(p, Int32(QLM_PATH_SCALAR.rawValue), "the fixture has no scalar-path hashes")
                print("LogitsFixtureTests: no recorded hashes for the \(name) path on this CPU; checked the scalar path only")
                continue
            }
            for (key, _, _) in cases {
                XCTAssertEqual(got[key], want[key], "\(key) on the \(name) path: logits differ from the recorded ones")
                checked += 1
            }
        }
        if record {
            fixture["recorded_on"] = "recorded on the CPU paths \(paths.map { String(cString: qlm_path_name($0)) }); say at which commit and why"
            let data = try JSONSerialization.data(withJSONObject: fixture, options: [.prettyPrinted, .sortedKeys])
            try data.write(to: fixtureURL)
            XCTFail("recorded \(fixtureURL.path); run again without QLM_RECORD_LOGITS")
        } else {
            XCTAssertGreaterThanOrEqual(checked, cases.count)
        }
    }
}
