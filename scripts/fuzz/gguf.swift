// libFuzzer harness: a GGUF file as `convert` reads it (GGUFFile: header, metadata, tensor infos;
// Checkpoint.open: the reader's architecture tables, shapes, naming, the layer check; every small
// tensor dequantized to floats; the embedded vocabulary made into a tokenizer).
import Foundation
import Quant
import Runtime

private let path = Fuzz.scratch("model.gguf")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    Fuzz.write(UnsafeRawBufferPointer(start: data, count: size), to: path)
    let url = URL(fileURLWithPath: path)
    Fuzz.expectOneLineError(naming: path) {
        _ = try GGUFFile(url)
        let c = try Checkpoint.open(url)
        // Small tensors dequantized, at most 2^20 elements per input (a file may list
        // thousands of tensors; one of each type is what the dequantizers need).
        var out = [Float](repeating: 0, count: 1 << 16)
        var budget = 1 << 20
        for t in c.tensors where t.elementCount <= 1 << 16 && t.elementCount <= budget {
            budget -= t.elementCount
            out.withUnsafeMutableBufferPointer { t.readFloats(into: $0.baseAddress!) }
        }
        if let tok = c.tokenizer {
            let p = try TokenizerPayloads.make(tok, vocabSize: c.hparams.vocabSize)
            let t = try TokenizerPayloads.load(kind: p.kind, blob: p.blob, vocabSize: c.hparams.vocabSize, source: path, file: path)
            _ = t.decode(t.encode("Once upon a time, \u{1F600} 123"))
        }
    }
    return 0
}
