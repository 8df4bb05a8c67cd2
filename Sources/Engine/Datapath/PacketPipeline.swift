public import Decision
public import FlowTable
public import Netfilter
import Packet
public import Policy

/// A queue thread's per-packet work: the decision layer decides, the datapath turns the
/// decision into a verdict. Also what the tests and the micro-benchmark drive, so they run
/// exactly the code the engine runs.
public struct PacketPipeline {
    public private(set) var decider: PacketDecider
    private let datapath: any PacketDatapath
    /// What the datapath did (rewrites, marks, checksums); the decider counts the rest.
    private var datapathCounters = EngineCounters()

    public init(configuration: Configuration, store: SharedFlowTable, clients: ClientSockets = ClientSockets(),
                datapath: Datapath = .userspace) {
        decider = PacketDecider(configuration: configuration, store: store, clients: clients)
        self.datapath = datapath.implementation
    }

    public var counters: EngineCounters { decider.counters.adding(datapathCounters) }
    public var store: SharedFlowTable { decider.store }
    public var routesGeneration: UInt64 { decider.routesGeneration }
    public var lastRefusal: PacketDecider.Refusal? { decider.lastRefusal }
    var holdsConnections: Bool { decider.holdsConnections }

    public mutating func updateRoutes(_ instances: [Instance], generation: UInt64, slots: [AID: Int]? = nil) {
        decider.updateRoutes(instances, generation: generation, slots: slots)
    }

    public mutating func updateSources(_ matcher: SourceMatcher) { decider.updateSources(matcher) }

    /// Decides one queued packet and returns its verdict; rewrites it in place when the
    /// datapath translates it. `receivedAt`: when its batch arrived
    /// (`MonotonicClock.microseconds`); given, a connection's first packet is timed
    /// (`EngineCounters.firstVerdict`) — one clock read per new connection, none otherwise.
    public mutating func process(_ queued: QueuedPacket, now: UInt64, receivedAt: UInt64? = nil) -> Verdict {
        let input = PacketInput(queued)
        var packet: IPPacket?
        let decided = decider.counters.connectionsDecided
        let decision = decider.decide(input, parsed: &packet, now: now, receivedAt: receivedAt)
        let verdict = datapath.verdict(for: decision, packet: &packet, payload: queued.payload, checksum: input.checksum,
                                       counters: &datapathCounters)
        if let receivedAt, decider.counters.connectionsDecided != decided { decider.recordFirstVerdict(since: receivedAt) }
        return verdict
    }

    public mutating func takeNegotiations() -> [(key: FlowKey, aid: AID, peer: Cooperation.Peer)] {
        decider.takeNegotiations()
    }

    public func overdue(now: UInt64, limit: UInt64) -> [FlowKey] { decider.overdue(now: now, limit: limit) }

    /// A negotiation's outcome for a held SYN: `send` gets the packet and its final verdict.
    public mutating func complete(
        _ key: FlowKey, virtualPort: UInt16?, peer: String, hostSlot: Int = 0, now: UInt64, send: (QueuedPacket, Verdict) -> Void
    ) {
        let datapath = self.datapath
        var counters = EngineCounters()
        decider.complete(key, virtualPort: virtualPort, peer: peer, hostSlot: hostSlot, now: now) { id, bytes, checksum, decision in
            var packet: IPPacket?
            let verdict = datapath.verdict(for: decision, packet: &packet, payload: bytes, checksum: checksum, counters: &counters)
            send(QueuedPacket(id: id, hardwareProtocol: 0, hook: 3, mark: nil, payload: bytes, originalLength: bytes.count,
                              info: checksum == .partial ? .checksumNotReady : []), verdict)
        }
        datapathCounters = datapathCounters.adding(counters)
    }
}
