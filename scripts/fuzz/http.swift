// libFuzzer harness: the HTTP request parser of `run serve` (NIOHTTP1's decoder, as
// configureHTTPServerPipeline sets it up, plus QuantLM's HTTPHandler from
// Sources/run/Serve/HTTPServer.swift: body limit, request assembly, the deadline) on an
// EmbeddedChannel. Arbitrary bytes must give requests, 4xx answers or a closed channel: no crash.
// The bytes arrive in pieces split where the input has 0xFF (so partial heads are covered).
import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let channel = EmbeddedChannel()
    defer { _ = try? channel.finish() }
    do {
        let ops = channel.pipeline.syncOperations
        try ops.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
        // The handler answers nothing itself here (the API runs off the event loop in the server).
        try ops.addHandler(HTTPHandler(maxBody: 4096, readTimeout: .seconds(10)) { _, _ in })
        channel.pipeline.fireChannelActive()
        let bytes = UnsafeBufferPointer(start: data, count: size)
        for piece in bytes.split(separator: 0xFF, omittingEmptySubsequences: false) {
            var buf = channel.allocator.buffer(capacity: piece.count)
            buf.writeBytes(piece)
            try channel.writeInbound(buf)
            while let _ = try channel.readOutbound(as: IOData.self) {}
            if !channel.isActive { break }
        }
    } catch {
        // Decoder errors close the channel (the error handler answers 400): expected.
    }
    return 0
}
