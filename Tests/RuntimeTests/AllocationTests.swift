import Foundation
import TestSupport
import XCTest

/// The per-token decode loop (forward pass + argmax) must not allocate: a run decoding 320
/// tokens makes the same number of malloc calls as one decoding 64, within a few one-offs.
/// Counted with an LD_PRELOAD shim (Tests/Fixtures/malloc_count) around `run bench`.
final class AllocationTests: XCTestCase {
    func run(_ exe: String, _ args: [String], env: [String: String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: e, as: UTF8.self))
    }

    func mallocCalls(_ model: URL, gen: Int, extra: [String], shim: String, runExe: String) throws -> Int {
        let (status, err) = try run(runExe, ["bench", model.path, "--threads", "2", "--prompt-tokens", "8", "--gen-tokens", "\(gen)",
                                             "--reps", "1", "--probe-bytes", "1048576"] + extra, env: ["LD_PRELOAD": shim])
        XCTAssertEqual(status, 0, err)
        guard let line = err.split(separator: "\n").last(where: { $0.hasPrefix("MALLOC_CALLS") }), let n = Int(line.split(separator: " ")[1]) else {
            throw SharedData.Missing(description: "the malloc shim printed nothing: \(err.suffix(300))")
        }
        return n
    }

    func testDecodeLoopDoesNotAllocate() throws {
        let root = SharedData.packageRoot
        let runExe = root.appendingPathComponent(".build/release/run").path
        guard FileManager.default.isExecutableFile(atPath: runExe) else {
            throw SharedData.Missing(description: "\(runExe) is missing: build with `swift build -c release --build-tests` first")
        }
        let shim = Fixtures.tempRoot.appendingPathComponent("malloc_count.so").path
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        cc.arguments = ["cc", "-O2", "-shared", "-fPIC", "-o", shim,
                        root.appendingPathComponent("Tests/Fixtures/malloc_count/malloc_count.c").path, "-ldl"]
        try cc.run()
        cc.waitUntilExit()
        XCTAssertEqual(cc.terminationStatus, 0, "cc could not build the malloc shim")
        let cases: [(URL, [String])] = [
            (try Fixtures.stories(.q4_0), []),
            (try Fixtures.stories(.q8_0), ["--attention", "banded:16", "--sinks", "2", "--kv-type", "q8_0"]),
            (try Fixtures.gpt2(.q8_0), []),
        ]
        for (model, extra) in cases {
            let short = try mallocCalls(model, gen: 32, extra: extra, shim: shim, runExe: runExe)
            let long = try mallocCalls(model, gen: 96, extra: extra, shim: shim, runExe: runExe)
            // 64 more decoded tokens; a handful of one-off allocations (lazy runtime metadata) are allowed.
            XCTAssertLessThanOrEqual(long - short, 8, "\(model.lastPathComponent) \(extra): \(long - short) more mallocs for 64 more tokens")
        }
    }
}
