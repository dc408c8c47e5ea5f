/// The one deterministic generator every test target uses (SplitMix64), so a failure
/// reproduces from its seed.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [lo, hi) through the standard library's sampling.
    public mutating func float(_ lo: Float = -1, _ hi: Float = 1) -> Float { Float.random(in: lo ..< hi, using: &self) }
    /// `n` uniform values in [-scale, scale).
    public mutating func floats(_ n: Int, scale: Float = 1) -> [Float] { (0 ..< n).map { _ in float(-scale, scale) } }
    /// Uniform in [-1, 1) from the top 53 bits.
    public mutating func uniform() -> Float { Float(Double(next() >> 11) / Double(1 << 53) * 2 - 1) }
    /// Roughly normal (a sum of four uniforms, unit variance), times scale.
    public mutating func normal(_ scale: Float = 1) -> Float {
        (uniform() + uniform() + uniform() + uniform()) * 0.866 * scale
    }
    /// `n` roughly normal values (`normal`), times scale.
    public mutating func normals(_ n: Int, scale: Float = 1) -> [Float] { (0 ..< n).map { _ in normal(scale) } }
}
