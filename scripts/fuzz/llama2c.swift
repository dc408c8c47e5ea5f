// libFuzzer harness: a llama2.c checkpoint (.bin) as `convert` reads it: the reader is chosen by
// the header's plausibility (the file is named .bin here, so the reader always runs), checks
// every header field and the size, and names the tensors; small ones are read as floats.
import Foundation
import Quant
import Runtime

private let path = Fuzz.scratch("model.bin")
private let tokenizer = ProcessInfo.processInfo.environment["FUZZ_TOKENIZER"].map { URL(fileURLWithPath: $0) }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    Fuzz.write(UnsafeRawBufferPointer(start: data, count: size), to: path)
    Fuzz.expectOneLineError(naming: path) {
        let c = try Checkpoint.open(URL(fileURLWithPath: path), tokenizer: tokenizer)
        var out: [Float] = []
        for t in c.tensors where t.elementCount <= 1 << 16 {
            out = [Float](repeating: 0, count: t.elementCount)
            out.withUnsafeMutableBufferPointer { t.readFloats(into: $0.baseAddress!) }
        }
    }
    return 0
}
