// libFuzzer harness: the HTTP request parser of `run serve` (NIOHTTP1's decoder, as
// configureHTTPServerPipeline sets it up, plus QuantLM's HTTPHandler from
// Sources/run/Serve/HTTPServer.swift: body limit, request assembly, the deadline) on an
// EmbeddedChannel. Arbitrary bytes must give requests, 4xx answers or a closed channel: no crash.
// The bytes arrive in pieces split where the input has 0xFF (so partial heads are covered);
// after odd-length inputs the read deadline passes.
import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let channel = EmbeddedChannel()
    // finish() must also accept a channel the handlers closed: plain finish() throws
    // alreadyClosed before it runs the loop, so the pipeline (which holds the channel, whose
    // loop holds the pending tasks) was never torn down, and every closed connection leaked
    // its channel (the 4 GB out-of-memory of the first run: 345,517 channels alive after
    // 417,895 inputs). A served connection has no such cycle: NIO tears its pipeline down on close.
    defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
    do {
        let ops = channel.pipeline.syncOperations
        try ops.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
        // The API answers nothing here; it runs in place (an EmbeddedChannel may only be used,
        // and freed, on the thread that made it; the server runs it on a global queue).
        try ops.addHandler(HTTPHandler(maxBody: 4096, readTimeout: .seconds(10), dispatch: { $0() }) { _, _ in })
        // Connected, so isActive is true until a handler closes the channel (firing
        // channelActive by hand left it false and only the first piece was ever fed).
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8080)).wait()
        let bytes = UnsafeBufferPointer(start: data, count: size)
        for piece in bytes.split(separator: 0xFF, omittingEmptySubsequences: false) {
            var buf = channel.allocator.buffer(capacity: piece.count)
            buf.writeBytes(piece)
            try channel.writeInbound(buf)
            while let _ = try channel.readOutbound(as: IOData.self) {}
            if !channel.isActive { break }
        }
        // Odd-length inputs then let the whole-request deadline pass (the loop's clock moves
        // only when told), so its close path runs too.
        if size % 2 == 1, channel.isActive { channel.embeddedEventLoop.advanceTime(by: .seconds(11)) }
    } catch {
        // Decoder errors close the channel (the error handler answers 400): expected.
    }
    return 0
}
