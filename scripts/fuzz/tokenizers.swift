// libFuzzer harness: the tokenizers on arbitrary bytes. The first byte picks what the rest is:
//   0  text for the llama2.c tokenizer: its heap merge must equal run.c's rescan (inputs up to
//      1 KiB) and decode(encode(x)) must give x back
//   1  text for GPT-2's byte-level BPE (SmolLM2's vocabulary): decode(encode(x)) == x without
//      the bytes the vocabulary has no token for (SmolLM2 lacks 21, e.g. 0x1D; HF tokenizers
//      drops them too and gives the same ids); a difference is a crash
//   2  text for SentencePiece (Gemma 3's vocabulary): encode and decode
//   3+ a serialized tokenizer blob of each kind (llama2c, gpt2-bpe, spm, bpe-json): parsed
//      with a named error or, if it parses, used on a fixed text
// Vocabularies come from FUZZ_LLAMA2C_TOKENIZER (tok512.bin), FUZZ_BPE_GGUF and FUZZ_SPM_GGUF
// (run.sh sets them); a missing one skips its mode.
import Foundation
import Quant
import Runtime

private func fromGGUF(_ key: String) -> (any Tokenizer)? {
    guard let p = ProcessInfo.processInfo.environment[key] else { return nil }
    do {
        let c = try Checkpoint.open(URL(fileURLWithPath: p))
        let payload = try TokenizerPayloads.make(c.tokenizer!, vocabSize: c.hparams.vocabSize)
        return try TokenizerPayloads.load(kind: payload.kind, blob: payload.blob, vocabSize: c.hparams.vocabSize, source: p, file: p)
    } catch { fatalError("\(key): \(error)") }
}

private let llama2c: Llama2cTokenizer? = ProcessInfo.processInfo.environment["FUZZ_LLAMA2C_TOKENIZER"].map {
    try! Llama2cTokenizer(path: $0, vocabSize: 512)
}
private let bpe = fromGGUF("FUZZ_BPE_GGUF")
private let spm = fromGGUF("FUZZ_SPM_GGUF")
/// The bytes that have a token of their own in the BPE vocabulary (the others are dropped).
private let bpeBytes: [Bool] = {
    var has = [Bool](repeating: false, count: 256)
    if let t = bpe { for id in 0 ..< Int32(t.vocabSize) { let b = t.tokenBytes(id); if b.count == 1 { has[Int(b[0])] = true } } }
    return has
}()

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> CInt {
    _ = (llama2c, bpe, spm, bpeBytes) // load the vocabularies before the clock starts
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let rest = [UInt8](UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] {
    case 0:
        guard let t = llama2c else { return 0 }
        let ids = t.encode(bytes: rest, bos: true, eos: false)
        if rest.count <= 1024 {
            let ref = t.encodeByRescan(bytes: rest, bos: true)
            precondition(ids == ref, "llama2c heap merge \(ids) != rescan \(ref) for \(rest)")
        }
        precondition(t.decode(ids) == rest, "llama2c round trip lost bytes of \(rest)")
    case 1:
        guard let t = bpe else { return 0 }
        let s = String(decoding: rest, as: UTF8.self)
        let back = t.decode(t.encode(s))
        let want = s.utf8.filter { bpeBytes[Int($0)] }
        precondition(back == want, "bpe round trip of \(Array(s.utf8)) gave \(back)")
    case 2:
        guard let t = spm else { return 0 }
        _ = t.decode(t.encode(String(decoding: rest, as: UTF8.self)))
    default:
        for kind in ["llama2c", "gpt2-bpe", "spm", "bpe-json"] {
            Fuzz.expectOneLineError(naming: "fuzz-blob") {
                let t = try TokenizerPayloads.load(kind: kind, blob: rest, vocabSize: 512, source: "fuzz-blob", file: "fuzz-blob")
                _ = t.decode(t.encode("Once upon a time \u{1F600} <s> \n\t"))
            }
        }
    }
    return 0
}
