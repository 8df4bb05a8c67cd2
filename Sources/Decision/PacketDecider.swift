public import FlowTable
public import Packet
public import Policy

/// The per-packet decision, for the three modes, whatever datapath carries the bytes.
///
/// Source-routed: arriving (PREROUTING) packets to an initial port: a known flow is
/// rewritten to its virtual port; a connection start is matched to an AID by its source,
/// then to that AID's instance, recorded, and rewritten; anything else is refused. Leaving
/// (OUTPUT) packets from a virtual port are rewritten back to the initial port.
/// Cooperative: a local client's SYN to a peer's initial port is held (copied) while the
/// engine negotiates; on ACK it leaves rewritten to the granted virtual port, and replies
/// are mapped back; the server side admits to a virtual port only negotiated flows and
/// leaves them on the virtual port. Local: a local client's connection to an initial port
/// over loopback goes to the local instance of its own AID.
/// It returns a `Decision`; the datapath turns it into a verdict (the userspace datapath
/// rewrites the packet, the kernel datapath marks it for kernel NAT). No netfilter, no root:
/// tested with byte fixtures. Runs on the queue thread; logs nothing, and allocates nothing
/// per packet (holding a SYN for a negotiation copies it, once per connection).
public struct PacketDecider {
    /// The last refusal, for the engine's once-a-second log line.
    public struct Refusal: Sendable, Equatable {
        public var client: IPAddress
        public var clientPort: UInt16
        public var initialPort: UInt16
        public var reason: DropReason
    }

    private struct InstanceKey: Hashable {
        var aid: AID
        var initialPort: UInt16
        var transport: TransportProtocol
    }

    private struct Target {
        var aid: AID
        var initialPort: UInt16
        var virtualPort: UInt16
        /// The AID's slot in a kernel mark.
        var slot: Int
    }

    public let store: SharedFlowTable
    public private(set) var counters = EngineCounters()
    public private(set) var lastRefusal: Refusal?
    private var matcher: SourceMatcher
    private let initialPorts: [InitialPort]
    private var targets: [Target] = []
    private var targetByInstance: [InstanceKey: Int] = [:]
    /// Index into `targets` by transport and virtual port (-1: none). Two 64 K tables.
    private var targetByVirtualPort = [Int32](repeating: -1, count: 2 << 16)
    /// Whether a port is a multiplexed initial port, by transport and port.
    private var isInitialPort = [Bool](repeating: false, count: 2 << 16)
    /// The registry generation the routing tables were built from.
    public private(set) var routesGeneration: UInt64 = 0
    private let cooperation: Cooperation
    private let localMode: Bool
    /// A fleet's service addresses: each connection to one is negotiated afresh (which host
    /// it goes to is in its mark only, not in the flow table).
    private let serviceAddresses: Set<IPAddress>
    private let virtualPorts: ClosedRange<UInt16>
    private let clients: ClientSockets
    /// Each AID's kernel mark slot: 1 + its position in `applications:` at start, then as
    /// the engine's `AIDSlots` give them (`updateRoutes`).
    private var slots: [AID: Int]
    /// SYNs held while their connection is negotiated with a peer, by flow.
    private var held: [FlowKey: HeldConnection] = [:]
    private var negotiations: [FlowKey] = []
    /// The packet being decided's `receivedAt` (kept by a held SYN).
    private var currentReceivedAt: UInt64?
    /// Held SYNs count toward the kernel queue's length: bound them.
    static let heldLimit = 1024

    struct HeldConnection {
        var id: UInt32
        var bytes: [UInt8]
        var checksum: ChecksumState
        var aid: AID
        var peer: Int
        var since: UInt64
        /// When the batch that carried it arrived (microseconds), when the caller said.
        var receivedAt: UInt64?
        /// UDP: the flow's later datagrams sent while it is negotiated, in order (a TCP
        /// SYN's retransmission is dropped instead: TCP sends it again).
        var followers: [Follower] = []
    }

    struct Follower {
        var id: UInt32
        var bytes: [UInt8]
        var checksum: ChecksumState
    }

    /// UDP datagrams held behind a negotiated flow's first, at most: a program's burst
    /// before the first answer. Beyond it they are dropped (`retransmittedWhileNegotiating`).
    public static let followerLimit = 64

    public init(configuration: Configuration, store: SharedFlowTable, clients: ClientSockets = ClientSockets()) {
        self.store = store
        self.clients = clients
        slots = Self.slots(configuration)
        cooperation = configuration.cooperation
        localMode = configuration.cooperation.local
        serviceAddresses = Set(configuration.fleet?.services ?? [])
        virtualPorts = configuration.virtualPorts
        matcher = configuration.makeSourceMatcher()
        initialPorts = configuration.initialPorts
        for port in initialPorts { isInitialPort[Self.slot(port.transport, port.port)] = true }
        updateRoutes(configuration.instances, generation: 0)
    }

    /// Rebuilds the routing tables from the registry's instances. Runs on the queue thread
    /// between batches, only when the set of instances changed: never per packet.
    /// `slots`: every AID's kernel mark slot now (applications a reload added, tenants), when
    /// the caller keeps them; nil keeps the ones the configuration gave.
    public mutating func updateRoutes(_ instances: [Instance], generation: UInt64, slots newSlots: [AID: Int]? = nil) {
        if let newSlots { slots = newSlots }
        targets.removeAll(keepingCapacity: true)
        targetByInstance.removeAll(keepingCapacity: true)
        for index in targetByVirtualPort.indices { targetByVirtualPort[index] = -1 }
        for instance in instances {
            let transport = instance.initialPort.transport
            // A draining instance's connections keep their translation both ways; new ones
            // find no instance for their AID.
            if instance.accepting {
                targetByInstance[InstanceKey(aid: instance.aid, initialPort: instance.initialPort.port, transport: transport)] = targets.count
            }
            targetByVirtualPort[Self.slot(transport, instance.virtualPort)] = Int32(targets.count)
            targets.append(Target(aid: instance.aid, initialPort: instance.initialPort.port,
                                  virtualPort: instance.virtualPort, slot: slots[instance.aid] ?? 0))
        }
        routesGeneration = generation
    }

    /// New source rules (a reload): connections that start from now on are matched against
    /// them; recorded flows keep their AID. Between batches, never per packet.
    public mutating func updateSources(_ matcher: SourceMatcher) {
        self.matcher = matcher
    }

    /// The largest AID slot a decision names (the kernel mark has 10 bits for it).
    public static let maximumSlot = 1023

    /// The kernel mark's AID slots at start: 1 + the AID's position in the configuration
    /// (the engine's `AIDSlots` start from these and give later AIDs free ones).
    public static func slots(_ configuration: Configuration) -> [AID: Int] {
        var slots: [AID: Int] = [:]
        for (index, application) in configuration.applications.enumerated() where index < maximumSlot {
            slots[application.aid] = index + 1
        }
        return slots
    }

    private static func slot(_ transport: TransportProtocol, _ port: UInt16) -> Int {
        (transport == .tcp ? 0 : 1 << 16) | Int(port)
    }

    /// Decides one packet. Changes nothing in it: the datapath applies the decision.
    public mutating func decide(_ input: PacketInput, now: UInt64) -> Decision {
        var parsed: IPPacket?
        return decide(input, parsed: &parsed, now: now)
    }

    /// The same, handing back the parsed view (nil when the packet did not parse), so the
    /// datapath rewrites it without parsing it again. `receivedAt`: when the packet's batch
    /// arrived (`MonotonicClock.microseconds`), for timing a held SYN's verdict.
    public mutating func decide(_ input: PacketInput, parsed: inout IPPacket?, now: UInt64,
                                receivedAt: UInt64? = nil) -> Decision {
        currentReceivedAt = receivedAt
        counters.packets &+= 1
        guard !input.isTruncated else { return drop(.truncated) }
        let packet: IPPacket
        do { packet = try IPPacket(input.payload) } catch { return drop(DropReason(error)) }
        parsed = packet
        switch input.hook {
        case .arriving: return arriving(packet, now: now)
        case .leaving(let viaLoopback): return leaving(packet, input, viaLoopback: viaLoopback, now: now)
        case .other: return drop(.wrongHook)
        }
    }

    /// PREROUTING: cooperative traffic to our virtual ports, replies to our cooperative
    /// clients, and source-routed clients of the initial ports.
    private mutating func arriving(_ packet: IPPacket, now: UInt64) -> Decision {
        let transport = packet.transportProtocol
        let source = packet.sourceAddress
        let flags = packet.tcpFlags, bytes = packet.bytes.count
        let target = targetByVirtualPort[Self.slot(transport, packet.destinationPort)]
        let peer = cooperation.peer(for: source)
        if peer != nil, virtualPorts.contains(packet.destinationPort) {
            // Server side of a cooperative flow: it crossed the wire on the virtual port,
            // and only a flow negotiated for this very port may use it.
            guard target >= 0 else { return drop(.notNegotiated) }
            let key = FlowKey(transport: transport, client: source, clientPort: packet.sourcePort,
                              server: packet.destinationAddress, initialPort: targets[Int(target)].initialPort)
            let update = store.update(key, direction: .toServer, flags: flags, bytes: bytes, now: now,
                                      virtualPort: packet.destinationPort)
            guard let update, update.mode == .cooperative else { return drop(.notNegotiated) }
            return .admit(Decided(mode: .cooperative, aidSlot: targets[Int(target)].slot, virtualPort: packet.destinationPort))
        }
        if let peer, peer.virtualPorts.contains(packet.sourcePort) {
            // Client side: a reply from the peer's instance, on its virtual port.
            let virtualPort = packet.sourcePort
            for initial in initialPorts where initial.transport == transport {
                let key = FlowKey(transport: transport, client: packet.destinationAddress, clientPort: packet.destinationPort,
                                  server: source, initialPort: initial.port)
                if store.update(key, direction: .toClient, flags: flags, bytes: bytes, now: now, virtualPort: virtualPort) != nil {
                    return .toInitialPort(initial.port)
                }
            }
            return drop(.noFlow)
        }
        guard isInitialPort[Self.slot(transport, packet.destinationPort)] else { return acceptUnchanged() }
        let key = FlowKey(transport: transport, client: source, clientPort: packet.sourcePort,
                          server: packet.destinationAddress, initialPort: packet.destinationPort)
        switch admit(key, flags: flags, bytes: bytes, now: now) {
        case .success(let virtualPort):
            return translate(packet, to: virtualPort, mode: .source)
        case .failure(let reason):
            return refuse(key, reason)
        }
    }

    /// OUTPUT: replies of our instances, cooperative clients' connections to a peer, and
    /// local clients (local mode).
    private mutating func leaving(_ packet: IPPacket, _ input: PacketInput, viaLoopback: Bool, now: UInt64) -> Decision {
        let transport = packet.transportProtocol
        let flags = packet.tcpFlags, bytes = packet.bytes.count
        let target = targetByVirtualPort[Self.slot(transport, packet.sourcePort)]
        if target >= 0 {
            let initialPort = targets[Int(target)].initialPort
            let key = FlowKey(transport: transport, client: packet.destinationAddress, clientPort: packet.destinationPort,
                              server: packet.sourceAddress, initialPort: initialPort)
            let update = store.update(key, direction: .toClient, flags: flags, bytes: bytes, now: now,
                                      virtualPort: packet.sourcePort)
            guard let update else {
                // A local program talking to the virtual port directly (a health check): not ours.
                return viaLoopback ? acceptUnchanged() : drop(.noFlow)
            }
            // A cooperative flow keeps its virtual port on the wire: the client's engine maps it back.
            if update.mode == .cooperative { return acceptUnchanged() }
            return .toInitialPort(initialPort)
        }
        if virtualPorts.contains(packet.sourcePort) && !viaLoopback {
            // From the range vpm owns, but no instance there: nothing may leave from it.
            return drop(.unknownVirtualPort)
        }
        guard isInitialPort[Self.slot(transport, packet.destinationPort)] else { return acceptUnchanged() }
        let key = FlowKey(transport: transport, client: packet.sourceAddress, clientPort: packet.sourcePort,
                          server: packet.destinationAddress, initialPort: packet.destinationPort)
        // The client's AID decides here, so a reused client port is decided afresh. A
        // service address's connection start always is (the kernel datapath queues only
        // connection starts conntrack calls new; a reused port's old flow may still be open
        // in the table, and the host it went to is not kept there).
        let renew = !serviceAddresses.isEmpty && Self.startsConnection(transport, flags) && serviceAddresses.contains(key.server)
        if let known = store.update(key, direction: .toServer, flags: flags, bytes: bytes, now: now, decideAgain: true, renew: renew) {
            return translate(packet, to: known.virtualPort, mode: known.mode)
        }
        let opens = Self.startsConnection(transport, flags)
        if let peerIndex = cooperation.peers.firstIndex(where: { $0.network.containsAddress(key.server) }) {
            // Cooperative client: hold the SYN and ask the peer's engine. A program that is
            // not under `vpm exec` has no AID: its connection goes out untouched.
            if held[key] != nil {
                // Copies: once per datagram sent in the negotiation's round trip, bounded.
                guard transport == .udp, held[key]!.followers.count < Self.followerLimit else {
                    return drop(.retransmittedWhileNegotiating)
                }
                held[key]!.followers.append(Follower(id: input.id, bytes: Array(packet.bytes), checksum: input.checksum))
                counters.held &+= 1
                return .hold
            }
            guard opens, let aid = clients.aid(transport: transport, address: key.client, port: key.clientPort, now: now) else {
                return acceptUnchanged()
            }
            guard held.count < Self.heldLimit else { return refuse(key, .tooManyNegotiations) }
            held[key] = HeldConnection(id: input.id, bytes: Array(packet.bytes), checksum: input.checksum, aid: aid,
                                       peer: peerIndex, since: now, receivedAt: currentReceivedAt)
            negotiations.append(key)
            counters.held &+= 1
            return .hold
        }
        guard localMode, viaLoopback else { return acceptUnchanged() }
        // Local mode: a local client of the initial port reaches the local instance of its AID.
        guard opens, let aid = clients.aid(transport: transport, address: key.client, port: key.clientPort, now: now) else {
            return acceptUnchanged()
        }
        switch admit(key, aid: aid, mode: .local, peer: nil, flags: flags, bytes: bytes, now: now) {
        case .success(let virtualPort):
            return translate(packet, to: virtualPort, mode: .local)
        case .failure(let reason):
            return refuse(key, reason)
        }
    }

    /// A decided connection's packet to the server. `slot`: the AID's, when the virtual port
    /// is not one of ours.
    private func translate(_ packet: IPPacket, to virtualPort: UInt16, mode: FlowMode, slot: Int? = nil, hostSlot: Int = 0) -> Decision {
        let target = targetByVirtualPort[Self.slot(packet.transportProtocol, virtualPort)]
        let aidSlot = slot ?? (target >= 0 ? targets[Int(target)].slot : 0)
        return .toVirtualPort(Decided(mode: mode, aidSlot: aidSlot, virtualPort: virtualPort, hostSlot: hostSlot))
    }

    /// Finds or records the flow of an arriving packet. Returns its virtual port, or why
    /// the connection is refused.
    private mutating func admit(_ key: FlowKey, flags: TCPFlags, bytes: Int, now: UInt64) -> Result<UInt16, DropReason> {
        if let known = store.update(key, direction: .toServer, flags: flags, bytes: bytes, now: now) {
            return .success(known.virtualPort)
        }
        guard Self.startsConnection(key.transport, flags) else { return .failure(.notConnectionStart) }
        guard let aid = matcher.aid(for: key.client, port: key.clientPort) else { return .failure(.noApplication) }
        return admit(key, aid: aid, mode: .source, peer: nil, flags: flags, bytes: bytes, now: now)
    }

    /// Only a connection start may open a flow: a TCP SYN without ACK, or any UDP datagram.
    private static func startsConnection(_ transport: TransportProtocol, _ flags: TCPFlags) -> Bool {
        transport == .udp || flags.startsConnection
    }

    /// Records a new flow of `aid` to its instance on the key's initial port.
    private mutating func admit(
        _ key: FlowKey, aid: AID, mode: FlowMode, peer: String?, flags: TCPFlags, bytes: Int, now: UInt64
    ) -> Result<UInt16, DropReason> {
        guard let index = targetByInstance[InstanceKey(aid: aid, initialPort: key.initialPort, transport: key.transport)] else {
            return .failure(.noInstance)
        }
        let target = targets[index]
        guard store.record(key, virtualPort: target.virtualPort, aid: target.aid, mode: mode, peer: peer, now: now,
                           firstPacket: (flags, bytes)) else { return .failure(.tableFull) }
        counters.connectionsDecided &+= 1
        return .success(target.virtualPort)
    }

    // MARK: - Cooperative negotiations

    /// Whether SYNs wait for negotiation outcomes (the queue thread's housekeeping then looks
    /// for outcomes too, in case a wake-up went astray).
    public var holdsConnections: Bool { !held.isEmpty }

    /// Keys of SYNs held longer than `limit` milliseconds (their negotiation never answered):
    /// the engine refuses them with `complete(_:virtualPort: nil, …)`.
    public func overdue(now: UInt64, limit: UInt64) -> [FlowKey] {
        held.filter { MonotonicClock.elapsed(since: $0.value.since, now: now) > limit }.map(\.key)
    }

    /// Keys whose SYN was held since the engine last looked: it starts their negotiations.
    public mutating func takeNegotiations() -> [(key: FlowKey, aid: AID, peer: Cooperation.Peer)] {
        defer { negotiations.removeAll(keepingCapacity: true) }
        return negotiations.compactMap { key in held[key].map { (key, $0.aid, cooperation.peers[$0.peer]) } }
    }

    /// A negotiation's outcome: the held SYN goes to the granted virtual port and the flow
    /// is recorded, or the connection is refused; a UDP flow's held later datagrams follow
    /// it in order (dropped when it is refused: one ICMP error answers the client). `send`
    /// gets each held packet's id, its bytes (valid only during the call: apply the
    /// decision there) and the decision. `hostSlot`: a connection to a fleet's service
    /// address goes to that host (`Decided.hostSlot`).
    public mutating func complete(
        _ key: FlowKey, virtualPort: UInt16?, peer: String, hostSlot: Int = 0, now: UInt64,
        send: (_ id: UInt32, _ bytes: UnsafeMutableRawBufferPointer, _ checksum: ChecksumState, Decision) -> Void
    ) {
        guard var connection = held.removeValue(forKey: key) else { return }
        defer {
            if let receivedAt = connection.receivedAt { recordFirstVerdict(since: receivedAt) }
        }
        let slot = slots[connection.aid] ?? 0
        let granted: UInt16? = connection.bytes.withUnsafeMutableBytes { buffer in
            // A port outside the peer's configured range could not be translated back (its
            // replies are not queued, and the kernel datapath's map has no element for it).
            guard let virtualPort, cooperation.peers[connection.peer].virtualPorts.contains(virtualPort) else {
                send(connection.id, buffer, connection.checksum, refuse(key, .negotiationRefused))
                return nil
            }
            guard store.record(key, virtualPort: virtualPort, aid: connection.aid, mode: .cooperative, peer: peer, now: now,
                               firstPacket: ([.syn], buffer.count)) else {
                send(connection.id, buffer, connection.checksum, refuse(key, .tableFull))
                return nil
            }
            counters.connectionsDecided &+= 1
            let packet: IPPacket
            do throws(PacketError) { packet = try IPPacket(buffer) } catch {
                send(connection.id, buffer, connection.checksum, drop(DropReason(error)))
                return virtualPort
            }
            send(connection.id, buffer, connection.checksum, translate(packet, to: virtualPort, mode: .cooperative, slot: slot, hostSlot: hostSlot))
            return virtualPort
        }
        for var follower in connection.followers {
            let (id, checksum) = (follower.id, follower.checksum)
            follower.bytes.withUnsafeMutableBytes { buffer in
                guard let granted else {
                    send(id, buffer, checksum, drop(.negotiationRefused))
                    return
                }
                let packet: IPPacket
                do throws(PacketError) { packet = try IPPacket(buffer) } catch {
                    send(id, buffer, checksum, drop(DropReason(error)))
                    return
                }
                _ = store.update(key, direction: .toServer, flags: [], bytes: buffer.count, now: now)
                send(id, buffer, checksum, translate(packet, to: granted, mode: .cooperative, slot: slot, hostSlot: hostSlot))
            }
        }
    }

    /// A connection's first packet got its verdict: it waited since `receivedAt`.
    public mutating func recordFirstVerdict(since receivedAt: UInt64) {
        let now = MonotonicClock.microseconds()
        counters.firstVerdict.record(microseconds: now > receivedAt ? now - receivedAt : 0)
    }

    private mutating func acceptUnchanged() -> Decision {
        counters.acceptedUnchanged &+= 1
        return .accept
    }

    private mutating func drop(_ reason: DropReason) -> Decision {
        counters.count(dropped: reason)
        return .drop
    }

    /// The rules answer a refused connection with a TCP reset or an ICMP port unreachable,
    /// built by the kernel.
    private mutating func refuse(_ key: FlowKey, _ reason: DropReason) -> Decision {
        counters.refused &+= 1
        counters.connectionsDecided &+= 1
        counters.reasons[reason.rawValue] &+= 1
        lastRefusal = Refusal(client: key.client, clientPort: key.clientPort, initialPort: key.initialPort, reason: reason)
        return .refuse
    }
}
