import Foundation
import Quant

/// Every tensor of a checkpoint as an owned f32 buffer, and the checkpoint reading them: the
/// writable weights of the trial models that sequential GPTQ and the size target's sensitivity
/// write to a temporary f32 .qlm (a buffer's pointer stays valid while this object lives).
final class FloatWorkingCopy {
    let checkpoint: Checkpoint
    let buffers: [UnsafeMutablePointer<Float>]
    /// Tensor name -> its index in `checkpoint.tensors` and `buffers`.
    let index: [String: Int]

    init(_ source: Checkpoint) {
        var work = source
        var buffers: [UnsafeMutablePointer<Float>] = []
        var index: [String: Int] = [:]
        for (i, t) in source.tensors.enumerated() {
            let b = UnsafeMutablePointer<Float>.allocate(capacity: t.elementCount)
            t.readFloats(into: b)
            buffers.append(b)
            index[t.name] = i
            work.tensors[i] = SourceTensor(key: t.key, name: t.name, shape: t.shape, dtype: .f32,
                                           bytes: UnsafeRawBufferPointer(start: b, count: t.elementCount * 4),
                                           transposed: false, origin: t.origin)
        }
        checkpoint = work
        self.buffers = buffers
        self.index = index
    }

    deinit { for b in buffers { b.deallocate() } }
}
