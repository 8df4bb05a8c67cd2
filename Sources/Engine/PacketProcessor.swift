import FlowTable
public import Netfilter
public import Packet
public import Policy

/// The per-packet decision of the userspace datapath, source-routed mode.
///
/// Arriving (PREROUTING) packets to an initial port: a known flow is rewritten to its
/// virtual port; a connection start is matched to an AID by its source, then to that AID's
/// instance, recorded, and rewritten; anything else is refused. Leaving (OUTPUT) packets
/// from a virtual port: rewritten back to the initial port if their flow is known, else
/// dropped. Runs on the queue thread; allocates nothing and logs nothing.
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

    public init(configuration: Configuration, store: FlowTableStore) {
        self.store = store
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
                                  virtualPort: instance.virtualPort))
        }
        routesGeneration = generation
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
        let checksum: ChecksumState = queued.info.contains(.checksumNotReady) ? .partial : .complete
        let transport = packet.transportProtocol

        let result: Result<Void, PacketError>
        switch queued.hook {
        case Self.preRouting:
            guard isInitialPort[Self.slot(transport, packet.destinationPort)] else { return acceptUnchanged() }
            let key = FlowKey(transport: transport, client: packet.sourceAddress, clientPort: packet.sourcePort,
                              server: packet.destinationAddress, initialPort: packet.destinationPort)
            let decision = admit(key, flags: packet.tcpFlags, bytes: packet.bytes.count, now: now)
            guard case .success(let virtualPort) = decision else {
                if case .failure(let reason) = decision { return refuse(key, reason) }
                return drop(.noFlow)
            }
            result = Result { () throws(PacketError) in try packet.setDestinationPort(virtualPort, checksum: checksum) }
        case Self.localOut:
            let index = targetByVirtualPort[Self.slot(transport, packet.sourcePort)]
            guard index >= 0 else { return drop(.unknownVirtualPort) }
            let initialPort = targets[Int(index)].initialPort
            let key = FlowKey(transport: transport, client: packet.destinationAddress, clientPort: packet.destinationPort,
                              server: packet.sourceAddress, initialPort: initialPort)
            let flags = packet.tcpFlags, bytes = packet.bytes.count
            let known = store.withLock { table -> Bool in
                guard let handle = table.lookup(key) else { return false }
                return table.update(handle, direction: .toClient, tcpFlags: flags, bytes: bytes, now: now) != nil
            }
            guard known else { return drop(.noFlow) }
            result = Result { () throws(PacketError) in try packet.setSourcePort(initialPort, checksum: checksum) }
        default:
            return drop(.wrongHook)
        }
        if case .failure(let error) = result { return drop(DropReason(error)) }
        counters.rewritten &+= 1
        if checksum == .partial { counters.checksumRecomputed &+= 1 } else { counters.checksumIncremental &+= 1 }
        return .acceptModified(length: packet.bytes.count)
    }

    /// Finds or records the flow of an arriving packet. Returns its virtual port, or why
    /// the connection is refused.
    private func admit(_ key: FlowKey, flags: TCPFlags, bytes: Int, now: UInt64) -> Result<UInt16, DropReason> {
        store.withLock { table -> Result<UInt16, DropReason> in
            if let handle = table.lookup(key),
               let update = table.update(handle, direction: .toServer, tcpFlags: flags, bytes: bytes, now: now) {
                return .success(update.virtualPort)
            }
            // Only a connection start may open a flow: a TCP SYN without ACK, or any UDP datagram.
            if key.transport == .tcp && !(flags.contains(.syn) && !flags.contains(.ack)) {
                return .failure(.notConnectionStart)
            }
            guard let aid = matcher.aid(for: key.client, port: key.clientPort) else { return .failure(.noApplication) }
            guard let index = targetByInstance[InstanceKey(aid: aid, initialPort: key.initialPort, transport: key.transport)] else {
                return .failure(.noInstance)
            }
            let target = targets[index]
            switch table.insert(key, virtualPort: target.virtualPort, aid: target.aid, mode: .source, peer: nil, now: now) {
            case .inserted(let handle), .existing(let handle):
                _ = table.update(handle, direction: .toServer, tcpFlags: flags, bytes: bytes, now: now)
                return .success(target.virtualPort)
            case .full:
                return .failure(.tableFull)
            }
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
    private mutating func refuse(_ key: FlowKey, _ reason: DropReason) -> Verdict {
        counters.refused &+= 1
        counters.reasons[reason.rawValue] &+= 1
        lastRefusal = Refusal(client: key.client, clientPort: key.clientPort, initialPort: key.initialPort, reason: reason)
        return Verdict(.accept, mark: RuleSet.refuseMark)
    }
}
