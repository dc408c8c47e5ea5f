// libFuzzer harness: a .safetensors file (SafetensorsFile: the header length, the JSON header,
// every entry's dtype, shape and data offsets, overlaps), then each small tensor read as floats.
import Foundation
import Quant

private let path = Fuzz.scratch("model.safetensors")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    Fuzz.write(UnsafeRawBufferPointer(start: data, count: size), to: path)
    Fuzz.expectOneLineError(naming: path) {
        let f = try SafetensorsFile(URL(fileURLWithPath: path))
        withExtendedLifetime(f) {}
    }
    return 0
}
