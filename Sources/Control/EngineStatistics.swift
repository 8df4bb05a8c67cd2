/// The engine's counters, as `vpm stats` shows them.
public struct EngineStatistics: Codable, Sendable, Equatable {
    /// Packets the kernel queued to the engine.
    public var packetsQueued: UInt64 = 0
    /// Packets whose ports were rewritten.
    public var rewritten: UInt64 = 0
    /// Kernel datapath: connections handed to kernel NAT with a decision's mark.
    public var marked: UInt64 = 0
    /// Packets accepted without a change (not the engine's business).
    public var acceptedUnchanged: UInt64 = 0
    /// Packets dropped: no flow, malformed, truncated, or aimed at a virtual port directly.
    public var dropped: UInt64 = 0
    /// New connections refused (RST or ICMP): no AID matches the source, or no instance.
    public var refused: UInt64 = 0
    /// Rewrites that used the RFC 1624 incremental update (complete checksum present).
    public var checksumIncremental: UInt64 = 0
    /// Rewrites that recomputed the checksum (NFQA_SKB_CSUMNOTREADY).
    public var checksumRecomputed: UInt64 = 0
    /// Cooperative client side: SYNs held while their connection was negotiated.
    public var held: UInt64 = 0
    /// Connection starts decided: a new flow recorded or a refusal (held ones once negotiated).
    public var connectionsDecided: UInt64 = 0
    /// How long those connections' first packets waited for their verdict.
    public var firstVerdict = HistogramRecord()
    /// ENOBUFS on the queue socket: the kernel could not hand us packets.
    public var receiveBufferOverruns: UInt64 = 0
    /// From /proc/net/netfilter/nfnetlink_queue: dropped because the queue was full ...
    public var kernelQueueDropped: UInt64 = 0
    /// ... and because the netlink socket could not take them.
    public var kernelUserDropped: UInt64 = 0
    public var flowsActive: UInt64 = 0
    public var flowsInserted: UInt64 = 0
    public var flowsExpired: UInt64 = 0
    /// Half-open flows pushed out to make room (SYN flood protection).
    public var flowsEvicted: UInt64 = 0
    /// New flows refused because the table was full of established flows.
    public var flowsRefusedFull: UInt64 = 0
    public var flowCapacity: UInt64 = 0
    /// Kernel datapath: source-routed connections the kernel decided from the engine's maps,
    /// learned from conntrack (never queued).
    public var flowsDecidedInKernel: UInt64 = 0
    /// Socket datapath: connection starts its sk_lookup program refused (no AID matches the
    /// client, or its AID has no listening instance), never queued.
    public var flowsRefusedInKernel: UInt64 = 0
    /// Why packets were dropped or refused, by reason: keyed by the reason's identifier
    /// (`noApplication`, `tableFull`, … — `DropReason.identifier`).
    public var reasons: [String: UInt64] = [:]
    /// Socket datapath: `flowsRefusedInKernel` by reason (`noApplication`, `noInstance`).
    public var reasonsInKernel: [String: UInt64] = [:]
    /// Cooperative mode, server side: negotiations by outcome (accepted, refused, malformed,
    /// forged, unknownPeer, stale, replayed).
    public var negotiations: [String: UInt64] = [:]
    /// The fleet membership (`fleet:`), nil without one.
    public var fleet: FleetRecord?

    public init() {}

    /// Every counter is optional on the wire: a `vpm stats` newer than the running engine
    /// (an upgrade whose engine has not restarted yet) shows 0 for a counter the engine does
    /// not have yet, instead of failing to read the answer. The keys come from `counters`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        for counter in Self.counters {
            if let value = try container.decodeIfPresent(UInt64.self, forKey: Key(counter.key)) { self[keyPath: counter.value] = value }
        }
        reasons = try container.decodeIfPresent([String: UInt64].self, forKey: Key("reasons")) ?? [:]
        negotiations = try container.decodeIfPresent([String: UInt64].self, forKey: Key("negotiations")) ?? [:]
        reasonsInKernel = try container.decodeIfPresent([String: UInt64].self, forKey: Key("reasonsInKernel")) ?? [:]
        firstVerdict = try container.decodeIfPresent(HistogramRecord.self, forKey: Key("firstVerdict")) ?? HistogramRecord()
        fleet = try container.decodeIfPresent(FleetRecord.self, forKey: Key("fleet"))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        for counter in Self.counters { try container.encode(self[keyPath: counter.value], forKey: Key(counter.key)) }
        try container.encode(reasons, forKey: Key("reasons"))
        try container.encode(negotiations, forKey: Key("negotiations"))
        if !reasonsInKernel.isEmpty { try container.encode(reasonsInKernel, forKey: Key("reasonsInKernel")) }
        try container.encode(firstVerdict, forKey: Key("firstVerdict"))
        try container.encodeIfPresent(fleet, forKey: Key("fleet"))
    }

    /// The counter `key` names (`EngineStatistics.counters`), nil for an unknown key.
    public subscript(key key: String) -> UInt64? {
        get { Self.counters.first { $0.key == key }.map { self[keyPath: $0.value] } }
        set {
            guard let counter = Self.counters.first(where: { $0.key == key }), let newValue else { return }
            self[keyPath: counter.value] = newValue
        }
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

/// One of the engine's counters, declared once: its JSON key (a stable identifier), the
/// label and help text people read (`vpm stats`, and any exporter), whether it only grows,
/// and where it lives in `EngineStatistics`.
public struct EngineCounter: Sendable {
    public enum Kind: Sendable { case counter, gauge }
    /// Whether each queue worker keeps its own (the metrics endpoint labels it by queue) or
    /// the engine keeps one (the flow table's).
    public enum Scope: Sendable { case queue, engine }

    public let key: String
    public let label: String
    public let help: String
    public let kind: Kind
    public let value: WritableKeyPath<EngineStatistics, UInt64> & Sendable

    public init(key: String, label: String, help: String, kind: Kind, value: WritableKeyPath<EngineStatistics, UInt64> & Sendable) {
        self.key = key
        self.label = label
        self.help = help
        self.kind = kind
        self.value = value
    }

    public var scope: Scope { key.hasPrefix("flow") ? .engine : .queue }
}

extension EngineStatistics {
    /// Every counter, in the order `vpm stats` shows them.
    public static let counters: [EngineCounter] = [
        .init(key: "packetsQueued", label: "packets queued", help: "packets the kernel queued to the engine", kind: .counter, value: \.packetsQueued),
        .init(key: "rewritten", label: "rewritten", help: "packets whose ports were rewritten (userspace datapath)", kind: .counter, value: \.rewritten),
        .init(key: "checksumIncremental", label: "  checksum updated", help: "rewrites that updated a complete checksum (RFC 1624)", kind: .counter, value: \.checksumIncremental),
        .init(key: "checksumRecomputed", label: "  checksum recomputed", help: "rewrites that recomputed a partial checksum (NFQA_SKB_CSUMNOTREADY)", kind: .counter, value: \.checksumRecomputed),
        .init(key: "marked", label: "marked", help: "connections handed to kernel NAT with a decision's mark (kernel datapath)", kind: .counter, value: \.marked),
        .init(key: "acceptedUnchanged", label: "accepted unchanged", help: "packets accepted without a change", kind: .counter, value: \.acceptedUnchanged),
        .init(key: "dropped", label: "dropped", help: "packets dropped: no flow, malformed, truncated, or aimed at a virtual port", kind: .counter, value: \.dropped),
        .init(key: "refused", label: "refused", help: "new connections refused with a reset or ICMP unreachable", kind: .counter, value: \.refused),
        .init(key: "held", label: "held", help: "SYNs held while their connection was negotiated (cooperative client)", kind: .counter, value: \.held),
        .init(key: "connectionsDecided", label: "connections decided", help: "connection starts decided: a new flow recorded, or a refusal", kind: .counter, value: \.connectionsDecided),
        .init(key: "receiveBufferOverruns", label: "ENOBUFS", help: "times the kernel could not hand packets to the queue socket", kind: .counter, value: \.receiveBufferOverruns),
        .init(key: "kernelQueueDropped", label: "kernel queue full", help: "packets the kernel dropped because the queue was full", kind: .counter, value: \.kernelQueueDropped),
        .init(key: "kernelUserDropped", label: "kernel socket full", help: "packets the kernel dropped because the netlink socket was full", kind: .counter, value: \.kernelUserDropped),
        .init(key: "flowsActive", label: "flows active", help: "flows in the flow table", kind: .gauge, value: \.flowsActive),
        .init(key: "flowCapacity", label: "flow capacity", help: "the most flows the table holds", kind: .gauge, value: \.flowCapacity),
        .init(key: "flowsInserted", label: "flows inserted", help: "flows recorded", kind: .counter, value: \.flowsInserted),
        .init(key: "flowsExpired", label: "flows expired", help: "flows removed after their idle timeout", kind: .counter, value: \.flowsExpired),
        .init(key: "flowsEvicted", label: "flows evicted", help: "half-open flows pushed out to make room (SYN flood protection)", kind: .counter, value: \.flowsEvicted),
        .init(key: "flowsRefusedFull", label: "flows refused (table full)", help: "new flows refused because the table was full of established flows", kind: .counter, value: \.flowsRefusedFull),
        .init(key: "flowsDecidedInKernel", label: "flows decided in the kernel", help: "source-routed connections the kernel decided from the engine's maps, never queued (kernel and socket datapaths)", kind: .counter, value: \.flowsDecidedInKernel),
        .init(key: "flowsRefusedInKernel", label: "flows refused in the kernel", help: "connection starts the kernel refused by itself: no AID, or no listening instance (socket datapath)", kind: .counter, value: \.flowsRefusedInKernel),
    ]
}
