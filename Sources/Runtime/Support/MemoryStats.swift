import CKernels
import Foundation

/// Resident memory of this process, from /proc/self/status (Linux). Zero elsewhere.
package struct MemoryStats: Codable, Sendable {
    /// Peak resident set (VmHWM).
    package var peakRSS: Int
    package var rss: Int
    /// Anonymous (heap, KV cache, decompressed tensors) and file-backed (mapped weights) resident bytes now.
    package var rssAnon: Int
    package var rssFile: Int
    /// The largest RssAnon / RssFile seen by `sample()` (called after load, prefill and every
    /// 16th decoded token) and by this reading: the kernel keeps no per-kind peak.
    package var peakRSSAnon: Int
    package var peakRSSFile: Int

    enum CodingKeys: String, CodingKey {
        case peakRSS = "peak_rss_bytes", rss = "rss_bytes", rssAnon = "rss_anon_bytes", rssFile = "rss_file_bytes"
        case peakRSSAnon = "peak_rss_anon_bytes", peakRSSFile = "peak_rss_file_bytes"
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var maxAnon = 0
    nonisolated(unsafe) private static var maxFile = 0

    /// Folds the current anonymous / file-backed resident bytes into the sampled peaks, from
    /// /proc/self/statm without allocating (cheap enough for a decode loop).
    package static func sample() {
        var resident: Int64 = 0, file: Int64 = 0
        guard qlm_statm(&resident, &file) == 0 else { return }
        lock.lock()
        maxAnon = max(maxAnon, Int(resident - file))
        maxFile = max(maxFile, Int(file))
        lock.unlock()
    }

    package static func current() -> MemoryStats {
        var s = MemoryStats(peakRSS: 0, rss: 0, rssAnon: 0, rssFile: 0, peakRSSAnon: 0, peakRSSFile: 0)
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return s }
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let kb = Int(parts[1]) else { continue }
            switch parts[0] {
            case "VmHWM:": s.peakRSS = kb * 1024
            case "VmRSS:": s.rss = kb * 1024
            case "RssAnon:": s.rssAnon = kb * 1024
            case "RssFile:": s.rssFile = kb * 1024
            default: break
            }
        }
        lock.lock()
        maxAnon = max(maxAnon, s.rssAnon)
        maxFile = max(maxFile, s.rssFile)
        s.peakRSSAnon = maxAnon
        s.peakRSSFile = maxFile
        lock.unlock()
        return s
    }
}
