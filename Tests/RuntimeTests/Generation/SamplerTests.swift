import Foundation
import Runtime
import XCTest

final class SamplerTests: XCTestCase {
    func logits(_ n: Int, seed: UInt64) -> [Float] {
        var x = seed
        return (0 ..< n).map { _ in
            x = x &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(x >> 40) % 2000) / 200 - 5
        }
    }

    func draw(_ s: Sampler, _ l: [Float], _ n: Int) -> [Int32] {
        l.withUnsafeBufferPointer { b in (0 ..< n).map { _ in s.sample(b) } }
    }

    func testGreedyIsArgmax() {
        let l = logits(1000, seed: 1)
        let s = Sampler(vocab: 1000, config: SamplingConfig(temperature: 0))
        XCTAssertEqual(draw(s, l, 1)[0], Int32(l.indices.max { l[$0] < l[$1] }!))
    }

    func testSameSeedSameTokensDifferentSeedDifferent() {
        let l = logits(500, seed: 2)
        let a = draw(Sampler(vocab: 500, config: SamplingConfig(temperature: 1, topP: 0.95, seed: 7)), l, 200)
        let b = draw(Sampler(vocab: 500, config: SamplingConfig(temperature: 1, topP: 0.95, seed: 7)), l, 200)
        let c = draw(Sampler(vocab: 500, config: SamplingConfig(temperature: 1, topP: 0.95, seed: 8)), l, 200)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
    }

    func testTopKOneAndTinyTopPAreGreedy() {
        let l = logits(800, seed: 3)
        let best = Int32(l.indices.max { l[$0] < l[$1] }!)
        XCTAssertEqual(Set(draw(Sampler(vocab: 800, config: SamplingConfig(temperature: 1.5, topK: 1, seed: 1)), l, 50)), [best])
        XCTAssertEqual(Set(draw(Sampler(vocab: 800, config: SamplingConfig(temperature: 1, topP: 1e-6, seed: 1)), l, 50)), [best])
    }

    func testTopKKeepsOnlyTheKMostProbable() {
        let l = logits(300, seed: 4)
        let top5 = Set(l.indices.sorted { l[$0] > l[$1] }.prefix(5).map(Int32.init))
        let got = Set(draw(Sampler(vocab: 300, config: SamplingConfig(temperature: 2, topK: 5, seed: 3)), l, 2000))
        XCTAssertTrue(got.isSubset(of: top5))
        XCTAssertEqual(got.count, 5, "2000 draws at temperature 2 should reach all 5")
    }

    /// Empirical frequencies follow softmax(logits / T): chi-square-like bound on 4 tokens.
    func testFrequenciesFollowTheDistribution() {
        let l: [Float] = [0, 1, 2, 3]
        let s = Sampler(vocab: 4, config: SamplingConfig(temperature: 1, topP: 1, seed: 11))
        let n = 40000
        var counts = [Int](repeating: 0, count: 4)
        for t in draw(s, l, n) { counts[Int(t)] += 1 }
        let z = l.map { expf($0) }.reduce(0, +)
        for i in 0 ..< 4 {
            let p = Double(expf(l[i]) / z)
            let sd = (p * (1 - p) / Double(n)).squareRoot()
            // 5 standard deviations: a false failure has probability < 1e-6.
            XCTAssertEqual(Double(counts[i]) / Double(n), p, accuracy: 5 * sd)
        }
    }
}
