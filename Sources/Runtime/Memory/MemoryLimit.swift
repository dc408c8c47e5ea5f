import Foundation

/// What the host lets this process hold: the memory cgroup's limit and usage (v2 `memory.max` /
/// `memory.high` / `memory.current` / `memory.stat`; v1 `memory.limit_in_bytes` (hierarchical) /
/// `memory.usage_in_bytes` / `memory.stat`) and the host's `MemAvailable`. A cgroup counts the
/// page cache its processes read through (a mapped model file, buffered reads) against its limit.
package struct MemoryLimit: Sendable, Equatable {
    /// 1 or 2 when a memory cgroup with a limit applies; nil otherwise.
    package var cgroupVersion: Int?
    /// The cgroup's directory (for messages).
    package var cgroupPath: String?
    /// The smallest limit on the way from this process's cgroup to the root (nil: none).
    package var cgroupLimit: Int?
    /// The cgroup's usage (page cache and kernel memory included), and its file-backed pages
    /// (reclaimable page cache), from memory.stat.
    package var cgroupUsage: Int
    package var cgroupFile: Int
    /// /proc/meminfo MemAvailable and MemTotal.
    package var hostAvailable: Int
    package var hostTotal: Int

    package init(cgroupVersion: Int?, cgroupPath: String?, cgroupLimit: Int?, cgroupUsage: Int, cgroupFile: Int,
                 hostAvailable: Int, hostTotal: Int) {
        self.cgroupVersion = cgroupVersion; self.cgroupPath = cgroupPath; self.cgroupLimit = cgroupLimit
        self.cgroupUsage = cgroupUsage; self.cgroupFile = cgroupFile; self.hostAvailable = hostAvailable; self.hostTotal = hostTotal
    }

    /// What this process's anonymous memory may grow to (`ownAnon` now): the host's available
    /// memory, and under a cgroup limit the limit less what the cgroup holds that is neither
    /// reclaimable page cache nor this process's anonymous memory (other processes, kernel
    /// memory). Page cache (the process's library pages, file reads) lives in the reserve the
    /// auto budget leaves below this (`AutoBudget.pageCacheReserve`). The auto budget plans
    /// against it with the process's anonymous memory as its baseline.
    package func ceiling(ownAnon: Int) -> Int {
        var c = hostAvailable + ownAnon
        if let lim = cgroupLimit { c = min(c, lim - max(0, cgroupUsage - cgroupFile - ownAnon)) }
        return max(0, c)
    }

    /// "cgroup v1 limit 68.0 MiB" or "host MemAvailable 21.9 GiB", for messages.
    package var source: String {
        if let v = cgroupVersion, let l = cgroupLimit { return "cgroup v\(v) limit \(mib(l)) MiB" }
        return "host MemAvailable \(mib(hostAvailable)) MiB"
    }

    /// Limits at or above this are "no limit" (v1 writes 2^63 rounded down to a page).
    static let unlimited = 1 << 60

    /// Reads the live system (`read` is a file reader, for tests: path -> contents).
    package static func current(read: (String) -> String? = { try? String(contentsOfFile: $0, encoding: .utf8) }) -> MemoryLimit {
        var m = MemoryLimit(cgroupVersion: nil, cgroupPath: nil, cgroupLimit: nil, cgroupUsage: 0, cgroupFile: 0,
                            hostAvailable: 0, hostTotal: 0)
        if let info = read("/proc/meminfo") {
            for line in info.split(separator: "\n") {
                let f = line.split(whereSeparator: { $0 == " " || $0 == ":" })
                guard f.count >= 2, let kb = Int(f[1]) else { continue }
                if f[0] == "MemAvailable" { m.hostAvailable = kb * 1024 }
                if f[0] == "MemTotal" { m.hostTotal = kb * 1024 }
            }
        }
        guard let groups = read("/proc/self/cgroup"), let mounts = read("/proc/self/mountinfo") else { return m }
        // Mount points: v1 hierarchies with the memory controller, and the v2 unified hierarchy.
        var v1: (root: String, point: String)?, v2: (root: String, point: String)?
        for line in mounts.split(separator: "\n") {
            let parts = line.components(separatedBy: " - ")
            guard parts.count == 2 else { continue }
            let pre = parts[0].split(separator: " "), post = parts[1].split(separator: " ")
            guard pre.count >= 5, post.count >= 3 else { continue }
            let root = String(pre[3]), point = String(pre[4])
            if post[0] == "cgroup", post[2].split(separator: ",").contains("memory") { v1 = (root, point) }
            if post[0] == "cgroup2" { v2 = v2 ?? (root, point) }
        }
        var v1Path: String?, v2Path: String?
        for line in groups.split(separator: "\n") {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3 else { continue }
            if f[0] == "0" && f[1].isEmpty { v2Path = String(f[2]) }
            if f[1].split(separator: ",").contains("memory") { v1Path = String(f[2]) }
        }
        func dir(_ mount: (root: String, point: String), _ path: String) -> String {
            var rel = path
            if mount.root != "/", rel.hasPrefix(mount.root) { rel = String(rel.dropFirst(mount.root.count)) }
            return mount.point + (rel == "/" ? "" : rel)
        }
        func number(_ s: String?) -> Int? {
            guard let t = s?.trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty, t != "max" else { return nil }
            guard let v = Int(t), v < unlimited else { return nil }
            return v
        }
        func stat(_ text: String?, _ key: String) -> Int? {
            for line in (text ?? "").split(separator: "\n") {
                let f = line.split(separator: " ")
                if f.count == 2, f[0] == key { return Int(f[1]) }
            }
            return nil
        }
        if let mount = v1, let path = v1Path {
            // v1: memory.stat's hierarchical limit already folds in the ancestors'.
            let d = dir(mount, path), st = read(d + "/memory.stat")
            let lim = [number(read(d + "/memory.limit_in_bytes")), stat(st, "hierarchical_memory_limit").flatMap { $0 < unlimited ? $0 : nil }]
                .compactMap { $0 }.min()
            if let lim {
                m.cgroupVersion = 1
                m.cgroupPath = d
                m.cgroupLimit = lim
                m.cgroupUsage = number(read(d + "/memory.usage_in_bytes")) ?? 0
                m.cgroupFile = (stat(st, "total_inactive_file") ?? stat(st, "inactive_file") ?? 0)
                    + (stat(st, "total_active_file") ?? stat(st, "active_file") ?? 0)
                return m
            }
        }
        if let mount = v2, let path = v2Path {
            // v2: the smallest memory.max / memory.high from this cgroup up to the mount point.
            let d = dir(mount, path)
            var lim: Int?, p = d
            while p.count >= mount.point.count {
                for f in ["/memory.max", "/memory.high"] {
                    if let v = number(read(p + f)) { lim = min(lim ?? v, v) }
                }
                guard let cut = p.lastIndex(of: "/"), p != mount.point else { break }
                p = String(p[..<cut])
            }
            if let lim {
                let st = read(d + "/memory.stat")
                m.cgroupVersion = 2
                m.cgroupPath = d
                m.cgroupLimit = lim
                m.cgroupUsage = number(read(d + "/memory.current")) ?? 0
                m.cgroupFile = stat(st, "file") ?? 0
            }
        }
        return m
    }
}

/// `--memory-budget`: auto (the default: plan against what the host and its memory cgroup
/// allow; map the model when it fits, else stream), none (map everything, no limit) or a size.
package enum BudgetSetting: Sendable, Equatable {
    case auto
    case none
    case bytes(Int)

    package static func parse(_ text: String) throws -> BudgetSetting {
        switch text.trimmingCharacters(in: .whitespaces).lowercased() {
        case "auto": return .auto
        case "none", "off", "unlimited": return .none
        default: return .bytes(try MemoryBudget.parse(text))
        }
    }

    package var explicitBytes: Int? { if case .bytes(let b) = self { return b }; return nil }
}

/// The auto budget's decision for one model, and the process-wide ledger of what models loaded
/// earlier in this process planned but may not have touched yet (mapped weights fault in later;
/// KV caches and buffers are allocated without being filled), so each model's plan leaves room
/// for the others: `compare` and `perplexity --reference` load several, `generate` a draft.
package enum AutoBudget {
    /// Room left outside the plan for the page cache the process's own reads pass through
    /// (library pages, the tokenizer, reads that are not O_DIRECT) and for kernel memory the cgroup
    /// charges (page tables, the loader's I/O): 1/12 of the ceiling, at least 6 MiB.
    package static func pageCacheReserve(ceiling: Int) -> Int { max(6 << 20, ceiling / 12) }

    /// The budget for a model whose everything-resident plan needs `mappedNeed` bytes (baseline,
    /// margin and the plan's total) under a process ceiling: nil when it fits (nothing changes),
    /// else the ceiling less the page-cache reserve.
    package static func decide(ceiling: Int, mappedNeed: Int) -> Int? {
        let budget = ceiling - pageCacheReserve(ceiling: ceiling)
        return mappedNeed <= budget ? nil : max(1, budget)
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var entries: [ObjectIdentifier: Int] = [:]

    /// Bytes planned by the models alive in this process, except `excluding`.
    package static func committed(excluding id: ObjectIdentifier? = nil) -> Int {
        lock.lock(); defer { lock.unlock() }
        return entries.filter { $0.key != id }.values.reduce(0, +)
    }

    static func commit(_ id: ObjectIdentifier, bytes: Int) {
        lock.lock(); entries[id] = bytes; lock.unlock()
    }

    static func release(_ id: ObjectIdentifier) {
        lock.lock(); entries[id] = nil; lock.unlock()
    }

    /// Where the one-line notice goes (stderr; tests may capture it).
    nonisolated(unsafe) package static var notice: (String) -> Void = { printError($0) }
    nonisolated(unsafe) private static var noticed: Set<String> = []

    /// The notice, once per model file and process (bench loads the model once per rep).
    static func announce(_ line: String, model: String) {
        lock.lock()
        let first = noticed.insert(model).inserted
        lock.unlock()
        if first { notice(line) }
    }
}
