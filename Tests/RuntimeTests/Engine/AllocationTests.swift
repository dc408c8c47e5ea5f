import Foundation
import TestSupport
import XCTest

/// The per-token decode loop (forward pass + argmax) must not allocate: a run decoding 320
/// tokens makes the same number of malloc calls as one decoding 64, within a few one-offs.
/// Counted with an LD_PRELOAD shim (Tests/Fixtures/malloc_count) around `run bench`.
final class AllocationTests: XCTestCase {
    func mallocCalls(_ model: URL, gen: Int, extra: [String], shim: String) throws -> Int {
        let r = try Executables.run("run", ["bench", model.path, "--threads", "2", "--prompt-tokens", "8", "--gen-tokens", "\(gen)",
                                            "--reps", "1", "--probe-bytes", "1048576"] + extra,
                                    environment: ProcessInfo.processInfo.environment.merging(["LD_PRELOAD": shim]) { $1 })
        XCTAssertEqual(r.status, 0, r.stderr)
        let err = r.stderr
        guard let line = err.split(separator: "\n").last(where: { $0.hasPrefix("MALLOC_CALLS") }), let n = Int(line.split(separator: " ")[1]) else {
            throw SharedData.Missing(description: "the malloc shim printed nothing: \(err.suffix(300))")
        }
        return n
    }

    func testDecodeLoopDoesNotAllocate() throws {
        let root = SharedData.packageRoot
        _ = try Executables.url("run")
        let shim = Fixtures.tempRoot.appendingPathComponent("malloc_count.so").path
        let cc = try Executables.run(url: URL(fileURLWithPath: "/usr/bin/env"),
                                     ["cc", "-O2", "-shared", "-fPIC", "-o", shim,
                                      root.appendingPathComponent("Tests/Fixtures/malloc_count/malloc_count.c").path, "-ldl"])
        XCTAssertEqual(cc.status, 0, "cc could not build the malloc shim: \(cc.stderr)")
        let cases: [(URL, [String])] = [
            (try Fixtures.stories(.q4_0), []),
            (try Fixtures.stories(.q8_0), ["--attention", "banded:16", "--sinks", "2", "--kv-type", "q8_0"]),
            (try Fixtures.gpt2(.q8_0), []),
        ]
        for (model, extra) in cases {
            let short = try mallocCalls(model, gen: 32, extra: extra, shim: shim)
            let long = try mallocCalls(model, gen: 96, extra: extra, shim: shim)
            // 64 more decoded tokens; a handful of one-off allocations (lazy runtime metadata) are allowed.
            XCTAssertLessThanOrEqual(long - short, 8, "\(model.lastPathComponent) \(extra): \(long - short) more mallocs for 64 more tokens")
        }
    }
}
