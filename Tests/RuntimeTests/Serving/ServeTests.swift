import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// `run serve` end to end: the server is started here on 127.0.0.1 (a free port), driven by the
/// official `openai` Python client (Tests/server/openai_client_test.py) and by raw sockets with
/// hostile input (Tests/server/hostile_test.py), then stopped with SIGTERM, which must drain and exit 0;
/// Tests/server/chaos_test.py starts servers of its own (slowloris, load, disconnects, signals, a truncated model).
final class ServeTests: XCTestCase {
    /// A running server: its process, port and the stderr it printed.
    final class Server {
        let process = Process()
        let port: Int
        private let errPipe = Pipe()
        private let lock = NSLock()
        private var errText = ""

        init(_ qlm: URL, _ extra: [String] = []) throws {
            process.executableURL = try Executables.url("run")
            process.arguments = ["serve", qlm.path, "--port", "0", "--threads", "2"] + extra
            process.standardError = errPipe
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(60)
            var found: Int?
            while found == nil && Date() < deadline && process.isRunning {
                let d = errPipe.fileHandleForReading.availableData
                if d.isEmpty { break }
                lock.lock(); errText += String(decoding: d, as: UTF8.self); let t = errText; lock.unlock()
                if let r = t.range(of: #"listening on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                    found = Int(t[r].split(separator: ":").last!)
                }
            }
            guard let p = found else {
                process.terminate()
                throw SharedData.Missing(description: "run serve did not start: \(errText)")
            }
            port = p
            // Keep draining stderr so the server never blocks on a full pipe.
            let h = errPipe.fileHandleForReading
            DispatchQueue.global().async { [weak self] in
                while true {
                    let d = h.availableData
                    if d.isEmpty { return }
                    guard let self else { return }
                    self.lock.lock(); self.errText += String(decoding: d, as: UTF8.self); self.lock.unlock()
                }
            }
        }

        var stderr: String { lock.lock(); defer { lock.unlock() }; return errText }

        /// SIGTERM, then the exit status (the server drains in-flight requests first).
        func stop() -> Int32 {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { process.terminate(); return -1 }
            return process.terminationStatus
        }
    }

    func python(_ script: String, _ args: [String]) throws -> Executables.Result {
        let path = SharedData.packageRoot.appendingPathComponent("Tests/server/\(script)").path
        return try Executables.run(url: URL(fileURLWithPath: "/usr/bin/env"), ["python3", path] + args)
    }

    func testOpenAIClientAgainstStories260K() throws {
        let qlm = try Stories.cached(.q8_0)
        let s = try Server(qlm, ["--parallel", "4", "--ctx", "512"])
        let r = try python("openai_client_test.py", ["--base-url", "http://127.0.0.1:\(s.port)/v1", "--model", qlm.lastPathComponent,
                                                     "--run", try Executables.url("run").path, "--qlm", qlm.path])
        XCTAssertEqual(r.status, 0, "openai client test failed:\n\(r.stderr)\n\(r.stdout)\nserver:\n\(s.stderr)")
        XCTAssertTrue(r.stdout.contains("\"ok\": true"), r.stdout)
        XCTAssertEqual(s.stop(), 0, "SIGTERM must drain and exit 0:\n\(s.stderr)")
        XCTAssertTrue(s.stderr.contains("stopped"), s.stderr)
    }

    func testHostileInputLeavesTheServerHealthy() throws {
        let qlm = try Stories.cached(.q8_0)
        let s = try Server(qlm, ["--parallel", "2", "--ctx", "256", "--read-timeout", "2"])
        let r = try python("hostile_test.py", ["--port", "\(s.port)", "--model", qlm.lastPathComponent, "--read-timeout", "2"])
        XCTAssertEqual(r.status, 0, "hostile test failed:\n\(r.stderr)\n\(r.stdout)\nserver:\n\(s.stderr)")
        XCTAssertTrue(s.process.isRunning, "the server died:\n\(s.stderr)")
        XCTAssertEqual(s.stop(), 0, s.stderr)
    }

    /// Chaos (issue 25): slowloris dripping bytes, 64 connections at once, clients hanging up
    /// mid-stream, SIGTERM while streaming, the model file truncated under the server. The
    /// script starts its own servers on copies of the model (Tests/server/chaos_test.py).
    func testChaos() throws {
        let qlm = try Stories.cached(.q8_0)
        let r = try python("chaos_test.py", ["--run", try Executables.url("run").path, "--qlm", qlm.path])
        XCTAssertEqual(r.status, 0, "chaos test failed:\n\(r.stderr)\n\(r.stdout)")
        XCTAssertTrue(r.stdout.contains("\"ok\": true"), r.stdout)
    }

    func testOpenAIClientChatAgainstSmolLM2() throws {
        let gguf = try SharedData.model("SmolLM2-135M-Instruct.Q4_1.gguf")
        let qlm = TestFiles.tempRoot.appendingPathComponent("serve-smollm2-q8_0.qlm")
        if !FileManager.default.fileExists(atPath: qlm.path) {
            let c = try Executables.run("convert", [gguf.path, "-o", qlm.path, "--type", "q8_0", "--quiet"])
            XCTAssertEqual(c.status, 0, c.stderr)
        }
        let s = try Server(qlm, ["--parallel", "4", "--ctx", "256"])
        let r = try python("openai_client_test.py", ["--base-url", "http://127.0.0.1:\(s.port)/v1", "--model", qlm.lastPathComponent,
                                                     "--run", try Executables.url("run").path, "--qlm", qlm.path, "--prompt",
                                                     "The capital of France is", "--tokens", "12", "--chat"])
        XCTAssertEqual(r.status, 0, "openai client test (SmolLM2) failed:\n\(r.stderr)\n\(r.stdout)\nserver:\n\(s.stderr)")
        XCTAssertEqual(s.stop(), 0, s.stderr)
    }
}
