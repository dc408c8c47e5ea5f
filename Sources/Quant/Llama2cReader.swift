import Foundation

/// Reads llama2.c's legacy checkpoint: a header of 7 int32 (dim, hidden_dim, n_layers,
/// n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means the classifier is
/// not shared with the embedding), then fp32 weights in run.c's order.
public enum Llama2cReader: CheckpointReader {
    /// The format has no magic: any regular file (the registry's fallback, asked last).
    public static func canRead(_ url: URL) -> Bool { !isDirectory(url) }

    public static func read(_ url: URL, tokenizer: URL?) throws -> Checkpoint {
        let file = url.path
        let map = try MappedFile(url)
        var r = ByteReader(map.bytes, file: file)
        guard map.count >= 28 else { throw QuantError(file, "not a llama2.c checkpoint: \(map.count) bytes is shorter than the 28-byte header") }
        var h: [Int] = []
        for name in ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"] {
            h.append(Int(try r.i32(name)))
        }
        let (dim, hidden, nLayers, nHeads, nKV, vocabRaw, seqLen) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6])
        let shared = vocabRaw > 0
        let vocab = abs(vocabRaw)
        let hp = HParams(nLayer: nLayers, nHead: nHeads, nKVHead: nKV, dModel: dim, dFF: hidden, nCtx: seqLen,
                         vocabSize: vocab, normEps: 1e-5, ropeTheta: 10000, tiedEmbeddings: shared)
        try hp.validate(file: file)
        let headSize = dim / nHeads
        let kvDim = headSize * nKV
        // (name pattern, per-layer shape, layered)
        let layout: [(String, [Int], Bool)] = [
            ("tok_embeddings.weight", [vocab, dim], false),
            ("attention_norm.weight", [dim], true),
            ("attention.wq.weight", [dim, dim], true),
            ("attention.wk.weight", [kvDim, dim], true),
            ("attention.wv.weight", [kvDim, dim], true),
            ("attention.wo.weight", [dim, dim], true),
            ("ffn_norm.weight", [dim], true),
            ("feed_forward.w1.weight", [hidden, dim], true),
            ("feed_forward.w2.weight", [dim, hidden], true),
            ("feed_forward.w3.weight", [hidden, dim], true),
            ("norm.weight", [dim], false),
        ]
        var offset = 28
        var expectedSize = 28
        for (_, shape, layered) in layout { expectedSize += (layered ? nLayers : 1) * shape.reduce(1, *) * 4 }
        expectedSize += 2 * seqLen * (headSize / 2) * 4 // freq_cis_real, freq_cis_imag (unused: recomputed)
        if !shared { expectedSize += vocab * dim * 4 }
        guard map.count == expectedSize else {
            throw QuantError(file, map.count < expectedSize
                ? "truncated: the header (dim \(dim), \(nLayers) layers, vocab \(vocab)) needs \(expectedSize) bytes, file has \(map.count)"
                : "\(map.count - expectedSize) unexpected trailing bytes for the header's shapes (needs \(expectedSize))")
        }
        var perName: [String: SourceTensor] = [:]
        func take(_ name: String, _ shape: [Int]) -> SourceTensor {
            let n = shape.reduce(1, *) * 4
            let t = SourceTensor(name: name, shape: shape, dtype: .f32,
                                 bytes: UnsafeRawBufferPointer(rebasing: map.bytes[offset ..< offset + n]),
                                 transposed: false, origin: "\(file): \(name)")
            offset += n
            return t
        }
        for (name, shape, layered) in layout {
            if layered {
                for l in 0 ..< nLayers { perName["layers.\(l).\(name)"] = take("layers.\(l).\(name)", shape) }
            } else {
                perName[name] = take(name, shape)
            }
        }
        offset += 2 * seqLen * (headSize / 2) * 4
        if !shared { perName["output.weight"] = take("output.weight", [vocab, dim]) }
        // Canonical order: embedding, layers in order, final norm, classifier.
        var tensors: [SourceTensor] = [perName["tok_embeddings.weight"]!]
        for l in 0 ..< nLayers {
            for (name, _, layered) in layout where layered { tensors.append(perName["layers.\(l).\(name)"]!) }
        }
        tensors.append(perName["norm.weight"]!)
        if let o = perName["output.weight"] { tensors.append(o) }

        var tok: TokenizerSource?
        if let tokenizer {
            tok = .llama2c(tokenizer)
        } else {
            let dir = url.deletingLastPathComponent()
            for cand in ["tokenizer.bin", "tok\(vocab).bin"] where FileManager.default.fileExists(atPath: dir.appendingPathComponent(cand).path) {
                tok = .llama2c(dir.appendingPathComponent(cand))
                break
            }
        }
        guard let tok else {
            throw QuantError(file, "no tokenizer: pass --tokenizer PATH/tokenizer.bin (none found beside the checkpoint)")
        }
        return Checkpoint(architecture: .llama, hparams: hp, tensors: tensors, tokenizer: tok,
                          sourceFiles: [url], keepAlive: [map])
    }
}
