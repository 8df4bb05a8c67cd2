public import FlowTable
public import Netfilter
public import Packet
public import Policy

/// The per-packet decision, for the three modes and both datapaths.
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
/// Kernel datapath: only connection starts are queued, and a decision leaves as a mark
/// (`KernelMark`) on the unchanged packet instead of a rewrite; kernel NAT does the rest.
/// Runs on the queue thread; logs nothing, and allocates nothing per packet (holding a
/// SYN for a negotiation copies it, once per connection).
public struct PacketProcessor {
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
        var aid: String
        var initialPort: UInt16
        var virtualPort: UInt16
        /// The AID's slot in a kernel mark.
        var slot: Int
    }

    static let preRouting: UInt8 = 0
    static let localOut: UInt8 = 3

    public let store: FlowTableStore
    public private(set) var counters = EngineCounters()
    public private(set) var lastRefusal: Refusal?
    private let matcher: SourceMatcher
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
    private let virtualPorts: ClosedRange<UInt16>
    private let clients: ClientSockets
    public let datapath: Datapath
    /// 1 + each AID's position in `applications:` (the kernel mark's AID slot).
    private let slots: [String: Int]
    /// SYNs held while their connection is negotiated with a peer, by flow.
    private var held: [FlowKey: HeldConnection] = [:]
    private var negotiations: [FlowKey] = []
    /// The loopback interface is index 1 in every network namespace.
    static let loopbackInterface: UInt32 = 1
    /// Held SYNs count toward the kernel queue's length: bound them.
    static let heldLimit = 1024

    struct HeldConnection {
        var id: UInt32
        var bytes: [UInt8]
        var info: PacketInfo
        var aid: String
        var peer: Int
        var since: UInt64
    }

    public init(configuration: Configuration, store: FlowTableStore, clients: ClientSockets = ClientSockets(),
                datapath: Datapath = .userspace) {
        self.store = store
        self.clients = clients
        self.datapath = datapath
        slots = Self.slots(configuration)
        cooperation = configuration.cooperation
        localMode = configuration.cooperation.local
        virtualPorts = configuration.virtualPorts
        matcher = configuration.makeSourceMatcher()
        initialPorts = configuration.initialPorts
        for port in initialPorts { isInitialPort[Self.slot(port.transport, port.port)] = true }
        updateRoutes(configuration.instances, generation: 0)
    }

    /// Rebuilds the routing tables from the registry's instances. Runs on the queue thread
    /// between batches, only when the set of instances changed: never per packet.
    public mutating func updateRoutes(_ instances: [Instance], generation: UInt64) {
        targets.removeAll(keepingCapacity: true)
        targetByInstance.removeAll(keepingCapacity: true)
        for index in targetByVirtualPort.indices { targetByVirtualPort[index] = -1 }
        for instance in instances {
            let transport = instance.initialPort.transport
            targetByInstance[InstanceKey(aid: instance.aid, initialPort: instance.initialPort.port, transport: transport)] = targets.count
            targetByVirtualPort[Self.slot(transport, instance.virtualPort)] = Int32(targets.count)
            targets.append(Target(aid: instance.aid.name, initialPort: instance.initialPort.port,
                                  virtualPort: instance.virtualPort, slot: slots[instance.aid.name] ?? 0))
        }
        routesGeneration = generation
    }

    /// The kernel mark's AID slots: 1 + the AID's position in the configuration.
    public static func slots(_ configuration: Configuration) -> [String: Int] {
        var slots: [String: Int] = [:]
        for (index, application) in configuration.applications.enumerated() where index < KernelMark.maximumSlot {
            slots[application.aid.name] = index + 1
        }
        return slots
    }

    private static func slot(_ transport: TransportProtocol, _ port: UInt16) -> Int {
        (transport == .tcp ? 0 : 1 << 16) | Int(port)
    }

    /// Decides one queued packet; rewrites it in place when it is to be translated.
    public mutating func process(_ queued: QueuedPacket, now: UInt64) -> Verdict {
        counters.packets &+= 1
        guard !queued.isTruncated else { return drop(.truncated) }
        var packet: IPPacket
        do { packet = try IPPacket(queued.payload) } catch { return drop(DropReason(error)) }
        let checksum = ChecksumState(queued.info)
        switch queued.hook {
        case Self.preRouting: return arriving(&packet, checksum: checksum, now: now)
        case Self.localOut: return leaving(&packet, queued, checksum: checksum, now: now)
        default: return drop(.wrongHook)
        }
    }

    /// PREROUTING: cooperative traffic to our virtual ports, replies to our cooperative
    /// clients, and source-routed clients of the initial ports.
    private mutating func arriving(_ packet: inout IPPacket, checksum: ChecksumState, now: UInt64) -> Verdict {
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
            if datapath == .kernel {
                return mark(KernelMark(mode: .cooperative, slot: targets[Int(target)].slot, virtualPort: packet.destinationPort))
            }
            return acceptUnchanged()
        }
        if let peer, peer.virtualPorts.contains(packet.sourcePort) {
            // Client side: a reply from the peer's instance, on its virtual port.
            let virtualPort = packet.sourcePort
            for initial in initialPorts where initial.transport == transport {
                let key = FlowKey(transport: transport, client: packet.destinationAddress, clientPort: packet.destinationPort,
                                  server: source, initialPort: initial.port)
                if store.update(key, direction: .toClient, flags: flags, bytes: bytes, now: now, virtualPort: virtualPort) != nil {
                    return rewrite(&packet, checksum: checksum) { (packet: inout IPPacket, state) throws(PacketError) in
                        try packet.setSourcePort(initial.port, checksum: state)
                    }
                }
            }
            return drop(.noFlow)
        }
        guard isInitialPort[Self.slot(transport, packet.destinationPort)] else { return acceptUnchanged() }
        let key = FlowKey(transport: transport, client: source, clientPort: packet.sourcePort,
                          server: packet.destinationAddress, initialPort: packet.destinationPort)
        switch admit(key, flags: flags, bytes: bytes, now: now) {
        case .success(let virtualPort):
            return translate(&packet, checksum: checksum, to: virtualPort, mode: .source)
        case .failure(let reason):
            return refuse(key, reason)
        }
    }

    /// OUTPUT: replies of our instances, cooperative clients' connections to a peer, and
    /// local clients (local mode).
    private mutating func leaving(_ packet: inout IPPacket, _ queued: QueuedPacket, checksum: ChecksumState, now: UInt64) -> Verdict {
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
                return queued.outputInterface == Self.loopbackInterface ? acceptUnchanged() : drop(.noFlow)
            }
            // A cooperative flow keeps its virtual port on the wire: the client's engine maps it back.
            if update.mode == .cooperative { return acceptUnchanged() }
            return rewrite(&packet, checksum: checksum) { (packet: inout IPPacket, state) throws(PacketError) in
                try packet.setSourcePort(initialPort, checksum: state)
            }
        }
        if virtualPorts.contains(packet.sourcePort) && queued.outputInterface != Self.loopbackInterface {
            // From the range vpm owns, but no instance there: nothing may leave from it.
            return drop(.unknownVirtualPort)
        }
        guard isInitialPort[Self.slot(transport, packet.destinationPort)] else { return acceptUnchanged() }
        let key = FlowKey(transport: transport, client: packet.sourceAddress, clientPort: packet.sourcePort,
                          server: packet.destinationAddress, initialPort: packet.destinationPort)
        // The client's AID decides here, so a reused client port is decided afresh.
        if let known = store.update(key, direction: .toServer, flags: flags, bytes: bytes, now: now, decideAgain: true) {
            return translate(&packet, checksum: checksum, to: known.virtualPort, mode: known.mode)
        }
        let opens = Self.startsConnection(transport, flags)
        if let peerIndex = cooperation.peers.firstIndex(where: { $0.network.containsAddress(key.server) }) {
            // Cooperative client: hold the SYN and ask the peer's engine. A program that is
            // not under `vpm exec` has no AID: its connection goes out untouched.
            if held[key] != nil { return drop(.retransmittedWhileNegotiating) }
            guard opens, let aid = clients.aid(transport: transport, address: key.client, port: key.clientPort, now: now) else {
                return acceptUnchanged()
            }
            guard held.count < Self.heldLimit else { return refuse(key, .tooManyNegotiations) }
            held[key] = HeldConnection(id: queued.id, bytes: Array(packet.bytes), info: queued.info, aid: aid,
                                       peer: peerIndex, since: now)
            negotiations.append(key)
            counters.held &+= 1
            return .hold
        }
        guard localMode, queued.outputInterface == Self.loopbackInterface else { return acceptUnchanged() }
        // Local mode: a local client of the initial port reaches the local instance of its AID.
        guard opens, let aid = clients.aid(transport: transport, address: key.client, port: key.clientPort, now: now) else {
            return acceptUnchanged()
        }
        switch admit(key, aid: aid, mode: .local, peer: nil, flags: flags, bytes: bytes, now: now) {
        case .success(let virtualPort):
            return translate(&packet, checksum: checksum, to: virtualPort, mode: .local)
        case .failure(let reason):
            return refuse(key, reason)
        }
    }

    /// A decided connection's packet to the server: rewritten to the virtual port
    /// (userspace datapath), or accepted unchanged with the decision's mark for kernel NAT.
    /// `slot`: the AID's, when the virtual port is not one of ours.
    private mutating func translate(
        _ packet: inout IPPacket, checksum: ChecksumState, to virtualPort: UInt16, mode: FlowMode, slot: Int? = nil
    ) -> Verdict {
        let target = targetByVirtualPort[Self.slot(packet.transportProtocol, virtualPort)]
        let aidSlot = slot ?? (target >= 0 ? targets[Int(target)].slot : 0)
        guard datapath == .kernel else {
            // Over lo the packet meets VPM-INPUT's guard, which lets only decided packets
            // reach a virtual port: local mode's carry the decision's mark.
            let decision = mode == .local ? KernelMark(mode: mode, slot: aidSlot, virtualPort: virtualPort).value : nil
            return rewrite(&packet, checksum: checksum, mark: decision) { (packet: inout IPPacket, state) throws(PacketError) in
                try packet.setDestinationPort(virtualPort, checksum: state)
            }
        }
        return mark(KernelMark(mode: mode, slot: aidSlot, virtualPort: virtualPort))
    }

    private mutating func mark(_ mark: KernelMark) -> Verdict {
        counters.marked &+= 1
        return Verdict(.accept, mark: mark.value)
    }

    private mutating func rewrite(
        _ packet: inout IPPacket, checksum: ChecksumState, mark: UInt32? = nil,
        _ change: (inout IPPacket, ChecksumState) throws(PacketError) -> Void
    ) -> Verdict {
        do { try change(&packet, checksum) } catch { return drop(DropReason(error)) }
        counters.rewritten &+= 1
        if checksum == .partial { counters.checksumRecomputed &+= 1 } else { counters.checksumIncremental &+= 1 }
        return .acceptModified(length: packet.bytes.count, mark: mark)
    }

    /// Finds or records the flow of an arriving packet. Returns its virtual port, or why
    /// the connection is refused.
    private func admit(_ key: FlowKey, flags: TCPFlags, bytes: Int, now: UInt64) -> Result<UInt16, DropReason> {
        if let known = store.update(key, direction: .toServer, flags: flags, bytes: bytes, now: now) {
            return .success(known.virtualPort)
        }
        guard Self.startsConnection(key.transport, flags) else { return .failure(.notConnectionStart) }
        guard let aid = matcher.aid(for: key.client, port: key.clientPort) else { return .failure(.noApplication) }
        return admit(key, aid: aid.name, mode: .source, peer: nil, flags: flags, bytes: bytes, now: now)
    }

    /// Only a connection start may open a flow: a TCP SYN without ACK, or any UDP datagram.
    private static func startsConnection(_ transport: TransportProtocol, _ flags: TCPFlags) -> Bool {
        transport == .udp || flags.startsConnection
    }

    /// Records a new flow of `aid` to its instance on the key's initial port.
    private func admit(
        _ key: FlowKey, aid: String, mode: FlowMode, peer: String?, flags: TCPFlags, bytes: Int, now: UInt64
    ) -> Result<UInt16, DropReason> {
        guard let valid = AID(aid),
              let index = targetByInstance[InstanceKey(aid: valid, initialPort: key.initialPort, transport: key.transport)] else {
            return .failure(.noInstance)
        }
        let target = targets[index]
        guard store.record(key, virtualPort: target.virtualPort, aid: target.aid, mode: mode, peer: peer, now: now,
                           firstPacket: (flags, bytes)) else { return .failure(.tableFull) }
        return .success(target.virtualPort)
    }

    // MARK: - Cooperative negotiations

    /// Whether SYNs wait for negotiation outcomes (the queue thread's housekeeping then looks
    /// for outcomes too, in case a wake-up went astray).
    var holdsConnections: Bool { !held.isEmpty }

    /// Keys of SYNs held longer than `limit` milliseconds (their negotiation never answered):
    /// the engine refuses them with `complete(_:virtualPort: nil, …)`.
    public func overdue(now: UInt64, limit: UInt64) -> [FlowKey] {
        held.filter { MonotonicClock.elapsed(since: $0.value.since, now: now) > limit }.map(\.key)
    }

    /// Keys whose SYN was held since the engine last looked: it starts their negotiations.
    public mutating func takeNegotiations() -> [(key: FlowKey, aid: String, peer: Cooperation.Peer)] {
        defer { negotiations.removeAll(keepingCapacity: true) }
        return negotiations.compactMap { key in held[key].map { (key, $0.aid, cooperation.peers[$0.peer]) } }
    }

    /// A negotiation's outcome: the held SYN is rewritten to the granted virtual port and
    /// the flow recorded, or the connection is refused. Returns the packet and its verdict.
    public mutating func complete(
        _ key: FlowKey, virtualPort: UInt16?, peer: String, now: UInt64, send: (QueuedPacket, Verdict) -> Void
    ) {
        guard var connection = held.removeValue(forKey: key) else { return }
        let checksum = ChecksumState(connection.info)
        connection.bytes.withUnsafeMutableBytes { buffer in
            let queued = QueuedPacket(id: connection.id, hardwareProtocol: 0, hook: Self.localOut, mark: nil, payload: buffer,
                                      originalLength: buffer.count, info: connection.info)
            // A port outside the peer's configured range could not be translated back (its
            // replies are not queued, and the kernel datapath's map has no element for it).
            guard let virtualPort, cooperation.peers[connection.peer].virtualPorts.contains(virtualPort) else {
                send(queued, refuse(key, .negotiationRefused))
                return
            }
            guard store.record(key, virtualPort: virtualPort, aid: connection.aid, mode: .cooperative, peer: peer, now: now,
                               firstPacket: ([.syn], buffer.count)) else {
                send(queued, refuse(key, .tableFull))
                return
            }
            var packet: IPPacket
            do throws(PacketError) { packet = try IPPacket(buffer) } catch {
                send(queued, drop(DropReason(error)))
                return
            }
            send(queued, translate(&packet, checksum: checksum, to: virtualPort, mode: .cooperative,
                                   slot: slots[connection.aid] ?? 0))
        }
    }

    private mutating func acceptUnchanged() -> Verdict {
        counters.acceptedUnchanged &+= 1
        return .accept
    }

    private mutating func drop(_ reason: DropReason) -> Verdict {
        counters.dropped &+= 1
        counters.reasons[reason.rawValue] &+= 1
        return .drop
    }

    /// Accepts the packet unchanged with the refuse mark: the VPM-INPUT rule answers it with
    /// a TCP reset or an ICMP port unreachable, built by the kernel.
    @discardableResult
    private mutating func refuse(_ key: FlowKey, _ reason: DropReason) -> Verdict {
        counters.refused &+= 1
        counters.reasons[reason.rawValue] &+= 1
        lastRefusal = Refusal(client: key.client, clientPort: key.clientPort, initialPort: key.initialPort, reason: reason)
        return Verdict(.accept, mark: RuleSet.refuseMark)
    }
}
