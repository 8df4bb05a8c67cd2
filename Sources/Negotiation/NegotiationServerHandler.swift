import Crypto
import NIOCore

/// One accepted connection: read one line within the read timeout, answer or close.
final class NegotiationServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let server: NegotiationServer
    private var peer = "unknown"
    private var keys: [SymmetricKey] = []
    /// Set once the connection's outcome is decided; later events are ignored.
    private var finished = false
    private var deadline: Scheduled<Void>?

    init(server: NegotiationServer) {
        self.server = server
    }

    func channelActive(context: ChannelHandlerContext) {
        peer = PeerAddress.text(of: context.channel.remoteAddress)
        keys = server.keys(peer)
        guard !keys.isEmpty else {
            finished = true
            server.reject(.unknownPeer, peer, "no key is configured for \(peer)")
            context.close(promise: nil)
            return
        }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: TimeAmount(server.readTimeout)) {
            bound.value.timedOut(channel: channel)
        }
        context.fireChannelActive()
    }

    private func timedOut(channel: any Channel) {
        guard !finished else { return }
        finished = true
        server.reject(.malformed, peer, "no complete line within \(server.readTimeout)")
        channel.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !finished, !keys.isEmpty else { return }
        finished = true
        deadline?.cancel()
        let line = Array(unwrapInboundIn(data).readableBytesView)
        guard let answer = server.respond(to: line, from: peer, keys: keys) else {
            context.close(promise: nil)
            return
        }
        let channel = context.channel
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: answer)), promise: written)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !finished {
            finished = true
            deadline?.cancel()
            server.reject(.malformed, peer, "\(error)")
        }
        context.close(promise: nil)
    }

    /// End of input (the peer half-closed). An unfinished line has already been reported
    /// by the line decoder; a connection that sent nothing is closed without a count.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event as? ChannelEvent == .inputClosed, !finished {
            finished = true
            deadline?.cancel()
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finished = true
        deadline?.cancel()
        context.fireChannelInactive()
    }
}
