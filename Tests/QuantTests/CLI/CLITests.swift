import Foundation
import Quant
import TestSupport
import XCTest

/// Test 5: the built `convert` and `run` executables, end to end.
final class CLITests: XCTestCase {
    private func convertStories(_ dir: URL, _ extra: [String]) throws -> (URL, Executables.Result) {
        let out = dir.appendingPathComponent("stories.qlm")
        let r = try Executables.run("convert", [try Stories.model().path, "--tokenizer", try Stories.tokenizer().path,
                                                "-o", out.path, "--quiet"] + extra)
        return (out, r)
    }

    private func json(_ s: String, file: StaticString = #filePath, line: UInt = #line) -> [String: Any] {
        guard let o = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] else {
            XCTFail("not a JSON object: \(s.prefix(300))", file: file, line: line)
            return [:]
        }
        return o
    }

    func testConvertInspectVerify() throws {
        let dir = try makeTempDir(self, "cli")
        let (out, r) = try convertStories(dir, ["--type", "q4_0", "--zstd", "3", "--zstd-chunk", "4096", "--json", "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.split(separator: "\n").count, 1, "--json prints one line")
        let s = json(r.stdout)
        for key in ["output", "tensors", "parameters", "bytes_in", "bytes_out", "raw_tensor_bytes", "stored_tensor_bytes",
                    "bits_per_weight", "stored_bits_per_weight", "compression_ratio", "seconds", "mb_per_second"] {
            XCTAssertNotNil(s[key], "summary lacks \(key)")
        }
        XCTAssertEqual(s["tensors"] as? Int, 48)
        XCTAssertEqual(s["bytes_in"] as? Int, 1_056_540 - 28 - 2 * 512 * 4 * 4) // every weight float; not header or freq_cis
        XCTAssertEqual(s["bytes_out"] as? Int, try readBytes(out).count)
        let bpw = s["bits_per_weight"] as? Double ?? 0
        XCTAssertGreaterThan(bpw, 4.5); XCTAssertLessThan(bpw, 5.0) // q4_0 matrices + f32 norms + padded w2 rows

        let ins = try Executables.run("convert", ["inspect", out.path, "--json"])
        XCTAssertEqual(ins.status, 0, ins.stderr)
        let report = json(ins.stdout)
        let tensors = report["tensors"] as? [[String: Any]] ?? []
        XCTAssertEqual(tensors.count, 48)
        let oracle = Llama2cOracle(try readBytes(try Stories.model()))
        XCTAssertEqual(tensors.compactMap { $0["name"] as? String }, oracle.tensors.map(\.name) + ["tokenizer"])
        XCTAssertEqual(tensors.first { $0["name"] as? String == "layers.0.feed_forward.w2.weight" }?["raw_length"] as? Int, 64 * 6 * 18)
        XCTAssertEqual((report["metadata"] as? [String: Any])?["architecture"] as? String, "llama")
        let text = try Executables.run("convert", ["inspect", out.path])
        XCTAssertEqual(text.status, 0)
        XCTAssertTrue(text.stdout.contains(Stories.sha256), "inspect shows provenance")

        let v = try Executables.run("convert", ["verify", out.path])
        XCTAssertEqual(v.status, 0, v.stderr)
        XCTAssertTrue(v.stdout.contains("OK, 48 tensors"), v.stdout)
        let vj = try Executables.run("convert", ["verify", out.path, "--json"])
        XCTAssertEqual(json(vj.stdout)["ok"] as? Bool, true)

        // The same file generates text (greedy stories260K begins with this sentence).
        let g = try Executables.run("run", ["generate", out.path, "--prompt", "Once upon a time", "--temperature", "0", "--max-tokens", "8", "--threads", "2"])
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertTrue(g.stdout.hasPrefix("Once upon a time"), g.stdout)
    }

    func testCorruptFilesAreReported() throws {
        let dir = try makeTempDir(self, "clicorrupt")
        let (out, r) = try convertStories(dir, ["--type", "q8_0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let bytes = try readBytes(out)
        let f = try QLMFile(out)
        let tableOff = Int(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 32, as: UInt64.self) })
        // Cut inside the header, the metadata, the table, the data, and one byte short.
        let cuts = [0, 10, 63, 64 + 100, tableOff + 200, f.dataOffset + 1000, bytes.count / 2, bytes.count - 1]
        for cut in cuts {
            let u = dir.appendingPathComponent("cut\(cut).qlm")
            try Data(bytes.prefix(cut)).write(to: u)
            let v = try Executables.run("convert", ["verify", u.path])
            XCTAssertNotEqual(v.status, 0, "cut at \(cut)")
            XCTAssertTrue(v.stderr.contains(u.path), "cut at \(cut): \(v.stderr)")
            XCTAssertEqual(v.stderr.split(separator: "\n").count, 1, "one line: \(v.stderr)")
            let g = try Executables.run("run", ["generate", u.path, "--prompt", "Once", "--max-tokens", "2"])
            XCTAssertNotEqual(g.status, 0, "run generate on a file cut at \(cut)")
            XCTAssertTrue(g.stderr.contains(u.path), "run: cut at \(cut): \(g.stderr)")
        }
        // One flipped byte inside a tensor's data: verify exits 1 and names the tensor.
        let t = try f.info("layers.3.attention.wv.weight")
        var flipped = bytes
        flipped[t.offset + t.storedLength / 2] ^= 0x10
        let fu = dir.appendingPathComponent("flipped.qlm")
        try Data(flipped).write(to: fu)
        let v = try Executables.run("convert", ["verify", fu.path])
        XCTAssertEqual(v.status, 1)
        XCTAssertTrue(v.stderr.contains(fu.path) && v.stderr.contains("layers.3.attention.wv.weight") && v.stderr.contains("checksum mismatch"), v.stderr)
        XCTAssertEqual(v.stderr.split(separator: "\n").count, 1, v.stderr)
        // run --verify refuses it too.
        let g = try Executables.run("run", ["generate", fu.path, "--verify", "--prompt", "Once", "--max-tokens", "2"])
        XCTAssertNotEqual(g.status, 0)
        XCTAssertTrue(g.stderr.contains("layers.3.attention.wv.weight"), g.stderr)
    }

    func testBadFlags() throws {
        let dir = try makeTempDir(self, "cliflags")
        let bin = try Stories.model().path, tok = try Stories.tokenizer().path
        let out = dir.appendingPathComponent("o.qlm").path
        // (arguments, text the first error line must contain)
        let cases: [([String], String)] = [
            ([bin, "--tokenizer", tok, "-o", out, "--type", "q9_9"], "unknown --type 'q9_9'"),
            ([bin, "--tokenizer", tok, "-o", out, "--zstd", "0"], "--zstd level must be 1...22"),
            ([bin, "--tokenizer", tok, "-o", out, "--keep", "nonsense"], "'nonsense' is not GLOB=TYPE"),
            ([bin, "--tokenizer", tok, "-o", out, "--keep", "wte.weight=q9_9"], "unknown type 'q9_9'"),
            ([bin, "--tokenizer", tok, "-o", out, "--keep", "nomatch*=q8_0"], "pattern 'nomatch*' matches no tensor"),
            ([bin, "--tokenizer", tok, "-o", dir.appendingPathComponent("o.bin").path], "should end in .qlm"),
            ([dir.appendingPathComponent("missing.bin").path, "--tokenizer", tok, "-o", out], "missing.bin: no such file"),
            ([bin, "--tokenizer", dir.appendingPathComponent("missing-tok.bin").path, "-o", out], "missing-tok.bin"),
            ([bin, "--tokenizer", tok, "-o", out, "--threads", "0"], "--threads must be 1...256"),
        ]
        for (args, expect) in cases {
            let r = try Executables.run("convert", args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            let first = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
            XCTAssertTrue(first.lowercased().hasPrefix("error: "), "\(args): \(r.stderr)")
            XCTAssertTrue(first.contains(expect), "\(args): first line '\(first)' lacks '\(expect)'")
            // Usage errors (ArgumentParser) append the usage line and a help hint; QuantLM's own
            // errors are exactly one line.
            XCTAssertLessThanOrEqual(r.stderr.split(separator: "\n").count, 3, r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(args) left an output file")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "no temp files left")
        let v = try Executables.run("convert", ["verify", dir.appendingPathComponent("none.qlm").path])
        XCTAssertNotEqual(v.status, 0)
        XCTAssertTrue(v.stderr.contains("none.qlm"), v.stderr)
    }

    /// A synthetic HF GPT-2 directory through the CLI, with the real GPT-2 tokenizer payload.
    func testHFGPT2ThroughCLI() throws {
        let dir = try makeTempDir(self, "clihf")
        let ck = dir.appendingPathComponent("gpt2")
        try SyntheticGPT2.write(ck, dtype: "F16", prefix: "transformer.", shards: 2) // (random BF16 bit patterns reach 1e38: too large for q8_0)
        let out = dir.appendingPathComponent("g.qlm")
        let r = try Executables.run("convert", [ck.path, "-o", out.path, "--type", "q4_1", "--keep", "wte.weight=q8_0", "--json", "--zstd", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let f = try QLMFile(out)
        XCTAssertEqual(f.metadata.tokenizer.kind, "gpt2-bpe")
        XCTAssertEqual(f.metadata.tokenizer.eos, 50256)
        XCTAssertEqual(f.metadata.quantization.overrides, ["wte.weight=q8_0"])
        XCTAssertEqual(try f.info("wte.weight").type, .q8_0)
        XCTAssertEqual(try f.info("wpe.weight").type, .q4_1)
        let tok = try f.rawBytes("tokenizer")
        XCTAssertEqual(Array(tok.prefix(6)), Array("QLMBPE".utf8))
        XCTAssertEqual(try Executables.run("convert", ["verify", out.path]).status, 0)
        let g = try Executables.run("run", ["generate", out.path, "--prompt", "Hello", "--max-tokens", "3", "--temperature", "0"])
        XCTAssertEqual(g.status, 0, g.stderr) // random weights: any text, but it must load and run
    }
}
