import NIOCore

/// One negotiation's connection: send the request line when connected, check the first
/// line that comes back, and hand the outcome to the pending negotiation.
final class NegotiationClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let request: [UInt8]
    private let checker: AnswerChecker
    private let pending: PendingNegotiation

    init(request: [UInt8], checker: AnswerChecker, pending: PendingNegotiation) {
        self.request = request
        self.checker = checker
        self.pending = pending
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let (answer, outcome) = checker.check(Array(unwrapInboundIn(data).readableBytesView))
        pending.finish(answer, outcome)
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        pending.finish(.failed(reason: "bad answer from negotiation peer \(pending.endpoint): \(error)"), .badAnswer)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        pending.finish(.failed(reason: "negotiation peer \(pending.endpoint) closed the connection without an answer (does it have a key for this host? see its rejection counters)"), .badAnswer)
        context.fireChannelInactive()
    }
}
