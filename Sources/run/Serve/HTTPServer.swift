import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A request as the API sees it: method, path (query stripped), body bytes.
struct HTTPRequestData {
    var method: HTTPMethod
    var path: String
    var headers: HTTPHeaders
    var body: [UInt8]
}

/// Set when the client goes away (the connection closes): the engine frees the slot at its next step.
final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// Writes one response from any thread: a whole JSON body, or a server-sent-event stream.
final class ResponseWriter: @unchecked Sendable {
    private let channel: Channel
    private let keepAlive: Bool
    private let onEnd: @Sendable () -> Void
    private let lock = NSLock()
    private var ended = false
    let cancelled: CancelFlag

    init(channel: Channel, keepAlive: Bool, cancelled: CancelFlag, onEnd: @escaping @Sendable () -> Void) {
        self.channel = channel; self.keepAlive = keepAlive; self.cancelled = cancelled; self.onEnd = onEnd
    }

    private func head(_ status: HTTPResponseStatus, _ headers: [(String, String)]) -> HTTPResponseHead {
        var h = HTTPHeaders(headers)
        h.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        return HTTPResponseHead(version: .http1_1, status: status, headers: h)
    }

    /// The whole response at once.
    func send(_ status: HTTPResponseStatus, json: [String: Any]) {
        let data = (try? JSONSerialization.data(withJSONObject: json, options: [.withoutEscapingSlashes])) ?? Data("{}".utf8)
        send(status, body: [UInt8](data), contentType: "application/json")
    }

    func send(_ status: HTTPResponseStatus, body: [UInt8], contentType: String) {
        guard claimEnd() else { return }
        var buf = channel.allocator.buffer(capacity: body.count)
        buf.writeBytes(body)
        channel.write(HTTPServerResponsePart.head(head(status, [("Content-Type", contentType), ("Content-Length", "\(body.count)")])),
                      promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(buf)), promise: nil)
        finish()
    }

    /// An OpenAI-shaped error: {"error": {"message", "type", "param", "code"}}.
    func error(_ status: HTTPResponseStatus, _ message: String, type: String = "invalid_request_error", param: String? = nil, code: String? = nil) {
        send(status, json: ["error": ["message": message, "type": type, "param": param as Any? ?? NSNull(), "code": code as Any? ?? NSNull()]])
    }

    private var streaming = false

    /// Starts a `text/event-stream` response.
    func startEvents() {
        lock.lock(); streaming = true; lock.unlock()
        channel.writeAndFlush(HTTPServerResponsePart.head(head(.ok, [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                                                                    ("Transfer-Encoding", "chunked")])), promise: nil)
    }

    /// One `data: ...` event.
    func event(_ payload: String) {
        lock.lock(); let done = ended; lock.unlock()
        guard !done else { return }
        let bytes = Array("data: \(payload)\n\n".utf8)
        var buf = channel.allocator.buffer(capacity: bytes.count)
        buf.writeBytes(bytes)
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buf)), promise: nil)
    }

    func event(json: [String: Any]) {
        let data = (try? JSONSerialization.data(withJSONObject: json, options: [.withoutEscapingSlashes])) ?? Data("{}".utf8)
        event(String(decoding: data, as: UTF8.self))
    }

    /// Ends an event stream.
    func endEvents() {
        guard claimEnd() else { return }
        finish()
    }

    private func claimEnd() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if ended { return false }
        ended = true
        return true
    }

    private func finish() {
        let ch = channel, keep = keepAlive, done = onEnd
        ch.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in
            done()
            if !keep { ch.close(promise: nil) }
        }
    }
}

/// One connection: collects a request (bounded body; the head and body must arrive within the
/// read timeout in total, counted from the connection's start or the previous response's end),
/// hands it to the API off the event loop, and cancels its work if the client leaves.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State { case idle, receiving, rejected, responding }
    private var state = State.idle
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var cancel = CancelFlag()
    private let maxBody: Int
    private let handle: @Sendable (HTTPRequestData, ResponseWriter) -> Void
    /// Where `handle` runs: off the event loop (a global queue) in the server; the fuzz harness
    /// (scripts/fuzz/http.swift) runs it in place, on its EmbeddedChannel's thread.
    private let dispatch: (@escaping @Sendable () -> Void) -> Void
    /// The whole-request deadline: a byte at a time does not extend it (slowloris).
    private let readTimeout: TimeAmount
    private var deadline: Scheduled<Void>?

    init(maxBody: Int, readTimeout: TimeAmount,
         dispatch: @escaping (@escaping @Sendable () -> Void) -> Void = { DispatchQueue.global().async(execute: $0) },
         handle: @escaping @Sendable (HTTPRequestData, ResponseWriter) -> Void) {
        self.maxBody = maxBody
        self.readTimeout = readTimeout
        self.dispatch = dispatch
        self.handle = handle
    }

    /// Closes the connection unless a whole request arrives within the read timeout from now.
    private func armDeadline(_ channel: Channel) {
        deadline?.cancel()
        deadline = channel.eventLoop.scheduleTask(in: readTimeout) { channel.close(promise: nil) }
    }

    func channelActive(context: ChannelHandlerContext) {
        armDeadline(context.channel)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.removeAll(keepingCapacity: true)
            state = .receiving
            if let n = h.headers.first(name: "content-length").flatMap({ Int($0) }), n > maxBody { reject(context, tooLarge: n) }
        case .body(var b):
            guard state == .receiving else { return }
            if body.count + b.readableBytes > maxBody { reject(context, tooLarge: body.count + b.readableBytes); return }
            body += b.readBytes(length: b.readableBytes) ?? []
        case .end:
            guard state == .receiving, let h = head else { return }
            state = .responding
            deadline?.cancel()
            deadline = nil
            cancel = CancelFlag()
            let path = String(h.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            let req = HTTPRequestData(method: h.method, path: path, headers: h.headers, body: body)
            body = []
            let loop = context.eventLoop
            let me = NIOLoopBound(self, eventLoop: loop), channel = context.channel
            let writer = ResponseWriter(channel: channel, keepAlive: h.isKeepAlive, cancelled: cancel) {
                loop.execute { if me.value.state == .responding { me.value.state = .idle; me.value.armDeadline(channel) } }
            }
            let handle = self.handle
            dispatch { handle(req, writer) }
        }
    }

    /// 413 and close: the rest of the body is never read.
    private func reject(_ context: ChannelHandlerContext, tooLarge n: Int) {
        state = .rejected
        let writer = ResponseWriter(channel: context.channel, keepAlive: false, cancelled: cancel) {}
        writer.error(.payloadTooLarge, "request body of \(n) bytes exceeds this server's limit of \(maxBody) bytes", code: "body_too_large")
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // A read timeout only matters while a request is incomplete (slowloris); a long
        // generation reads nothing from the client and must not be cut.
        if let e = event as? IdleStateHandler.IdleStateEvent, e == .read {
            if state == .receiving || state == .idle { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        cancel.set()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        cancel.set()
        context.close(promise: nil)
    }
}

/// The listening server: one event loop thread for I/O; the model runs on the engine's thread.
final class HTTPServer {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private(set) var channel: Channel?

    func start(host: String, port: Int, maxBody: Int, readTimeout: TimeAmount,
               handle: @escaping @Sendable (HTTPRequestData, ResponseWriter) -> Void) throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    try ops.addHandler(IdleStateHandler(readTimeout: readTimeout))
                    try ops.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                    try ops.addHandler(HTTPHandler(maxBody: maxBody, readTimeout: readTimeout, handle: handle))
                }
            }
            .childChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
        let ch = try bootstrap.bind(host: host, port: port).wait()
        channel = ch
        return ch.localAddress?.port ?? port
    }

    /// Stops accepting connections (open ones stay until their responses end).
    func stopAccepting() { channel?.close(promise: nil) }
}
