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
    /// ENOBUFS on the queue socket: the kernel could not hand us packets.
    public var receiveBufferOverruns: UInt64 = 0
    /// From /proc/net/netfilter/nfnetlink_queue: dropped because the queue was full ...
    public var kernelQueueDropped: UInt64 = 0
    /// ... and because the netlink socket could not take them.
    public var kernelUserDropped: UInt64 = 0
    public var flowsActive: Int = 0
    public var flowsInserted: UInt64 = 0
    public var flowsExpired: UInt64 = 0
    /// Half-open flows pushed out to make room (SYN flood protection).
    public var flowsEvicted: UInt64 = 0
    /// New flows refused because the table was full of established flows.
    public var flowsRefusedFull: UInt64 = 0
    public var flowCapacity: Int = 0
    /// Why packets were dropped or refused, by reason: keyed by the reason's identifier
    /// (`noApplication`, `tableFull`, … — `DropReason.identifier`).
    public var reasons: [String: UInt64] = [:]
    /// Cooperative mode, server side: negotiations by outcome (accepted, refused, malformed,
    /// forged, unknownPeer, stale, replayed).
    public var negotiations: [String: UInt64] = [:]

    public init() {}

    /// Every counter is optional on the wire: a `vpm stats` newer than the running engine
    /// (an upgrade whose engine has not restarted yet) shows 0 for a counter the engine does
    /// not have yet, instead of failing to read the answer.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ absent: T) throws -> T {
            try container.decodeIfPresent(T.self, forKey: key) ?? absent
        }
        packetsQueued = try value(.packetsQueued, packetsQueued)
        rewritten = try value(.rewritten, rewritten)
        marked = try value(.marked, marked)
        acceptedUnchanged = try value(.acceptedUnchanged, acceptedUnchanged)
        dropped = try value(.dropped, dropped)
        refused = try value(.refused, refused)
        checksumIncremental = try value(.checksumIncremental, checksumIncremental)
        checksumRecomputed = try value(.checksumRecomputed, checksumRecomputed)
        held = try value(.held, held)
        receiveBufferOverruns = try value(.receiveBufferOverruns, receiveBufferOverruns)
        kernelQueueDropped = try value(.kernelQueueDropped, kernelQueueDropped)
        kernelUserDropped = try value(.kernelUserDropped, kernelUserDropped)
        flowsActive = try value(.flowsActive, flowsActive)
        flowsInserted = try value(.flowsInserted, flowsInserted)
        flowsExpired = try value(.flowsExpired, flowsExpired)
        flowsEvicted = try value(.flowsEvicted, flowsEvicted)
        flowsRefusedFull = try value(.flowsRefusedFull, flowsRefusedFull)
        flowCapacity = try value(.flowCapacity, flowCapacity)
        reasons = try value(.reasons, reasons)
        negotiations = try value(.negotiations, negotiations)
    }
}
