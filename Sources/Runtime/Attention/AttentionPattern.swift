import CKernels
import Foundation
import Quant

/// Which earlier positions a query of one layer attends to. `S` below is the sink count
/// (`AttentionConfig.sinks`); p is the query's absolute position and j a key's.
///
/// - dense:          j ≤ p (every previous token and itself).
/// - banded(W):      p - W < j ≤ p, or j < S.
/// - strided(W, K):  p - W < j ≤ p, or (j < p and j % K == 0), or j < S.
///
/// Sparse-Transformer "strided" = a local band plus every K-th earlier token; with S sinks
/// the first S tokens are always visible too (StreamingLLM's attention sinks).
package enum AttentionPattern: Equatable, Sendable, CustomStringConvertible {
    case dense
    case banded(window: Int)
    case strided(window: Int, stride: Int)

    package var description: String {
        switch self {
        case .dense: return "dense"
        case .banded(let w): return "banded:\(w)"
        case .strided(let w, let k): return "strided:\(w),\(k)"
        }
    }

    package var window: Int? {
        switch self {
        case .dense: return nil
        case .banded(let w), .strided(let w, _): return w
        }
    }

    /// Whether the query at `pos` sees the key at `j` (the definition above, written plainly).
    package func visible(query pos: Int, key j: Int, sinks: Int) -> Bool {
        guard j >= 0, j <= pos else { return false }
        switch self {
        case .dense: return true
        case .banded(let w): return j > pos - w || j < sinks
        case .strided(let w, let k): return j > pos - w || j % k == 0 || j < sinks
        }
    }

    /// Parses `dense`, `banded:W` or `strided:W,K` (one layer). `alternating:W` is a
    /// whole-model pattern: see `AttentionConfig.layers(spec:layerList:nLayer:maxWindow:)`.
    package static func parse(_ text: String, maxWindow: Int = Int.max) throws -> AttentionPattern {
        let s = text.trimmingCharacters(in: .whitespaces).lowercased()
        func int(_ v: Substring, _ what: String) throws -> Int {
            guard let n = Int(v.trimmingCharacters(in: .whitespaces)) else {
                throw ModelError("attention pattern '\(text)': \(what) '\(v)' is not an integer")
            }
            return n
        }
        func checkWindow(_ w: Int) throws {
            guard w > 0 else { throw ModelError("attention pattern '\(text)': the window W must be > 0, got \(w)") }
            guard w <= maxWindow else {
                throw ModelError("attention pattern '\(text)': the window W = \(w) exceeds the model's context of \(maxWindow) tokens")
            }
        }
        if s == "dense" { return .dense }
        let parts = s.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw ModelError("unknown attention pattern '\(text)' (expected dense, banded:W, strided:W,K or alternating:W)")
        }
        switch parts[0] {
        case "banded":
            let w = try int(parts[1], "window")
            try checkWindow(w)
            return .banded(window: w)
        case "strided":
            let a = parts[1].split(separator: ",", omittingEmptySubsequences: false)
            guard a.count == 2 else { throw ModelError("attention pattern '\(text)': strided needs W,K (e.g. strided:64,16)") }
            let w = try int(a[0], "window"), k = try int(a[1], "stride")
            try checkWindow(w)
            guard k > 0 else { throw ModelError("attention pattern '\(text)': the stride K must be > 0, got \(k)") }
            guard k <= maxWindow else { throw ModelError("attention pattern '\(text)': the stride K = \(k) exceeds the model's context of \(maxWindow) tokens") }
            return .strided(window: w, stride: k)
        case "alternating":
            throw ModelError("'\(text)' describes the whole model (even layers dense, odd banded); use it with --attention, not per layer")
        default:
            throw ModelError("unknown attention pattern '\(parts[0])' in '\(text)' (expected dense, banded:W, strided:W,K or alternating:W)")
        }
    }
}

/// Element type of the cached keys and values.
package enum KVType: String, CaseIterable, Sendable, Codable {
    case f32, f16, q8_0

    package var code: Int32 {
        switch self {
        case .f32: return QLM_KV_F32
        case .f16: return QLM_KV_F16
        case .q8_0: return QLM_KV_Q8_0
        }
    }

    /// Bytes of one head vector of `headDim` values (q8_0: a float scale + headDim int8).
    package func headBytes(_ headDim: Int) -> Int { Int(qlm_kv_head_bytes(code, Int64(headDim))) }

    package static func parse(_ s: String) throws -> KVType {
        guard let t = KVType(rawValue: s.lowercased()) else { throw ModelError("unknown KV type '\(s)' (expected f32, f16 or q8_0)") }
        return t
    }
}

/// How rotary models place cached keys when a layer's window drops positions.
package enum PositionMode: String, Sendable {
    /// Keys and queries keep their absolute positions (rotated at write). Exactly the trained
    /// model inside n_ctx; limited to n_ctx positions.
    case absolute
    /// StreamingLLM re-indexing: the visible keys are numbered 0, 1, ... in position order
    /// (sinks first) and the query takes the next number after the last key before itself, so
    /// the positions a rotary layer sees never exceed its visible count. Rotary only.
    case cache
}

/// The attention spec as given (strings), resolved against a model's hyper-parameters at load.
package struct AttentionConfig: Sendable {
    /// `dense`, `banded:W`, `strided:W,K` (every layer) or `alternating:W` (even layers dense, odd banded:W);
    /// nil: the pattern the architecture declares (dense when it declares none).
    package var attention: String?
    /// Per-layer patterns, comma-separated at the top level (`dense,banded:128,strided:64,16`); overrides `attention`.
    package var layerList: [String]?
    package var sinks: Int
    package var kvType: KVType
    /// nil: `.cache` for rotary models whose every layer is banded (they may run past n_ctx),
    /// `.absolute` otherwise.
    package var positions: PositionMode?

    package init(attention: String? = nil, layerList: [String]? = nil, sinks: Int = 0, kvType: KVType = .f16,
                positions: PositionMode? = nil) {
        self.attention = attention; self.layerList = layerList; self.sinks = sinks; self.kvType = kvType; self.positions = positions
    }

    /// Splits `dense,banded:128,strided:64,16` into layer entries (a number after a comma
    /// continues a strided entry).
    package static func splitLayerList(_ s: String) -> [String] {
        var out: [String] = []
        for piece in s.split(separator: ",", omittingEmptySubsequences: false) {
            let p = piece.trimmingCharacters(in: .whitespaces)
            if let last = out.last, last.lowercased().hasPrefix("strided:"), !last.contains(","), Int(p) != nil {
                out[out.count - 1] = last + "," + p
            } else {
                out.append(p)
            }
        }
        return out
    }

    /// One pattern per layer, validated: W in 1...nCtx, 0 ≤ S < every window, exactly nLayer entries.
    /// `modelDefault` is the architecture's own pattern, used when neither spec is given.
    package func layers(nLayer: Int, nCtx: Int, modelDefault: [AttentionPattern]? = nil) throws -> [AttentionPattern] {
        var pats: [AttentionPattern]
        if let list = layerList {
            guard list.count == nLayer else {
                throw ModelError("--attention-layers has \(list.count) entries; this model has \(nLayer) layers")
            }
            pats = try list.map { try AttentionPattern.parse($0, maxWindow: nCtx) }
        } else if attention == nil, let d = modelDefault {
            guard d.count == nLayer else { throw ModelError("the architecture declares \(d.count) layer patterns for \(nLayer) layers") }
            pats = d
        } else {
            let attention = self.attention ?? "dense"
            let s = attention.trimmingCharacters(in: .whitespaces).lowercased()
            if s.hasPrefix("alternating:") {
                let band = try AttentionPattern.parse("banded:" + s.dropFirst("alternating:".count), maxWindow: nCtx)
                pats = (0 ..< nLayer).map { $0 % 2 == 0 ? .dense : band }
            } else {
                pats = Array(repeating: try AttentionPattern.parse(attention, maxWindow: nCtx), count: nLayer)
            }
        }
        guard sinks >= 0 else { throw ModelError("--sinks must be ≥ 0, got \(sinks)") }
        if sinks > 0 {
            let windows = pats.compactMap { $0.window }
            guard let smallest = windows.min() else {
                throw ModelError("--sinks \(sinks) needs a banded or strided layer (every layer is dense)")
            }
            guard sinks < smallest else { throw ModelError("--sinks \(sinks) must be smaller than the window W = \(smallest)") }
        }
        return pats
    }
}
