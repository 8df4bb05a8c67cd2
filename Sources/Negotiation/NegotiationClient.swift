public import Crypto
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// The client side of the negotiation channel: one TCP connection per negotiation, many
/// in flight at once on a small event-loop group, each with its own deadline, so a slow
/// or dead peer delays only its own negotiations.
public final class NegotiationClient: Sendable {
    private let group: MultiThreadedEventLoopGroup
    /// Wall clock in Unix milliseconds; replaceable for tests.
    let clock: @Sendable () -> Int64

    /// Counters and negotiations in flight. A separate object so that nothing on the
    /// event loop keeps the client itself alive.
    private let registry = NegotiationRegistry()

    public convenience init() {
        self.init(threads: 1, clock: { NegotiationMessage.currentTimestamp() })
    }

    init(threads: Int, clock: @escaping @Sendable () -> Int64) {
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        self.clock = clock
    }

    public var statistics: NegotiationClientStatistics {
        registry.state.withLock { $0.statistics }
    }

    /// Asks the engine at `host`:`port` for the virtual port of an instance for `request`.
    ///
    /// Never blocks the caller. `completion` is called exactly once, on an event-loop
    /// thread, within `timeout` (connect and exchange together): `.accepted` for a valid
    /// ACK, `.refused` for a valid NAK, `.failed` otherwise. After `stop()` it is called
    /// at once on the caller's thread with `.failed`.
    public func negotiate(
        _ request: NegotiationRequest,
        engine host: String,
        port: Int,
        key: SymmetricKey,
        timeout: Duration,
        completion: @escaping @Sendable (NegotiationAnswer) -> Void
    ) {
        let endpoint = PeerAddress.endpoint(host, port)
        let envelope = NegotiationMessage.Envelope(nonce: NegotiationMessage.makeNonce(), timestamp: clock(),
                                                   body: .negotiate(request))
        let line = NegotiationMessage.encode(envelope, key: key)
        guard line.count <= NegotiationMessage.maximumLineLength else {
            completion(.failed(reason: "the negotiation request for AID \(request.aid) is longer than \(NegotiationMessage.maximumLineLength) bytes"))
            return
        }
        let address: SocketAddress
        do {
            address = try SocketAddress(ipAddress: host, port: port)
        } catch {
            completion(.failed(reason: "negotiation peer \(endpoint) is not an IP address"))
            return
        }
        let pending = PendingNegotiation(registry: registry, endpoint: endpoint, completion: completion)
        let admitted = registry.state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.statistics.sent += 1
            state.inFlight[ObjectIdentifier(pending)] = pending
            return true
        }
        guard admitted else {
            completion(.failed(reason: "the negotiation client is stopped"))
            return
        }

        let loop = group.next()
        let amount = TimeAmount(timeout)
        pending.setDeadline(loop.scheduleTask(in: amount) {
            pending.finish(.failed(reason: "no answer from negotiation peer \(endpoint) within \(timeout)"), .timedOut)
        })
        let checker = AnswerChecker(sharedKey: SharedKey(key), requestNonce: envelope.nonce, endpoint: endpoint, clock: clock)
        ClientBootstrap(group: loop)
            .connectTimeout(amount)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(LineFrameDecoder()),
                        NegotiationClientHandler(request: line, checker: checker, pending: pending)
                    )
                }
            }
            .connect(to: address)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    pending.attach(channel)
                case .failure(ChannelError.connectTimeout):
                    pending.finish(.failed(reason: "no answer from negotiation peer \(endpoint) within \(timeout)"), .timedOut)
                case .failure(let error):
                    pending.finish(.failed(reason: "negotiation peer \(endpoint) is unreachable: \(Self.explain(error))"), .unreachable)
                }
            }
    }

    /// Ends every negotiation in flight (their completions get `.failed`) and the event
    /// loop. Waits for the loop to end unless called on an event-loop thread (from inside
    /// a completion, say), where it only starts the shutdown.
    public func stop() {
        registry.stopAll()
        if MultiThreadedEventLoopGroup.currentEventLoop == nil {
            try? group.syncShutdownGracefully()
        } else {
            group.shutdownGracefully { _ in }
        }
    }

    deinit {
        registry.stopAll()
        group.shutdownGracefully { _ in }
    }

    enum Outcome {
        case accepted, refused, timedOut, unreachable, badAnswer
    }

    private static func explain(_ error: any Error) -> String {
        if let error = error as? IOError {
            switch error.errnoCode {
            case ECONNREFUSED: return "connection refused (is vpm running there, with its negotiation port open?)"
            case ENETUNREACH, EHOSTUNREACH: return "no route to it (check the address and the network)"
            default: return "\(error)"
            }
        }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return explain(first.error)
        }
        return "\(error)"
    }
}
