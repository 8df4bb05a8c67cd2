import Decision
import Crypto
import Fleet
import FlowTable
import Foundation
import Logging
import Negotiation
import Netfilter
import Packet
import Policy
import Synchronization

/// The engine's side of the cooperative mode: the negotiation server (peers ask us for
/// virtual ports) and client (we ask peers for theirs), and the hand-over of answers to
/// the queue thread, which owns the held SYNs.
final class CooperationService: Sendable {
    struct Outcome: Sendable {
        var key: FlowKey
        var answer: NegotiationAnswer
        var peer: String
        /// A connection to a service address: the slot of the host it goes to (0: none).
        var hostSlot = 0
    }

    private let configuration: Configuration
    private let client: NegotiationClient?
    private let server: NegotiationServer?
    /// Outcomes by queue worker: a held SYN is answered on the thread that holds it, which
    /// its queue's wake-up rouses as soon as an outcome is recorded.
    private let outcomes: Mutex<[(waiting: [Outcome], wakeup: QueueWakeup?)]>
    private let logger: Logger
    /// A fleet's directory: the engine port and key of each fleet host (`fleet:`).
    private let fleet: FleetMember?
    /// The hosts behind the fleet's service addresses; nil without the kernel datapath,
    /// which alone can carry such connections (its NAT rewrites the address).
    let services: ServiceRoutes?
    /// New connections through a service address, spread over the hosts in turn.
    private let turn = Atomic<UInt64>(0)

    init(configuration: Configuration, store: SharedFlowTable, registry: InstanceRegistry, workers: Int, fleet: FleetMember?,
         services: ServiceRoutes?, logger: Logger) {
        self.configuration = configuration
        self.fleet = fleet
        self.services = services
        outcomes = Mutex(Array(repeating: ([], nil), count: max(1, workers)))
        self.logger = logger
        let cooperation = configuration.cooperation
        // Anyone who reaches the port can cause a rejection; an authenticated peer a refusal.
        let rejections = LogLimiter(), refusals = LogLimiter()
        client = cooperation.peers.isEmpty ? nil : NegotiationClient()
        let endpoints = cooperation.listeners.map { NegotiationServer.Endpoint(host: $0.address?.description, port: Int($0.port)) }
        server = endpoints.isEmpty ? nil : NegotiationServer(endpoints: endpoints, keys: { address in
            guard let address = IPAddress(address), let peer = cooperation.peer(for: address) else { return [] }
            // A fleet's engines: ours and the peer's keys, each also the previous one for a
            // lease after a rotation (docs/fleet.md).
            return peer.fromFleet ? fleet?.acceptedKeys(at: address) ?? [] : [SymmetricKey(data: peer.key)]
        }, handler: { request, peerAddress in
            Self.answer(request, peerAddress: peerAddress, cooperation: cooperation, fleet: fleet, store: store, registry: registry) {
                logger.log(limitedBy: refusals, level: .notice, "negotiation refused: no instance", metadata: $0)
            }
        }, rejected: { reason, peerAddress, detail in
            logger.log(limitedBy: rejections, level: .warning, "negotiation rejected",
                       metadata: ["reason": "\(reason)", "peer": "\(peerAddress)", "detail": "\(detail)"])
        })
    }

    func start() throws {
        try server?.start()
        let listeners = configuration.cooperation.listeners
        if !listeners.isEmpty {
            logger.info("negotiation server listening", metadata: ["on": "\(listeners.map(\.description).joined(separator: " "))",
                                                                   "peers": "\(configuration.cooperation.peers.count)"])
        }
    }

    func stop() {
        server?.stop()
        client?.stop()
    }

    /// Server-side negotiations by outcome, for `vpm stats`.
    var serverCounts: [String: UInt64] {
        guard let statistics = server?.statistics else { return [:] }
        return ["accepted": statistics.accepted, "refused": statistics.refused, "malformed": statistics.malformed,
                "forged": statistics.forged, "unknownPeer": statistics.unknownPeer, "stale": statistics.stale,
                "replayed": statistics.replayed]
    }

    /// Starts a negotiation for a held SYN; its outcome is collected by `takeOutcomes`.
    func negotiate(_ key: FlowKey, aid: AID, peer: Cooperation.Peer, worker: Int) {
        guard let client else { return }
        let request = Self.request(key, aid: aid, server: key.server)
        let engine = "\(key.server)"
        var port = peer.enginePort, secret = SymmetricKey(data: peer.key)
        if peer.fromFleet, let fleet, fleet.settings.services.contains(key.server) {
            negotiateThroughService(key, aid: aid, peer: peer, fleet: fleet, worker: worker)
            return
        }
        if peer.fromFleet {
            // No live engine of the fleet at that address: refused at once, as a NAK would be.
            guard let member = fleet?.peer(at: key.server) else {
                let claimed = fleet?.view.conflicts[key.server.description]
                let reason = claimed.map { "the engines \($0.joined(separator: " and ")) both publish \(key.server): neither is used until one withdraws it" }
                    ?? "no engine of the fleet publishes \(key.server)"
                record(Outcome(key: key, answer: .refused(reason: reason), peer: peer.engineLabel(key.server)), worker: worker)
                return
            }
            (port, secret) = (member.port, member.key)
        }
        let label = key.server.endpoint(port)
        client.negotiate(request, engine: engine, port: Int(port), key: secret,
                         timeout: .milliseconds(Int64(configuration.cooperation.timeoutMilliseconds))) { answer in
            self.record(Outcome(key: key, answer: answer, peer: label), worker: worker)
        }
    }

    /// What the engine at `server` is asked for `key`'s client (`server` is a fleet host's
    /// address when the client dialled a service address).
    private static func request(_ key: FlowKey, aid: AID, server: IPAddress) -> NegotiationRequest {
        NegotiationRequest(aid: aid.name, client: "\(key.client)", clientPort: key.clientPort, server: "\(server)",
                           initialPort: key.initialPort, transport: key.transport.name)
    }

    /// A connection to a fleet's service address: the live hosts with an instance of the
    /// client's AID take new connections in turn; a host whose engine does not answer is
    /// passed over for the next while the time allows. The flow keeps the service address
    /// as its server (what the program dialled); the kernel's NAT sends it to the host.
    private func negotiateThroughService(_ key: FlowKey, aid: AID, peer: Cooperation.Peer, fleet: FleetMember, worker: Int) {
        let label = peer.engineLabel(key.server)
        guard let client, let services else {
            record(Outcome(key: key, answer: .refused(reason: "a service address needs the kernel datapath (this engine runs the userspace one)"),
                           peer: label), worker: worker)
            return
        }
        let serving = fleet.engines(serving: aid.name, port: key.initialPort, transport: key.transport.name, ipv4: key.server.isIPv4)
        guard !serving.isEmpty else {
            record(Outcome(key: key, answer: .refused(reason: "no live engine of the fleet serves AID '\(aid)' on \(key.initialPort)/\(key.transport.name)"),
                           peer: label), worker: worker)
            return
        }
        let first = Int(turn.add(1, ordering: .relaxed).newValue % UInt64(serving.count))
        let hosts = Array(serving[first...] + serving[..<first])
        let timeout = Int64(configuration.cooperation.timeoutMilliseconds)
        let started = MonotonicClock.milliseconds()
        @Sendable func attempt(_ index: Int) {
            let host = hosts[index]
            let request = Self.request(key, aid: aid, server: host.address)
            let left = max(1, timeout - Int64(MonotonicClock.elapsed(since: started, now: MonotonicClock.milliseconds())))
            client.negotiate(request, engine: "\(host.address)", port: Int(host.port), key: SymmetricKey(data: host.key), timeout: .milliseconds(left)) { answer in
                let label = host.address.endpoint(host.port)
                switch answer {
                case .accepted:
                    // The host's slot in the nft map; normally given ahead, when the host joined.
                    guard let slot = services.slot(for: host.address) else {
                        self.record(Outcome(key: key, answer: .refused(reason: "no slot for the host \(host.address) in the nft map service4/6 (nft failed, or 1,023 hosts were seen: restart the engine)"),
                                            peer: label), worker: worker)
                        return
                    }
                    self.record(Outcome(key: key, answer: answer, peer: label, hostSlot: slot), worker: worker)
                // A host that does not answer, or refuses (its instance just left; the view
                // lags by a watch event): the next one, while the time allows.
                case .failed, .refused:
                    if index + 1 < hosts.count, MonotonicClock.elapsed(since: started, now: MonotonicClock.milliseconds()) < UInt64(timeout) {
                        attempt(index + 1)
                    } else {
                        self.record(Outcome(key: key, answer: answer, peer: label), worker: worker)
                    }
                }
            }
        }
        attempt(0)
    }

    /// The wake-up of queue worker `worker`'s thread, signalled with each of its outcomes.
    func attach(_ wakeup: QueueWakeup, worker: Int) {
        outcomes.withLock { $0[worker].wakeup = wakeup }
    }

    private func record(_ outcome: Outcome, worker: Int) {
        let wakeup = outcomes.withLock { outcomes in
            outcomes[worker].waiting.append(outcome)
            return outcomes[worker].wakeup
        }
        wakeup?.signal()
    }

    func takeOutcomes(worker: Int) -> [Outcome] {
        outcomes.withLock { outcomes in
            defer { outcomes[worker].waiting.removeAll() }
            return outcomes[worker].waiting
        }
    }

    /// A peer's NEGOTIATE: its client's AID must have an instance on the initial port here.
    /// The flow is recorded before the ACK leaves, so the SYN that follows is admitted.
    private static func answer(
        _ request: NegotiationRequest, peerAddress: String, cooperation: Cooperation, fleet: FleetMember?, store: SharedFlowTable,
        registry: InstanceRegistry, logRefusal: (Logger.Metadata) -> Void
    ) -> NegotiationAnswer {
        guard let client = IPAddress(request.client), let server = IPAddress(request.server),
              let transport = TransportProtocol(name: request.transport) else {
            return .refused(reason: "malformed addresses or transport")
        }
        guard let peer = IPAddress(peerAddress).flatMap({ cooperation.peer(for: $0) }), peer.network.containsAddress(client) else {
            return .refused(reason: "client \(request.client) is not in the network of peer \(peerAddress)")
        }
        // A fleet's network holds every host: an engine speaks for the clients of its own
        // host only, the addresses it publishes, as a configured peer for its network.
        if peer.fromFleet, let address = IPAddress(peerAddress) {
            guard let engine = fleet?.view.engine(at: address), engine.addresses.compactMap(IPAddress.init).contains(client) else {
                return .refused(reason: "client \(request.client) is not an address the engine at \(peerAddress) publishes in the fleet")
            }
        }
        guard let aid = AID(request.aid) else {
            return .refused(reason: "'\(request.aid)' is not an AID")
        }
        // Tenants are this host's alone: local mode reaches them, no peer does.
        guard !registry.tenants.contains(aid) else {
            logRefusal(["peer": "\(peerAddress)", "aid": "\(request.aid)", "port": "\(request.initialPort)/\(request.transport)"])
            return .refused(reason: "no instance of AID '\(request.aid)' on \(request.initialPort)/\(request.transport)")
        }
        guard let virtualPort = registry.virtualPort(aid: aid, initialPort: request.initialPort, transport: transport) else {
            logRefusal(["peer": "\(peerAddress)", "aid": "\(request.aid)", "port": "\(request.initialPort)/\(request.transport)"])
            return .refused(reason: "no instance of AID '\(request.aid)' on \(request.initialPort)/\(request.transport)")
        }
        let key = FlowKey(transport: transport, client: client, clientPort: request.clientPort, server: server,
                          initialPort: request.initialPort)
        let now = MonotonicClock.milliseconds()
        guard store.record(key, virtualPort: virtualPort, aid: aid, mode: .cooperative, peer: peerAddress,
                           now: now, replacing: true) else { return .refused(reason: "flow table full") }
        return .accepted(virtualPort: virtualPort)
    }
}

extension Cooperation.Peer {
    /// The peer engine on the host `server`, as flows name it (`vpm flows`' PEER column): the
    /// negotiation and a flow rebuilt from conntrack must spell it the same way.
    func engineLabel(_ server: IPAddress) -> String {
        server.endpoint(enginePort)
    }
}
