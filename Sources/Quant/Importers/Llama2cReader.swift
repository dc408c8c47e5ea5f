import Foundation

/// Reads llama2.c's legacy checkpoint: a header of 7 int32 (dim, hidden_dim, n_layers,
/// n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means the classifier is
/// not shared with the embedding), then fp32 weights in run.c's order.
package enum Llama2cReader: CheckpointReader {
    /// The format has no magic: a regular file named *.bin, or any file whose 28-byte header
    /// holds plausible numbers (the registry's fallback, asked last; `read` checks the header
    /// field by field and the size against it).
    package static func canRead(_ url: URL) -> Bool {
        if isDirectory(url) { return false }
        if url.pathExtension.lowercased() == "bin" { return true }
        let h = prefix(url, 28)
        guard h.count == 28 else { return false }
        let v = (0 ..< 7).map { i in Int(Int32(bitPattern: UInt32(h[4 * i]) | UInt32(h[4 * i + 1]) << 8 | UInt32(h[4 * i + 2]) << 16 | UInt32(h[4 * i + 3]) << 24)) }
        let (dim, hidden, layers, heads, kv, vocab, seq) = (v[0], v[1], v[2], v[3], v[4], abs(v[5]), v[6])
        return (1 ... ConfigValidation.maxDModel).contains(dim) && (1 ... ConfigValidation.maxFF).contains(hidden)
            && (1 ... ConfigValidation.maxLayers).contains(layers) && (1 ... ConfigValidation.maxHeads).contains(heads)
            && (1 ... heads).contains(kv) && (1 ... ConfigValidation.maxVocab).contains(vocab) && (1 ... ConfigValidation.maxCtx).contains(seq)
    }

    package static func read(_ url: URL, tokenizer: URL?, formats: [ArchitectureFormats]) throws -> Checkpoint {
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
        // (role, per-layer shape, layered), in run.c's order
        let layout: [(TensorRole, [Int], Bool)] = [
            (.tokenEmbedding, [vocab, dim], false),
            (.attnNorm, [dim], true),
            (.attnQ, [dim, dim], true),
            (.attnK, [kvDim, dim], true),
            (.attnV, [kvDim, dim], true),
            (.attnOutput, [dim, dim], true),
            (.ffnNorm, [dim], true),
            (.ffnGate, [hidden, dim], true),
            (.ffnDown, [dim, hidden], true),
            (.ffnUp, [hidden, dim], true),
            (.outputNorm, [dim], false),
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
        var byKey: [TensorKey: SourceTensor] = [:]
        func take(_ key: TensorKey, _ shape: [Int]) {
            let n = shape.reduce(1, *) * 4
            byKey[key] = SourceTensor(key: key, shape: shape, dtype: .f32,
                                      bytes: UnsafeRawBufferPointer(rebasing: map.bytes[offset ..< offset + n]),
                                      transposed: false, origin: "\(file): \(key)")
            offset += n
        }
        for (role, shape, layered) in layout {
            if layered {
                for l in 0 ..< nLayers { take(TensorKey(role, layer: l), shape) }
            } else {
                take(TensorKey(role), shape)
            }
        }
        offset += 2 * seqLen * (headSize / 2) * 4
        if !shared { take(TensorKey(.output), [vocab, dim]) }
        // Canonical order: embedding, layers in order, final norm, classifier.
        var tensors: [SourceTensor] = [byKey[TensorKey(.tokenEmbedding)]!]
        for l in 0 ..< nLayers {
            for (role, _, layered) in layout where layered { tensors.append(byKey[TensorKey(role, layer: l)]!) }
        }
        tensors.append(byKey[TensorKey(.outputNorm)]!)
        if let o = byKey[TensorKey(.output)] { tensors.append(o) }

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
        return Checkpoint(architecture: "llama", hparams: hp, tensors: tensors, tokenizer: tok,
                          sourceFiles: [url], keepAlive: [map])
    }
}
