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
}
