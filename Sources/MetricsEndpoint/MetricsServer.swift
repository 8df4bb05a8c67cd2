import NIOCore
import NIOHTTP1
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Serves `GET /metrics` over HTTP/1.1 on one event-loop thread (SwiftNIO). Each scrape
/// asks `snapshot` for the engine's counters, on this thread, never the queue threads.
public final class MetricsServer: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    /// Binds `host:port` and starts answering; throws when the address cannot be bound.
    public init(host: String, port: Int, snapshot: @escaping @Sendable () -> MetricsSnapshot) throws {
        let renderer = MetricsRenderer()
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 16)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(
                            MetricsHandler(render: { renderer.render(snapshot()) }))
                    }
                }
                .bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            // The system's reason, not NIO's internals ("bind(descriptor:ptr:bytes:): …").
            if let failure = error as? IOError { throw BindFailure(code: failure.errnoCode) }
            throw error
        }
    }

    /// Why the address could not be bound: the errno of bind() or listen().
    public struct BindFailure: Error, CustomStringConvertible {
        public let code: Int32
        public var description: String { String(cString: strerror(code)) }
    }

    /// The port it listens on (the one asked for, or the kernel's pick for port 0).
    public var port: Int { channel.localAddress?.port ?? 0 }

    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// One connection's requests: `/metrics` gets the text format, anything else a short error.
private final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: () -> String
    private var request: HTTPRequestHead?

    init(render: @escaping () -> String) { self.render = render }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            let (status, body, type): (HTTPResponseStatus, String, String) = switch (head.method, path) {
            case (.GET, "/metrics"): (.ok, render(), "text/plain; version=0.0.4; charset=utf-8")
            case (.GET, _): (.notFound, "vpm serves its metrics at /metrics\n", "text/plain; charset=utf-8")
            default: (.methodNotAllowed, "only GET /metrics\n", "text/plain; charset=utf-8")
            }
            respond(context: context, head: head, status: status, body: body, type: type)
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus,
                         body: String, type: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
