import CKernels
import Foundation

/// Every range and consistency check on a model's numbers, in one place: the readers (at
/// convert) and the .qlm loader call these, so a number the converter writes is one `run`
/// accepts and the other way round. Each failure is one QuantError naming the file and the key.
package enum ConfigValidation {
    /// Limits of the shared hyper-parameters (also `run kv-budget`'s flags).
    package static let maxLayers = 1024
    package static let maxDModel = 1 << 16
    package static let maxHeads = 1 << 10
    package static let maxHeadDim = 1024
    package static let maxFF = 1 << 18
    package static let maxCtx = 1 << 20
    package static let maxVocab = 1 << 22
    /// Rotary bases in use run from 10^4 (Llama 2, Gemma's local layers) to 10^6-10^7; past
    /// 10^9 every frequency but the first is 0 in float32 (and 0, negative or non-finite bases
    /// give NaN angles).
    package static let ropeThetaRange: ClosedRange<Double> = 1.0.nextUp ... 1e9
    /// Deepest JSON nesting a .qlm metadata block may use (the real one nests 3 levels).
    package static let maxMetadataDepth = 32

    static func fail(_ file: String, _ msg: String) -> QuantError { QuantError(file, "bad hyper-parameters: \(msg)") }

    /// The range checks of `HParams.validate` beyond the shapes: rotary bases and the
    /// architecture-specific numbers whose meaning is known.
    package static func checkRanges(_ hp: HParams, file: String) throws {
        func need(_ ok: Bool, _ msg: @autoclosure () -> String) throws { if !ok { throw fail(file, msg()) } }
        func theta(_ key: String, _ v: Double) throws {
            try need(v.isFinite && ropeThetaRange.contains(v),
                     "\(key) \(v) (a rotary base must be finite, > 1 and <= 1e9)")
        }
        func wholeNumber(_ key: String, _ range: ClosedRange<Int>) throws {
            guard let v = hp.extra[key] else { return }
            try need(v.rounded() == v && Double(range.lowerBound) <= v && v <= Double(range.upperBound),
                     "\(key) \(v) (an integer in \(range.lowerBound)...\(range.upperBound))")
        }
        if let t = hp.ropeTheta { try theta("rope_theta", Double(t)) }
        if let t = hp.extra["rope_local_theta"] { try theta("rope_local_theta", t) }
        try wholeNumber("sliding_window_pattern", 1 ... maxLayers)
        try wholeNumber("sliding_window", 0 ... maxCtx)
        if let s = hp.extra["query_pre_attn_scalar"] { try need(s.isFinite && s > 0, "query_pre_attn_scalar \(s) (must be > 0)") }
    }

    /// The metadata's layer count against the tensors: every block 0..<n_layer holds the same
    /// tensors as block 0, and no tensor belongs to a block past n_layer.
    package static func checkLayers(_ tensorNames: [String], names: TensorNames, nLayer: Int, file: String) throws {
        var byLayer: [Int: Set<String>] = [:]
        for n in tensorNames {
            guard let l = names.layerIndex(n) else { continue }
            guard l < nLayer else {
                throw QuantError(file, "tensor \(QuantError.shown(n)) belongs to block \(l), but the metadata's n_layer is \(nLayer)")
            }
            byLayer[l, default: []].insert(String(n.dropFirst(names.layerPrefix.count + String(l).count)))
        }
        let first = byLayer[0] ?? []
        for l in 0 ..< nLayer {
            let have = byLayer[l] ?? []
            if let missing = first.subtracting(have).sorted().first {
                throw QuantError(file, "n_layer is \(nLayer) but block \(l) lacks \(names.layerPrefix)\(l)\(missing)")
            }
            if let extra = have.subtracting(first).sorted().first {
                throw QuantError(file, "block \(l) has \(names.layerPrefix)\(l)\(extra), which block 0 lacks")
            }
        }
    }

    /// The first row of a stored tensor whose fp16 fields (values, scales, mins) hold an
    /// infinity or NaN, or nil. `data` holds the tensor's raw bytes (rows × row size), or the first
    /// `rows` of them (a band).
    package static func firstNonFiniteRow(_ info: TensorInfo, _ data: UnsafeRawPointer, rows: Int? = nil) -> Int? {
        let r = qlm_first_nonfinite_fp16_row(info.type.rawValue, data, Int64(rows ?? info.rows), Int64(info.rowLength))
        return r >= 0 ? Int(r) : nil
    }

    /// The fp16 fields of every raw tensor of `file` (the map is read once: a scan of the
    /// scales, no copy). zstd tensors are checked when they are decompressed by `verify`.
    package static func checkScales(_ file: QLMFile) throws {
        for t in file.tensors where t.encoding == .raw && t.type != .u8 {
            let s = file.stored(t)
            guard let base = s.baseAddress, s.count == t.expectedRawLength else { continue }
            if let r = firstNonFiniteRow(t, base) {
                throw QuantError(file.path, "tensor \(t.name): row \(r) holds an infinite or NaN fp16 \(t.type == .f16 ? "value" : "scale")")
            }
        }
    }

    /// Nesting depth of a JSON text (brackets outside strings), to refuse absurd nesting with
    /// its own message before a JSON parser's depth limit calls it "not valid JSON".
    package static func jsonDepth(_ data: Data) -> Int {
        var depth = 0, deepest = 0, inString = false, escaped = false
        for c in data {
            if inString {
                if escaped { escaped = false } else if c == 0x5C { escaped = true } else if c == 0x22 { inString = false }
                continue
            }
            switch c {
            case 0x22: inString = true
            case 0x5B, 0x7B: depth += 1; deepest = max(deepest, depth)
            case 0x5D, 0x7D: depth -= 1
            default: break
            }
        }
        return deepest
    }
}
