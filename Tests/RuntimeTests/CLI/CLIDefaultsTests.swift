import Foundation
import TestSupport
import XCTest

/// Defaults a user gets from the `run` CLI without flags.
final class CLIDefaultsTests: XCTestCase {
    func runJSON(_ args: [String]) throws -> [String: Any] {
        let r = try Executables.run("run", args)
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return try XCTUnwrap(obj, "not a JSON object: \(r.stdout.prefix(300))")
    }

    /// The KV cache is f16 unless --kv-type says otherwise (half the bytes of f32), and the
    /// greedy text of stories260K is the same with either.
    func testGenerateDefaultsToF16KVCache() throws {
        let model = try Fixtures.stories(.q8_0).path
        let common = ["generate", model, "--prompt", "Once upon a time", "--max-tokens", "24", "--temperature", "0", "--threads", "1", "--json"]
        let def = try runJSON(common)
        let f32 = try runJSON(common + ["--kv-type", "f32"])
        XCTAssertEqual(def["kv_type"] as? String, "f16")
        XCTAssertEqual(f32["kv_type"] as? String, "f32")
        let db = try XCTUnwrap(def["kv_cache_bytes"] as? Int), fb = try XCTUnwrap(f32["kv_cache_bytes"] as? Int)
        XCTAssertEqual(db * 2, fb)
        let dt = (def["result"] as? [String: Any])?["text"] as? String, ft = (f32["result"] as? [String: Any])?["text"] as? String
        XCTAssertNotNil(dt)
        XCTAssertEqual(dt, ft)
    }

    /// `--speculative lookup`: the same greedy text, and the acceptance rate and tokens per pass
    /// in --json and in the closing line; bad combinations are usage errors.
    func testGenerateSpeculativeReportsAcceptance() throws {
        let model = try Fixtures.stories(.q8_0).path
        let common = ["generate", model, "--prompt", "Lily had a cat. Lily had a cat. Lily had a", "--max-tokens", "60",
                      "--temperature", "0", "--threads", "1"]
        let plain = try runJSON(common + ["--json"])
        let spec = try runJSON(common + ["--json", "--speculative", "lookup", "--draft-len", "5"])
        let pr = try XCTUnwrap(plain["result"] as? [String: Any]), sr = try XCTUnwrap(spec["result"] as? [String: Any])
        XCTAssertEqual(pr["tokens"] as? [Int], sr["tokens"] as? [Int])
        XCTAssertNil(pr["speculative"])
        let st = try XCTUnwrap(sr["speculative"] as? [String: Any])
        XCTAssertEqual(st["kind"] as? String, "lookup")
        XCTAssertEqual(st["draft_length"] as? Int, 5)
        let passes = try XCTUnwrap(st["passes"] as? Int), accepted = try XCTUnwrap(st["accepted"] as? Int)
        XCTAssertEqual(passes + accepted, 59, "60 tokens: the first from the prompt, then accepted + 1 per pass")
        XCTAssertEqual(try XCTUnwrap(st["tokens_per_pass"] as? Double), Double(passes + accepted) / Double(passes), accuracy: 1e-9)
        XCTAssertNotNil(st["acceptance_rate"] as? Double)
        let r = try Executables.run("run", common + ["--speculative", "lookup"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // The default draft length: passes of 1 + k rows within the few-token kernels (QLM_FEW_MAX = 8).
        XCTAssertTrue(r.stderr.contains("speculative lookup (k ≤ 7):") && r.stderr.contains("tok/pass"), r.stderr)
        for bad in [["--speculative", "draft"], ["--speculative", "medusa"], ["--draft", model], ["--speculative", "lookup", "--draft-len", "0"]] {
            let b = try Executables.run("run", common + bad)
            XCTAssertNotEqual(b.status, 0, "\(bad) should be rejected")
        }
    }

    /// `run serve` refuses bad flags before it loads anything: exit 64 and a line naming the flag
    /// and the value.
    func testServeRejectsBadFlags() throws {
        let model = try Fixtures.stories(.q8_0).path
        for (bad, says) in [(["--prefill-chunk", "0"], "--prefill-chunk must be 1...128"), (["--prefill-chunk", "129"], "got 129"),
                            (["--parallel", "0"], "--parallel must be 1...64"), (["--speculative", "draft"], "lookup only"),
                            (["--speculative", "lookup", "--draft-len", "33"], "--draft-len must be 1...32")] {
            let r = try Executables.run("run", ["serve", model, "--port", "0"] + bad)
            XCTAssertEqual(r.status, 64, "\(bad): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(says), "\(bad): \(r.stderr)")
        }
    }
}
