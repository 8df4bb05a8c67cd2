public import Crypto
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// The server side of the negotiation channel: accepts one request per connection,
/// verifies it (framing, MAC, timestamp, nonce, version), asks `handler`, and answers
/// with a signed ACK or NAK. A request that fails a check is counted and the connection
/// is closed without an answer. Nothing a peer sends can stop the server.
///
/// `key` and `handler` run on the server's event-loop thread and must return quickly
/// (a table lookup, not I/O): a slow handler delays every other negotiation.
public final class NegotiationServer: Sendable {
    /// Where the server listens: an address and a port, or (`host` nil) every address of
    /// both families on the port — one dual-stack socket, IPv4 peers seen as plain IPv4;
    /// where the host has no IPv6, IPv4 only.
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host: String?
        public var port: Int

        public init(host: String? = nil, port: Int) {
            self.host = host
            self.port = port
        }

        /// "198.18.0.1:9901", "[2001:db8::1]:9901", or "*:9901" for every address.
        public var description: String { host.map { PeerAddress.endpoint($0, port) } ?? "*:\(port)" }
    }

    public let endpoints: [Endpoint]

    /// Called for every rejected connection (the reason, the peer's address, a detail
    /// sentence), on the event-loop thread; for the engine's log.
    public typealias RejectionObserver = @Sendable (_ reason: NegotiationRejection, _ peerAddress: String, _ detail: String) -> Void

    /// The keys a peer may sign with: one, or during a fleet engine's key rotation its new
    /// and its previous one (docs/fleet.md); empty for an unknown peer.
    let keys: @Sendable (String) -> [SymmetricKey]
    let handler: @Sendable (NegotiationRequest, String) -> NegotiationAnswer
    let observer: RejectionObserver?
    /// Wall clock in Unix milliseconds; replaceable for tests.
    let clock: @Sendable () -> Int64
    let readTimeout: Duration

    private struct Running {
        var group: MultiThreadedEventLoopGroup
        var channels: [any Channel]
    }

    private struct Checks {
        var statistics = NegotiationStatistics()
        var nonces: NonceCache
    }

    private let running = Mutex<Running?>(nil)
    private let checks: Mutex<Checks>

    /// One endpoint: `host` nil is every address of both families.
    public convenience init(
        host: String? = nil,
        port: Int,
        key: @escaping @Sendable (String) -> SymmetricKey?,
        handler: @escaping @Sendable (NegotiationRequest, _ peerAddress: String) -> NegotiationAnswer,
        rejected: RejectionObserver? = nil
    ) {
        self.init(endpoints: [Endpoint(host: host, port: port)], key: key, handler: handler, rejected: rejected)
    }

    /// Several endpoints served as one: one nonce cache, one set of counters, so a request
    /// accepted on one is a replay on every other.
    public convenience init(
        endpoints: [Endpoint],
        key: @escaping @Sendable (String) -> SymmetricKey?,
        handler: @escaping @Sendable (NegotiationRequest, _ peerAddress: String) -> NegotiationAnswer,
        rejected: RejectionObserver? = nil
    ) {
        self.init(endpoints: endpoints, keys: { key($0).map { [$0] } ?? [] }, handler: handler, rejected: rejected)
    }

    /// As above, with every key a peer may sign with: a request verified by one of them is
    /// answered with that one.
    public convenience init(
        endpoints: [Endpoint],
        keys: @escaping @Sendable (String) -> [SymmetricKey],
        handler: @escaping @Sendable (NegotiationRequest, _ peerAddress: String) -> NegotiationAnswer,
        rejected: RejectionObserver? = nil
    ) {
        self.init(endpoints: endpoints, keys: keys, handler: handler, rejected: rejected,
                  nonceCapacity: 65_536, readTimeout: NegotiationMessage.readTimeout,
                  clock: { NegotiationMessage.currentTimestamp() })
    }

    convenience init(
        endpoints: [Endpoint],
        key: @escaping @Sendable (String) -> SymmetricKey?,
        handler: @escaping @Sendable (NegotiationRequest, String) -> NegotiationAnswer,
        rejected: RejectionObserver?,
        nonceCapacity: Int,
        readTimeout: Duration,
        clock: @escaping @Sendable () -> Int64
    ) {
        self.init(endpoints: endpoints, keys: { key($0).map { [$0] } ?? [] }, handler: handler, rejected: rejected,
                  nonceCapacity: nonceCapacity, readTimeout: readTimeout, clock: clock)
    }

    init(
        endpoints: [Endpoint],
        keys: @escaping @Sendable (String) -> [SymmetricKey],
        handler: @escaping @Sendable (NegotiationRequest, String) -> NegotiationAnswer,
        rejected: RejectionObserver?,
        nonceCapacity: Int,
        readTimeout: Duration,
        clock: @escaping @Sendable () -> Int64
    ) {
        precondition(!endpoints.isEmpty, "a negotiation server listens somewhere")
        self.endpoints = endpoints
        self.keys = keys
        self.handler = handler
        self.observer = rejected
        self.clock = clock
        self.readTimeout = readTimeout
        // The nonces an earlier server (this engine before a restart) accepted are gone:
        // a request made before this one existed cannot be proven fresh, so it is refused
        // as replayed (docs/negotiation.md). Peers' requests are made after it, minus their
        // clocks' difference from ours.
        var nonces = NonceCache(capacity: nonceCapacity)
        nonces.refuse(olderThan: clock())
        checks = Mutex(Checks(nonces: nonces))
    }

    /// Binds every endpoint and starts serving. Throws a `NegotiationServerError` that
    /// names the endpoint that could not be bound (and binds none).
    public func start() throws {
        try running.withLock { running in
            guard running == nil else { return }
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                // A peer may half-close after its line: it still gets the answer, and an
                // unfinished line is counted before the connection closes.
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(LineFrameDecoder()),
                            NegotiationServerHandler(server: self)
                        )
                    }
                }
            var channels: [any Channel] = []
            for endpoint in endpoints {
                do {
                    channels.append(try Self.bind(bootstrap, endpoint))
                } catch {
                    for channel in channels { try? channel.close().wait() }
                    try? group.syncShutdownGracefully()
                    throw NegotiationServerError(host: endpoint.host, port: endpoint.port, reason: Self.explain(error))
                }
            }
            running = Running(group: group, channels: channels)
        }
    }

    private static func bind(_ bootstrap: ServerBootstrap, _ endpoint: Endpoint) throws -> any Channel {
        if let host = endpoint.host {
            return try bootstrap.bind(to: try SocketAddress.makeAddressResolvingHost(host, port: endpoint.port)).wait()
        }
        // Every address: one IPv6 socket that takes IPv4 too (whatever net.ipv6.bindv6only
        // says); a host without IPv6 gets the IPv4 wildcard.
        do {
            return try bootstrap
                .serverChannelOption(ChannelOptions.Types.SocketOption(level: .ipv6, name: .ipv6_v6only), value: 0)
                .bind(to: try SocketAddress(ipAddress: "::", port: endpoint.port)).wait()
        } catch let error as IOError where error.errnoCode == EAFNOSUPPORT || error.errnoCode == EADDRNOTAVAIL {
            return try bootstrap.bind(to: try SocketAddress(ipAddress: "0.0.0.0", port: endpoint.port)).wait()
        }
    }

    /// The port actually bound (useful after binding port 0); nil when not running.
    public var boundPort: Int? { boundPorts.first }

    /// The ports bound, one per endpoint in order; empty when not running.
    public var boundPorts: [Int] {
        running.withLock { $0?.channels.compactMap { $0.localAddress?.port } ?? [] }
    }

    public var statistics: NegotiationStatistics {
        checks.withLock { checks in
            var statistics = checks.statistics
            statistics.nonceCacheEvictions = checks.nonces.evictions
            return statistics
        }
    }

    /// Closes the listener and every open connection and ends the event loop. Waits for
    /// that unless called on an event-loop thread, where it only starts it. Call it: a
    /// running server keeps itself alive.
    public func stop() {
        guard let stopped = running.withLock({ running -> Running? in
            defer { running = nil }
            return running
        }) else { return }
        if MultiThreadedEventLoopGroup.currentEventLoop == nil {
            for channel in stopped.channels { try? channel.close().wait() }
            try? stopped.group.syncShutdownGracefully()
        } else {
            for channel in stopped.channels { channel.close(promise: nil) }
            stopped.group.shutdownGracefully { _ in }
        }
    }

    // MARK: - One request

    /// Checks one request line from `peer` and returns the answer line, or nil (counted,
    /// observed) when the request is rejected. The checks' order is the protocol's.
    func respond(to line: [UInt8], from peer: String, key: SymmetricKey) -> [UInt8]? {
        respond(to: line, from: peer, keys: [key])
    }

    /// As above, with every key the peer may sign with; the answer is signed with the one
    /// that verified the request.
    func respond(to line: [UInt8], from peer: String, keys: [SymmetricKey]) -> [UInt8]? {
        var verified: (envelope: NegotiationMessage.Envelope, key: SymmetricKey)?
        for candidate in keys where verified == nil {
            do throws(NegotiationMessageError) {
                verified = (try NegotiationMessage.decode(line, key: candidate), candidate)
            } catch {
                switch error {
                case .forged: continue
                case .malformed(let detail): return reject(.malformed, peer, detail)
                }
            }
        }
        guard let (envelope, key) = verified else {
            return reject(.forged, peer, "the MAC does not match the key for \(peer) (do both engines have the same key?)")
        }
        let now = clock()
        let tolerance = NegotiationMessage.timestampToleranceMilliseconds
        if envelope.timestamp < now - tolerance || envelope.timestamp > now + tolerance {
            return reject(.stale, peer, "timestamp \(envelope.timestamp) is more than \(tolerance) ms from ours (\(now)): are both clocks synchronised?")
        }
        guard let nonce = NonceCache.Nonce(envelope.nonce) else {
            return reject(.malformed, peer, "bad nonce")  // decode already checked it
        }
        if checks.withLock({ $0.nonces.admit(nonce, timestamp: envelope.timestamp, now: now) }) == .replayed {
            return reject(.replayed, peer, "nonce \(envelope.nonce) was already used")
        }
        guard envelope.version == NegotiationMessage.version else {
            return reject(.malformed, peer, "version \(envelope.version), expected \(NegotiationMessage.version)")
        }
        guard case .negotiate(let request) = envelope.body else {
            return reject(.malformed, peer, "type \"\(envelope.body.type)\", expected \"negotiate\"")
        }
        let body: NegotiationMessage.Body
        switch handler(request, peer) {
        case .accepted(let virtualPort) where virtualPort != 0:
            body = .ack(inReplyTo: envelope.nonce, virtualPort: virtualPort)
            checks.withLock { $0.statistics.accepted += 1 }
        case .accepted:
            body = .nak(inReplyTo: envelope.nonce, reason: "the server engine chose virtual port 0")
            checks.withLock { $0.statistics.refused += 1 }
        case .refused(let reason), .failed(let reason):
            body = .nak(inReplyTo: envelope.nonce, reason: Self.shortened(reason))
            checks.withLock { $0.statistics.refused += 1 }
        }
        let answer = NegotiationMessage.Envelope(nonce: NegotiationMessage.makeNonce(), timestamp: clock(), body: body)
        return NegotiationMessage.encode(answer, key: key)
    }

    /// Counts and reports a rejection; returns nil so callers can `return reject(...)`.
    @discardableResult
    func reject(_ reason: NegotiationRejection, _ peer: String, _ detail: String) -> [UInt8]? {
        checks.withLock { checks in
            switch reason {
            case .malformed: checks.statistics.malformed += 1
            case .forged: checks.statistics.forged += 1
            case .unknownPeer:
                checks.statistics.unknownPeer += 1
                checks.statistics.forged += 1
            case .stale: checks.statistics.stale += 1
            case .replayed: checks.statistics.replayed += 1
            }
        }
        observer?(reason, peer, detail)
        return nil
    }

    /// At most 512 characters without control characters, so any NAK fits in a line.
    static func shortened(_ reason: String) -> String {
        String(String.UnicodeScalarView(reason.unicodeScalars.prefix(512).map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
    }

    private static func explain(_ error: any Error) -> String {
        if let error = error as? IOError {
            switch error.errnoCode {
            case EADDRINUSE: return "the port is in use (is another vpm engine running? or configure another negotiation port)"
            case EACCES: return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            case EADDRNOTAVAIL: return "the address is not on this host (check the configured listen address)"
            default: return "\(error)"
            }
        }
        if error is SocketAddressError {
            return "not an address this host can resolve (\(error))"
        }
        return "\(error)"
    }
}
