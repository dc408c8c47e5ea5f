/// Whether this test build runs under the sanitizers. `scripts/sanitize.sh` compiles every Swift
/// target with `-DQUANTLM_SANITIZED`; a plain build never does, so its bounds stay as tight as
/// they were. Bounds that a sanitizer moves (not a check it makes) are scaled here, each by a
/// stated reason, and stay finite: an absurd allocation or a hang still fails them.
public enum Sanitized {
    #if QUANTLM_SANITIZED
    public static let build = true
    #else
    public static let build = false
    #endif

    /// Wall-clock bounds: ASan (about 2x) plus UBSan on the C kernels (about 1.5x), and a
    /// sanitized run is niced beside other work on 2 shared cores, so 4x. A loop that does not
    /// terminate still fails.
    public static func seconds(_ plain: Double) -> Double { build ? plain * 4 : plain }

    /// Resident-growth bounds: ASan keeps freed blocks in quarantine instead of returning them
    /// (`quarantine_size_mb`, 256 MiB on 64-bit Linux), so up to that much freed memory stays
    /// resident. Added to the plain bound; an absurd allocation (gigabytes) still fails it.
    public static let quarantineBytes: Int64 = 256 << 20
    public static func residentGrowth(_ plain: Int64) -> Int64 { build ? plain + quarantineBytes : plain }
}
