import Foundation
import Quant
import Runtime
import XCTest
import TestSupport

/// --memory-budget auto (the default): reading cgroup v1 / v2 limits, the fits-or-stream decision,
/// bench's probes inside a budget, and a child process inside a real memory cgroup.
final class AutoBudgetTests: XCTestCase {
    // MARK: reading the limits

    /// A fake /proc and /sys: path -> contents.
    func reader(_ files: [String: String]) -> (String) -> String? { { files[$0] } }

    let meminfo = "MemTotal:       24683520 kB\nMemFree:        14000000 kB\nMemAvailable:   22000000 kB\n"

    func testCgroupV1LimitUsageAndFilePages() {
        let d = "/sys/fs/cgroup/memory/box/inner"
        let m = MemoryLimit.current(read: reader([
            "/proc/meminfo": meminfo,
            "/proc/self/cgroup": "9:name=systemd:/\n4:memory:/box/inner\n0::/\n",
            "/proc/self/mountinfo": "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
                + "31 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
            d + "/memory.limit_in_bytes": "9223372036854771712\n",
            // The parent's 96 MiB limit reaches the child through the hierarchical figure.
            d + "/memory.stat": "cache 10\nrss 20\nhierarchical_memory_limit 100663296\ntotal_inactive_file 3145728\ntotal_active_file 1048576\n",
            d + "/memory.usage_in_bytes": "20971520\n",
        ]))
        XCTAssertEqual(m.cgroupVersion, 1)
        XCTAssertEqual(m.cgroupPath, d)
        XCTAssertEqual(m.cgroupLimit, 96 << 20)
        XCTAssertEqual(m.cgroupUsage, 20 << 20)
        XCTAssertEqual(m.cgroupFile, 4 << 20)
        XCTAssertEqual(m.hostAvailable, 22_000_000 * 1024)
        // Others hold 20 - 4 (file) - 6 (own anon) = 10 MiB.
        XCTAssertEqual(m.ceiling(ownAnon: 6 << 20), (96 - 10) << 20)
        XCTAssertTrue(m.source.contains("cgroup v1 limit 96.0 MiB"), m.source)
    }

    func testCgroupV2SmallestLimitOnThePath() {
        let m = MemoryLimit.current(read: reader([
            "/proc/meminfo": meminfo,
            "/proc/self/cgroup": "0::/a/b\n",
            "/proc/self/mountinfo": "24 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            "/sys/fs/cgroup/a/b/memory.max": "max\n",
            "/sys/fs/cgroup/a/b/memory.high": "max\n",
            "/sys/fs/cgroup/a/memory.max": "67108864\n",
            "/sys/fs/cgroup/a/b/memory.current": "8388608\n",
            "/sys/fs/cgroup/a/b/memory.stat": "anon 4194304\nfile 2097152\nkernel 1048576\n",
        ]))
        XCTAssertEqual(m.cgroupVersion, 2)
        XCTAssertEqual(m.cgroupLimit, 64 << 20)
        XCTAssertEqual(m.cgroupUsage, 8 << 20)
        XCTAssertEqual(m.cgroupFile, 2 << 20)
        XCTAssertEqual(m.ceiling(ownAnon: 4 << 20), (64 - 2) << 20)
    }

    func testNoCgroupLimitUsesTheHost() {
        let m = MemoryLimit.current(read: reader([
            "/proc/meminfo": meminfo,
            "/proc/self/cgroup": "4:memory:/\n",
            "/proc/self/mountinfo": "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
            "/sys/fs/cgroup/memory/memory.stat": "hierarchical_memory_limit 9223372036854771712\n",
        ]))
        XCTAssertNil(m.cgroupVersion)
        XCTAssertNil(m.cgroupLimit)
        XCTAssertEqual(m.ceiling(ownAnon: 1 << 20), 22_000_000 * 1024 + (1 << 20))
        XCTAssertTrue(m.source.contains("MemAvailable"), m.source)
    }

    func testBudgetSettingParsing() throws {
        XCTAssertEqual(try BudgetSetting.parse("auto"), .auto)
        XCTAssertEqual(try BudgetSetting.parse("none"), .none)
        XCTAssertEqual(try BudgetSetting.parse("OFF"), .none)
        XCTAssertEqual(try BudgetSetting.parse("48M"), .bytes(48 << 20))
        XCTAssertThrowsError(try BudgetSetting.parse("automatic")) { XCTAssertTrue("\($0)".contains("--memory-budget 'automatic'"), "\($0)") }
    }

    func testDecideFitsOrStreams() {
        // 1/12 of the ceiling (at least 6 MiB) stays for the page cache.
        XCTAssertEqual(AutoBudget.pageCacheReserve(ceiling: 48 << 20), 6 << 20)
        XCTAssertEqual(AutoBudget.pageCacheReserve(ceiling: 1200 << 20), 100 << 20)
        XCTAssertNil(AutoBudget.decide(ceiling: 96 << 20, mappedNeed: 88 << 20))
        XCTAssertEqual(AutoBudget.decide(ceiling: 96 << 20, mappedNeed: (88 << 20) + 1), 88 << 20)
        XCTAssertEqual(AutoBudget.decide(ceiling: 48 << 20, mappedNeed: 137 << 20), 42 << 20)
    }

    // MARK: the loader under auto

    func limit(_ bytes: Int) -> MemoryLimit {
        MemoryLimit(cgroupVersion: 1, cgroupPath: "/test", cgroupLimit: bytes, cgroupUsage: 0, cgroupFile: 0,
                    hostAvailable: 1 << 40, hostTotal: 1 << 40)
    }

    /// A model that fits is mapped exactly as with no budget; one that does not streams under
    /// the ceiling less the reserve, says so once, and decodes the same tokens.
    func testAutoMapsWhatFitsAndStreamsTheRest() throws {
        let url = try Fixtures.stories(.q8_0)
        let opts = GenerationOptions(maxNewTokens: 24, sampling: SamplingConfig(temperature: 0), stopAtEndOfText: false)
        let prompt = "Once upon a time"
        var notes: [String] = []
        let saved = AutoBudget.notice
        AutoBudget.notice = { notes.append($0) }
        defer { AutoBudget.notice = saved }
        func run(_ limit: MemoryLimit?) throws -> (GenerationResult, LoadedModel) {
            var o = LoadOptions(threads: 2, memoryBaseline: 1 << 20, sizing: Generator.sizing(prompt: prompt, options: opts))
            o.autoBudget = limit != nil
            o.memoryLimit = limit
            let lm = try LoadedModel(path: url.path, options: o)
            return (try Generator.generate(lm, prompt: prompt, options: opts) { _ in }, lm)
        }
        let (want, plain) = try run(nil)
        XCTAssertNil(plain.plan.budget)
        let (roomy, big) = try run(limit(1 << 30))
        XCTAssertNil(big.plan.budget, "fits: nothing changes")
        XCTAssertNil(big.autoNote)
        XCTAssertEqual(roomy.tokens, want.tokens)
        XCTAssertTrue(notes.isEmpty, "\(notes)")
        // Just under what the mapped plan needs: the classifier or layers stream.
        let need = 1 << 20 + plain.plan.marginBytes + plain.plan.totalBytes
        let tight = need + AutoBudget.pageCacheReserve(ceiling: need) - 4096
        let (got, small) = try run(limit(tight))
        XCTAssertNotNil(small.plan.budget)
        XCTAssertTrue(small.plan.streams || small.plan.embeddingStreams, "\(small.plan)")
        // Streaming because memory is short: O_DIRECT reads of the layers' file spans.
        XCTAssertEqual(small.plan.directReads, small.plan.streams)
        XCTAssertLessThanOrEqual(small.plan.budget!, tight - AutoBudget.pageCacheReserve(ceiling: tight))
        XCTAssertEqual(got.tokens, want.tokens)
        XCTAssertEqual(notes.count, 1, "\(notes)")
        XCTAssertTrue(notes[0].hasPrefix("memory: \(url.lastPathComponent) needs"), notes[0])
        XCTAssertTrue(notes[0].contains("cgroup v1 limit"), notes[0])
        // Below the smallest plan: one line naming the file and the limit.
        XCTAssertThrowsError(try run(limit(2 << 20))) { e in
            XCTAssertTrue("\(e)".contains(url.path) && "\(e)".contains("cgroup v1 limit 2.0 MiB"), "\(e)")
        }
    }

    // MARK: the server's admission by KV bytes

    func testKVAdmissionPool() {
        // 10 bytes a position, 4 slots, a pool of 100 bytes.
        var a = KVAdmission(poolBytes: 100, slots: 4) { $0 * 10 }
        XCTAssertEqual(a.need(positions: 3), 30)
        XCTAssertEqual(a.admissible(30, free: [0, 1, 2, 3]), 3, "three of 30 fit in 100, not four")
        a.take(slot: 0, need: 30)
        a.take(slot: 1, need: 30)
        XCTAssertTrue(a.fits(40, slot: 2))
        XCTAssertFalse(a.fits(41, slot: 2))
        XCTAssertTrue(a.fits(70, slot: 1), "a slot's own holding is replaced, not added")
        XCTAssertEqual(a.admissible(30, free: [2, 3]), 1)
        XCTAssertTrue(a.neverFits(101))
        a.release(slot: 0)
        XCTAssertEqual(a.held, [0, 30, 0, 0])
        // No budget: every slot, any size.
        let free = KVAdmission(poolBytes: nil, slots: 2) { $0 }
        XCTAssertEqual(free.admissible(1 << 40, free: [0, 1]), 2)
        XCTAssertFalse(free.neverFits(1 << 40))
        // The plan's pool: all of it without a budget; else a quarter of the budget, at least
        // the minimum per slot, at most all of it.
        XCTAssertEqual(KVAdmission.poolBytes(budget: nil, parallel: 4, fullSlotBytes: 1000, minimumSlotBytes: 100), 4000)
        XCTAssertEqual(KVAdmission.poolBytes(budget: 8000, parallel: 4, fullSlotBytes: 1000, minimumSlotBytes: 100), 2000)
        XCTAssertEqual(KVAdmission.poolBytes(budget: 800, parallel: 4, fullSlotBytes: 1000, minimumSlotBytes: 100), 400)
        XCTAssertEqual(KVAdmission.poolBytes(budget: 1 << 30, parallel: 4, fullSlotBytes: 1000, minimumSlotBytes: 100), 4000)
        // The floor holds one minimum request for each of 4 slots, not all 8: the others wait.
        XCTAssertEqual(KVAdmission.poolBytes(budget: 800, parallel: 8, fullSlotBytes: 1000, minimumSlotBytes: 100), 400)
    }

    /// The cache's resident bytes for p positions: every layer's K and V slots, whole pages.
    func testKVResidentBytesAndRelease() throws {
        let c = PatternKVCache(patterns: [.dense, .dense], sinks: 0, kvType: .f16, nKVHead: 2, headDim: 64, positions: 1000)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        XCTAssertEqual(c.rowBytes, 256)
        XCTAssertEqual(c.residentBytes(positions: 16), 4 * 2 * page, "16 rows of 256 bytes: one page, plus one for an unaligned start")
        XCTAssertEqual(c.residentBytes(positions: 5000), c.residentBytes(positions: 1000), "at most the slots")
        XCTAssertGreaterThanOrEqual(c.residentBytes(positions: 1000), c.bytes)
        let k = [Float](repeating: 1, count: 128)
        for p in 0 ..< 3 { c.store(layer: 0, pos: p, k: k, v: k); c.store(layer: 1, pos: p, k: k, v: k) }
        XCTAssertEqual(c.length, 3)
        c.releasePages()
        XCTAssertEqual(c.length, 0, "a released cache starts a new sequence")
    }

    /// Under a pool that holds one request: a second is refused with memoryFull (HTTP 429) while
    /// the first holds its KV bytes (the scheduler is held inside the first's event), a request
    /// larger than the whole pool is refused at once, and once the first ends its bytes are back.
    func testServerRefusesWhatThePoolCannotTake() throws {
        let url = try Fixtures.stories(.q8_0)
        let lm = try LoadedModel(path: url.path, options: LoadOptions(threads: 2, kvPositions: 512))
        let cache = try XCTUnwrap(lm.model.cache as? PatternKVCache)
        let prompt: [Int32] = [1, 403, 407, 261]
        let one = cache.residentBytes(positions: prompt.count + 20 + 1)
        let engine = try ServingEngine(loaded: lm, parallel: 4, contextPerSlot: 512, queueLimit: 0, kvPool: one)
        defer { engine.drain() }
        let entered = DispatchSemaphore(value: 0), go = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        final class Once: @unchecked Sendable { var first = true }
        let once = Once()
        try engine.submit(ServeRequest(prompt: prompt, maxTokens: 20), isCancelled: { false }) { e in
            if once.first { once.first = false; entered.signal(); go.wait() }
            if case .done = e { done.signal() }
        }
        XCTAssertEqual(entered.wait(timeout: .now() + 30), .success)
        XCTAssertThrowsError(try engine.submit(ServeRequest(prompt: prompt, maxTokens: 20), isCancelled: { false }) { _ in }) { e in
            guard case ServeRejection.memoryFull(let need, let pool)? = e as? ServeRejection else { return XCTFail("\(e)") }
            XCTAssertEqual(need, one)
            XCTAssertEqual(pool, one)
            XCTAssertTrue("\(e)".contains("KV pool"), "\(e)")
        }
        go.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        let big = cache.residentBytes(positions: prompt.count + 300 + 1)
        XCTAssertGreaterThan(big, one)
        XCTAssertThrowsError(try engine.submit(ServeRequest(prompt: prompt, maxTokens: 300), isCancelled: { false }) { _ in }) { e in
            XCTAssertEqual(e as? ServeRejection, .memoryFull(needBytes: big, poolBytes: one))
        }
        // The first request's bytes are back (its slot is freed just after its done event):
        // the same request is admitted and completes.
        let deadline = Date().addingTimeInterval(30)
        while engine.load.active > 0 && Date() < deadline { usleep(1000) }
        let again = DispatchSemaphore(value: 0)
        try engine.submit(ServeRequest(prompt: prompt, maxTokens: 20), isCancelled: { false }) { e in if case .done = e { again.signal() } }
        XCTAssertEqual(again.wait(timeout: .now() + 30), .success)
    }

    // MARK: child processes

    /// Issue 25 row 10: bench's bandwidth probe allocated its 1 GiB buffer outside the budget.
    /// The whole run's peak (VmHWM at the end, probes included) stays inside --memory-budget.
    func testBenchProbesStayInsideTheBudget() throws {
        let url = try Fixtures.stories(.q8_0)
        let budget = 48 << 20
        let r = try Executables.run("run", ["bench", url.path, "--memory-budget", "48M", "--prompt-tokens", "8", "--gen-tokens", "8",
                                            "--reps", "2", "--threads", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        let peak = try XCTUnwrap(j["process_peak_rss_bytes"] as? Int)
        let probe = try XCTUnwrap((j["bandwidth"] as? [String: Any])?["bytes"] as? Int)
        XCTAssertLessThanOrEqual(peak, budget, "peak RSS \(peak) over the 48M budget (probe \(probe) bytes)")
        XCTAssertLessThan(probe, budget)
    }

    /// A memory cgroup of `limit` bytes for the test (v1 here; v2 where its memory controller
    /// is delegated), or a skip with the reason it cannot be made.
    struct Cgroup {
        let dir: String
        let version: Int

        init(limit: Int) throws {
            guard geteuid() == 0 else { throw XCTSkip("memory cgroup test: needs root to make a cgroup (euid \(geteuid()))") }
            let fm = FileManager.default
            let name = "quantlm-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
            if fm.fileExists(atPath: "/sys/fs/cgroup/memory/memory.limit_in_bytes") {
                dir = "/sys/fs/cgroup/memory/" + name
                version = 1
            } else if let c = try? String(contentsOfFile: "/sys/fs/cgroup/cgroup.subtree_control", encoding: .utf8),
                      c.split(separator: " ").contains(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines) == "memory" }) {
                dir = "/sys/fs/cgroup/" + name
                version = 2
            } else {
                throw XCTSkip("memory cgroup test: no writable memory controller (no v1 /sys/fs/cgroup/memory, no 'memory' in v2 cgroup.subtree_control)")
            }
            guard mkdir(dir, 0o755) == 0 else {
                throw XCTSkip("memory cgroup test: cannot make \(dir): \(String(cString: strerror(errno)))")
            }
            let file = dir + (version == 1 ? "/memory.limit_in_bytes" : "/memory.max")
            do { try "\(limit)".write(toFile: file, atomically: false, encoding: .utf8) } catch {
                rmdir(dir)
                throw XCTSkip("memory cgroup test: cannot set \(file): \(error)")
            }
        }

        /// Runs .build/release/run inside the cgroup (a shell moves itself in, then execs it).
        func run(_ args: [String]) throws -> Executables.Result {
            let exe = try Executables.url("run").path
            let quoted = ([exe] + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            return try Executables.run(url: URL(fileURLWithPath: "/bin/sh"), ["-c", "echo $$ > \(dir)/cgroup.procs && exec \(quoted)"])
        }

        /// OOM kills the kernel counted in this cgroup.
        var oomKills: Int {
            let f = dir + (version == 1 ? "/memory.oom_control" : "/memory.events")
            let text = (try? String(contentsOfFile: f, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") { return Int(line.split(separator: " ")[1]) ?? 0 }
            return 0
        }

        func remove() { rmdir(dir) }
    }

    /// The default flags inside a memory cgroup too small to map the model: the child streams
    /// (one line says so), is not OOM-killed, and generates the tokens it generates without
    /// the limit; bench (its probes) runs to the end inside it too.
    func testChildInsideSmallMemoryCgroupGeneratesSameTokens() throws {
        let url = try Fixtures.stories(.q8_0)
        let args = ["generate", url.path, "--prompt", "Once upon a time", "--max-tokens", "40", "--temperature", "0",
                    "--ignore-eos", "--threads", "2", "--json"]
        // Unlimited first (also puts the libraries in the page cache, charged elsewhere).
        let free = try Executables.run("run", args)
        XCTAssertEqual(free.status, 0, free.stderr)
        func result(_ r: Executables.Result) throws -> [String: Any] {
            let j = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout + r.stderr)
            return try XCTUnwrap(j["result"] as? [String: Any])
        }
        let want = try result(free)
        let plan0 = try XCTUnwrap(want["memory_plan"] as? [String: Any])
        XCTAssertNil(plan0["budget_bytes"] as? Int, "unlimited: mapped")
        // A limit just over the anonymous baseline: the 330 KiB model cannot be mapped whole.
        let planned = try XCTUnwrap(plan0["planned_bytes"] as? Int), baseline = try XCTUnwrap(plan0["baseline_bytes"] as? Int)
        let limit = baseline + MemoryPlan.defaultMarginBytes + planned + (4 << 20)
        let cg = try Cgroup(limit: limit)
        defer { cg.remove() }
        print("memory cgroup v\(cg.version) \(cg.dir): limit \(limit) bytes")
        let boxed = try cg.run(args)
        XCTAssertEqual(boxed.status, 0, "exit \(boxed.status) inside \(limit) bytes: \(boxed.stderr)")
        let got = try result(boxed)
        XCTAssertEqual(got["tokens"] as? [Int], want["tokens"] as? [Int])
        XCTAssertEqual(got["text"] as? String, want["text"] as? String)
        let plan = try XCTUnwrap(got["memory_plan"] as? [String: Any])
        XCTAssertNotNil(plan["budget_bytes"] as? Int, "auto chose a budget inside the cgroup: \(boxed.stderr)")
        XCTAssertGreaterThan(try XCTUnwrap(plan["streamed_bytes_per_token"] as? Double), 0)
        XCTAssertEqual(boxed.stderr.components(separatedBy: "\n").filter { $0.hasPrefix("memory: ") }.count, 1, boxed.stderr)
        // It streamed, so --json reports the disk probe (read after the run) and the share of it.
        let j = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(boxed.stdout.utf8)) as? [String: Any])
        let probe = try XCTUnwrap(j["disk_probe"] as? [String: Any], boxed.stdout)
        XCTAssertGreaterThan(try XCTUnwrap((probe["gb_per_second"] as? [String: Any])?["median"] as? Double), 0)
        XCTAssertGreaterThan(try XCTUnwrap(j["streamed_share_of_disk_probe"] as? Double), 0)
        XCTAssertNil(try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(free.stdout.utf8)) as? [String: Any])["disk_probe"],
                     "mapped: no probe")
        let bench = try cg.run(["bench", url.path, "--prompt-tokens", "8", "--gen-tokens", "16", "--reps", "2", "--threads", "2", "--json"])
        XCTAssertEqual(bench.status, 0, "bench inside \(limit) bytes: exit \(bench.status) \(bench.stderr)")
        XCTAssertEqual(cg.oomKills, 0)
        // Streaming with O_DIRECT, bench's disk probe is the loader's own reads through its
        // buffers (nothing outside the plan), before the first rep and after each of the 2, and
        // the share is per rep; the file's 4 MiB probe is reported beside it.
        let b = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [String: Any], bench.stdout)
        let bplan = try XCTUnwrap(b["memory_plan"] as? [String: Any])
        XCTAssertGreaterThan(try XCTUnwrap(bplan["buffer_count"] as? Int), 0, "bench streamed inside the cgroup")
        let bprobe = try XCTUnwrap(b["disk_probe"] as? [String: Any], bench.stdout)
        if (try? DiskProbe.Reader(path: url.path).usesDirectIO) == true {
            XCTAssertEqual(bprobe["pattern"] as? String, "loader", bench.stdout)
            // The probe drives the loader over the streamed items: its largest read is one item's
            // span (inside a layer buffer), with the loader's threads in flight.
            let chunk = try XCTUnwrap(bplan["buffer_bytes"] as? Int)
            let read = try XCTUnwrap(bprobe["buffer_bytes"] as? Int)
            XCTAssertTrue(read > 0 && read <= chunk, "the probe's largest read \(read), layer buffers of \(chunk)")
            XCTAssertEqual(bprobe["pieces"] as? Int, TensorReader.defaultDirectPieces)
            XCTAssertEqual((bprobe["reads_gb_per_second"] as? [Double])?.count, 3)
            let per = try XCTUnwrap(b["streamed_share_of_disk_probe_per_rep"] as? [Double], bench.stdout)
            XCTAssertEqual(per.count, 2)
            XCTAssertTrue(per.allSatisfy { $0 > 0 }, "\(per)")
            XCTAssertEqual((b["disk_probe_file"] as? [String: Any])?["pattern"] as? String, "file")
        } else {
            print("\(url.path): the file system refuses O_DIRECT: bench's probe is the file's buffered reads")
            XCTAssertEqual(bprobe["pattern"] as? String, "file", bench.stdout)
        }
    }
}
