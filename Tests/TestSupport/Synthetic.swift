import Foundation
import Quant
import Runtime

/// Writes a synthetic llama2.c checkpoint. `fill(name, index)` gives element `index` of
/// the tensor called `name` (canonical name, e.g. "layers.1.attention.wq.weight").
package func writeLlama2c(_ url: URL, dim: Int = 64, hidden: Int = 172, layers: Int = 2, heads: Int = 8, kvHeads: Int = 4,
                  vocab: Int = 512, seq: Int = 32, shared: Bool = true,
                  fill: (String, Int) -> Float = { _, i in Float(i % 97) * 0.01 - 0.4 }) throws {
    var out: [UInt8] = []
    func i32(_ v: Int) { withUnsafeBytes(of: Int32(v).littleEndian) { out.append(contentsOf: $0) } }
    for v in [dim, hidden, layers, heads, kvHeads, shared ? vocab : -vocab, seq] { i32(v) }
    func put(_ name: String, _ n: Int) {
        var f = [Float](repeating: 0, count: n)
        for i in 0 ..< n { f[i] = fill(name, i) }
        f.withUnsafeBytes { out.append(contentsOf: $0) }
    }
    let kvDim = dim / heads * kvHeads
    put("tok_embeddings.weight", vocab * dim)
    let layered: [(String, Int)] = [
        ("attention_norm.weight", dim), ("attention.wq.weight", dim * dim), ("attention.wk.weight", kvDim * dim),
        ("attention.wv.weight", kvDim * dim), ("attention.wo.weight", dim * dim), ("ffn_norm.weight", dim),
        ("feed_forward.w1.weight", hidden * dim), ("feed_forward.w2.weight", dim * hidden),
        ("feed_forward.w3.weight", hidden * dim),
    ]
    for (name, n) in layered { for l in 0 ..< layers { put("layers.\(l).\(name)", n) } }
    put("norm.weight", dim)
    put("freq_cis", 2 * seq * (dim / heads / 2))
    if !shared { put("output.weight", vocab * dim) }
    try Data(out).write(to: url)
}

/// A random llama model whose widths are multiples of 256 (dim 256, ffn 768, 2 layers, 4 heads /
/// 2 kv heads, stories260K's 512-token vocabulary), so the K-quants hold every matrix: q4_k by
/// default, wv q5_k and w2 q6_k (llama.cpp's Q4_K_M mix in miniature). Converted once per process.
package enum KQuantModel {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var made: URL?

    package static func cached() throws -> URL {
        lock.lock(); defer { lock.unlock() }
        if let u = made { return u }
        let dir = TestFiles.tempRoot
        let bin = dir.appendingPathComponent("kquant-llama.bin"), out = dir.appendingPathComponent("kquant-llama.qlm")
        var rng = SplitMix64(seed: 0x4B51)
        let noise = (0 ..< 65536).map { _ in Float(rng.normal()) }
        try writeLlama2c(bin, dim: 256, hidden: 768, layers: 2, heads: 4, kvHeads: 2, vocab: 512, seq: 256) { name, i in
            if name.hasSuffix("norm.weight") { return 1 }
            let salt = name.utf8.reduce(0) { ($0 &* 31 &+ Int($1)) & 0xFFFF }
            return noise[(i &* 7 &+ salt) & 0xFFFF] * (name.hasPrefix("tok_") ? 1 : 0.08)
        }
        let tok = try Stories.tokenizer()
        let ckpt = try Checkpoint.open(bin, tokenizer: tok)
        let policy = QuantPolicy(defaultType: .q4_k, overrides: [("*.wv.weight", .q5_k), ("*.w2.weight", .q6_k)])
        _ = try Converter.convert(ckpt, tokenizer: try Stories.payload(tok), options: ConvertOptions(policy: policy, threads: 2), to: out)
        made = out
        return out
    }
}
