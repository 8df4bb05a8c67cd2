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
    /// Why packets were dropped or refused, by reason.
    public var reasons: [String: UInt64] = [:]
    /// Cooperative mode, server side: negotiations by outcome (accepted, refused, malformed,
    /// forged, unknownPeer, stale, replayed).
    public var negotiations: [String: UInt64] = [:]

    public init() {}
}
