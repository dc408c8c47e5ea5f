import CKernels
import Foundation
import Quant
import Runtime
import TestSupport
import XCTest

/// The hostile-input audit of issue 25, one test per finding (rows 6-9 and 11 of its table):
/// files whose numbers lie, inputs of the wrong format, interrupted writes, hostile names.
final class HostileInputTests: XCTestCase {
    // MARK: editing a .qlm while keeping its checksums right (a deliberate edit, not corruption)

    private func u32(_ b: [UInt8], _ o: Int) -> Int { Int(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) }) }
    private func u64(_ b: [UInt8], _ o: Int) -> Int { Int(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt64.self) }) }
    private func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { for i in 0 ..< 4 { b[o + i] = $0[i] } } }
    private func crc(_ b: [UInt8], _ lo: Int, _ n: Int) -> UInt32 { b.withUnsafeBytes { qlm_crc32c(0, $0.baseAddress! + lo, n) } }

    /// A copy of `src` with its metadata text edited and/or its table records edited (record
    /// index, 128 bytes), every checksum recomputed.
    private func edited(_ src: URL, _ name: String, json: ((String) -> String)? = nil,
                        records: ((inout [UInt8], _ tableOffset: Int, _ count: Int) -> Void)? = nil) throws -> URL {
        var b = try readBytes(src)
        if let json {
            let metaLen = u32(b, 24), tableOff = u64(b, 32)
            let text = json(String(decoding: b[64 ..< 64 + metaLen], as: UTF8.self))
            let new = Array(text.utf8)
            precondition(64 + new.count <= tableOff, "edited metadata does not fit the reserved space")
            for i in 64 ..< tableOff { b[i] = 0 }
            b.replaceSubrange(64 ..< 64 + new.count, with: new)
            put32(&b, 24, UInt32(new.count))
            put32(&b, 28, crc(b, 64, new.count))
        }
        if let records {
            let tableOff = u64(b, 32), tableLen = u32(b, 40)
            records(&b, tableOff, tableLen / 128)
            put32(&b, 44, crc(b, tableOff, tableLen))
        }
        let out = try makeTempDir(self, "hostile").appendingPathComponent(name)
        try Data(b).write(to: out)
        return out
    }

    private func replacing(_ pattern: String, _ with: String) -> (String) -> String {
        { s in
            let r = s.replacingOccurrences(of: pattern, with: with, options: .regularExpression)
            precondition(r != s, "pattern \(pattern) not found in the metadata")
            return r
        }
    }

    private func load(_ url: URL, budget: Int? = nil) throws {
        _ = try LoadedModel(path: url.path, options: LoadOptions(threads: 1, memoryBudget: budget))
    }

    // MARK: row 6: metadata numbers against the tensors

    func testLayerCountMustMatchTheBlocks() throws {
        let qlm = try Stories.cached(.q8_0) // 5 blocks
        XCTAssertNoThrow(try load(qlm))
        let four = try edited(qlm, "n4.qlm", json: replacing(#""n_layer" : 5"#, #""n_layer" : 4"#))
        assertQuantError([four.path, "belongs to block 4", "n_layer is 4"]) { try load(four) }
        let six = try edited(qlm, "n6.qlm", json: replacing(#""n_layer" : 5"#, #""n_layer" : 6"#))
        assertQuantError([six.path, "block 5 lacks"]) { try load(six) }
    }

    func testNonFiniteScalesAreRefused() throws {
        let qlm = try Stories.cached(.q8_0)
        let f = try QLMFile(qlm)
        let t = try XCTUnwrap(f.tensors.first { $0.type == .q8_0 && $0.rows >= 4 })
        for (label, half) in [("nan", UInt16(0x7E00)), ("inf", UInt16(0x7C00)), ("-inf", UInt16(0xFC00))] {
            var b = try readBytes(qlm)
            // The scale of row 3's first block (q8_0: fp16 scale, then 32 codes).
            let at = t.offset + 3 * t.rowBytes
            b[at] = UInt8(half & 0xFF); b[at + 1] = UInt8(half >> 8)
            let tensorCRC = crc(b, t.offset, t.storedLength)
            let src = try makeTempDir(self, "scales").appendingPathComponent("src.qlm")
            try Data(b).write(to: src)
            let idx = f.tensors.firstIndex(of: t)!
            let bad = try edited(src, "\(label).qlm") { b, off, _ in self.put32(&b, off + idx * 128 + 68, tensorCRC) }
            assertQuantError([bad.path, t.name, "row 3", "infinite or NaN"]) { try load(bad) }
            // --verify finds it too, and so does a budgeted (streamed) load's verify pass.
            assertQuantError([bad.path, t.name, "row 3"]) { try QLMFile(bad).verify(try QLMFile(bad).info(t.name)) }
        }
    }

    func testRelabelledRowGroupTypeIsRefused() throws {
        // q4_0 bytes relabelled q4_0x8 (same size, so the table cannot tell): read in the group
        // layout, code bytes land in scale fields and some are infinite or NaN.
        let qlm = try Stories.cached(.q4_0)
        let f = try QLMFile(qlm)
        let idx = try XCTUnwrap(f.tensors.firstIndex { $0.type == .q4_0 && $0.rows == 172 })
        let bad = try edited(qlm, "relabel.qlm") { b, off, _ in b[off + idx * 128 + 64] = UInt8(QuantType.q4_0x8.rawValue) }
        assertQuantError([bad.path, f.tensors[idx].name, "infinite or NaN"]) { try load(bad) }
    }

    func testUnknownFormatVersionIsRefused() throws {
        let qlm = try Stories.cached(.q8_0)
        let v2 = try edited(qlm, "v2.qlm", json: replacing(#""format_version" : 1"#, #""format_version" : 2"#))
        assertQuantError([v2.path, "version 2", "reads quantlm version 1"]) { _ = try QLMFile(v2) }
    }

    // MARK: row 7: ranges

    func testRotaryBaseAndWindowPatternRanges() throws {
        let qlm = try Stories.cached(.q8_0)
        for v in ["0", "-1", "1e+30"] {
            let bad = try edited(qlm, "theta\(v).qlm", json: replacing(#""rope_theta" : [0-9.e+]+"#, "\"rope_theta\" : \(v)"))
            assertQuantError([bad.path, "rope_theta"]) { _ = try QLMFile(bad) }
        }
        let swp = try edited(qlm, "swp.qlm", json: replacing(#""hparams" : \{"#, #""hparams" : { "sliding_window_pattern" : 0,"#))
        assertQuantError([swp.path, "sliding_window_pattern 0"]) { _ = try QLMFile(swp) }
    }

    func testGGUFRotaryBaseRange() throws {
        let dir = try makeTempDir(self, "ggufrope")
        for v: Float in [0, -1, 1e30, .nan, .infinity] {
            var g = GGUFBuilder.tinyLlama()
            let i = g.kvs.firstIndex { $0.0 == "llama.rope.freq_base" }!
            g.kvs[i].1 = .f32(v)
            let u = dir.appendingPathComponent("rope-\(v).gguf")
            try Data(g.build()).write(to: u)
            assertQuantError([u.path, "rope_theta"]) { _ = try Checkpoint.read(u, formats: Architectures.formats) }
        }
    }

    // MARK: row 8: the reader by magic

    func testUnrecognisedInputsSayWhatWasExpected() throws {
        let dir = try makeTempDir(self, "magic")
        var g = GGUFBuilder.tinyLlama()
        var bytes = g.build()
        bytes[3] = UInt8(ascii: "X") // "GGUX"
        let damaged = dir.appendingPathComponent("damaged.gguf")
        try Data(bytes).write(to: damaged)
        assertQuantError([damaged.path, "unrecognised format (expected GGUF, .qlm, llama2.c .bin or an HF directory)"]) {
            _ = try Checkpoint.read(damaged, formats: Architectures.formats)
        }
        let empty = dir.appendingPathComponent("empty")
        try Data().write(to: empty)
        assertQuantError([empty.path, "unrecognised format"]) { _ = try Checkpoint.read(empty, formats: Architectures.formats) }
        let qlm = dir.appendingPathComponent("model.qlm")
        try FileManager.default.copyItem(at: try Stories.cached(.q8_0), to: qlm)
        assertQuantError([qlm.path, "already a QuantLM .qlm model"]) { _ = try Checkpoint.read(qlm, formats: Architectures.formats) }
        // A llama2.c .bin still gets the reader's own messages.
        let emptyBin = dir.appendingPathComponent("empty.bin")
        try Data().write(to: emptyBin)
        assertQuantError([emptyBin.path, "28-byte header"]) { _ = try Checkpoint.read(emptyBin, formats: Architectures.formats) }
    }

    // MARK: row 9: temporary files

    func testStaleTemporaryFilesOfTheTargetAreRemoved() throws {
        let dir = try makeTempDir(self, "stale")
        let out = dir.appendingPathComponent("out.qlm")
        // A PID that is surely dead: a child that has exited and been reaped.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run(); p.waitUntilExit()
        let dead = dir.appendingPathComponent(".out.qlm.tmp-\(p.processIdentifier)")
        let live = dir.appendingPathComponent(".out.qlm.tmp-1")        // PID 1 is alive
        let other = dir.appendingPathComponent(".other.qlm.tmp-\(p.processIdentifier)") // another target's
        for u in [dead, live, other] { try Data([1, 2, 3]).write(to: u) }
        _ = try Stories.convert(to: out, type: .q8_0)
        let fm = FileManager.default
        XCTAssertFalse(fm.fileExists(atPath: dead.path), "a dead writer's temporary file stays")
        XCTAssertTrue(fm.fileExists(atPath: live.path), "a live PID's temporary file was removed")
        XCTAssertTrue(fm.fileExists(atPath: other.path), "another target's temporary file was removed")
        XCTAssertTrue(fm.fileExists(atPath: out.path))
    }

    /// SIGINT and SIGTERM during `convert` leave neither the target nor a temporary file.
    /// Gemma 3 270M requantized to q4_0 on one thread writes its tensors for about 1 s after
    /// the temporary file appears (0.95 s on Zen 4); SmolLM2 took only 0.26 s, so a CI run
    /// once renamed the target before the signal came. The signal now goes 50 ms after the
    /// temporary file appears.
    func testInterruptedConvertRemovesItsTemporaryFile() throws {
        let gguf = try SharedData.model("gemma-3-270m-q4_k_m.gguf")
        let dir = try makeTempDir(self, "sigconvert")
        for sig in [SIGINT, SIGTERM] {
            let out = dir.appendingPathComponent("out-\(sig).qlm")
            let p = Process()
            p.executableURL = try Executables.url("convert")
            p.arguments = [gguf.path, "-o", out.path, "--type", "q4_0", "--quiet", "--threads", "1"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            let tmp = dir.appendingPathComponent(".\(out.lastPathComponent).tmp-\(p.processIdentifier)")
            let deadline = Date().addingTimeInterval(60)
            while !FileManager.default.fileExists(atPath: tmp.path) && p.isRunning && Date() < deadline { usleep(10_000) }
            XCTAssertTrue(p.isRunning, "convert finished before it could be interrupted")
            usleep(50_000) // into the tensors
            let renamedEarly = FileManager.default.fileExists(atPath: out.path)
            kill(p.processIdentifier, sig)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationReason, .uncaughtSignal)
            XCTAssertEqual(p.terminationStatus, sig, "convert should end by the signal it got")
            XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.path), "signal \(sig) left \(tmp.path)")
            XCTAssertFalse(renamedEarly, "convert renamed \(out.path) into place before the signal: the test needs a slower conversion")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "signal \(sig) left a target \(out.path)")
        }
    }

    // MARK: row 11: messages

    func testDeepMetadataSaysItIsTooDeep() throws {
        let qlm = try Stories.cached(.q8_0)
        let deep = String(repeating: "[", count: 1900) + String(repeating: "]", count: 1900)
        let bad = try edited(qlm, "deep.qlm", json: replacing(#"^\{"#, "{ \"x\" : \(deep),"))
        assertQuantError([bad.path, "metadata nests 1901 levels deep"]) { _ = try QLMFile(bad) }
    }

    func testBinaryTensorNameIsEscapedAndCut() throws {
        let dir = try makeTempDir(self, "binname")
        var g = GGUFBuilder.tinyLlama()
        var rng = SplitMix64(seed: 25)
        let raw = (0 ..< 255).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let name = String(decoding: raw, as: UTF8.self)
        g.tensors.append((name, [32], 0, [UInt8](repeating: 0, count: 128)))
        let u = dir.appendingPathComponent("binname.gguf")
        try Data(g.build()).write(to: u)
        let e = assertQuantError([u.path, "unknown tensor", "(\(name.utf8.count) bytes)"]) { _ = try Checkpoint.read(u, formats: Architectures.formats) }
        if let e {
            XCTAssertLessThan(e.description.count, u.path.count + 160, e.description)
            XCTAssertFalse(e.description.unicodeScalars.contains { $0.value < 0x20 || $0 == "\u{FFFD}" }, e.description)
        }
    }

    func testConfigNumberOfTheWrongType() throws {
        let dir = try makeTempDir(self, "hfwrongtype")
        _ = try SyntheticGPT2.write(dir)
        let cfgURL = dir.appendingPathComponent("config.json")
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: cfgURL)) as! [String: Any]
        cfg["n_embd"] = "\(cfg["n_embd"]!)"
        try JSONSerialization.data(withJSONObject: cfg).write(to: cfgURL)
        assertQuantError([cfgURL.path, "n_embd must be a number"]) { _ = try Checkpoint.read(dir, formats: Architectures.formats) }
    }
}
