/// One direction of a conntrack entry. Addresses are in network byte order: 4 bytes for
/// IPv4, 16 for IPv6. Ports are in host order; 0 for a protocol without ports (ICMP).
public struct ConntrackTuple: Sendable, Equatable, Hashable {
    public var source: [UInt8]
    public var destination: [UInt8]
    public var sourcePort: UInt16
    public var destinationPort: UInt16

    public init(source: [UInt8], destination: [UInt8], sourcePort: UInt16, destinationPort: UInt16) {
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
    }
}

/// One connection as the kernel's conntrack table holds it (a dump entry or an event).
public struct ConntrackEntry: Sendable, Equatable, Hashable {
    /// CTA_ID: the kernel's id of the entry, stable while it lives.
    public var id: UInt32
    /// The IP protocol number: 6 TCP, 17 UDP (other protocols are reported too).
    public var protocolNumber: UInt8
    /// The direction of the first packet.
    public var original: ConntrackTuple
    /// The direction of the answers (after NAT, what the reply packets carry).
    public var reply: ConntrackTuple
    /// The connection mark (`ct mark`); 0 when none is set.
    public var mark: UInt32
    /// The kernel's TCP_CONNTRACK_* state (3 = ESTABLISHED, 7 = TIME_WAIT, ...). nil for
    /// other protocols, and for an update event that did not carry the TCP state.
    public var tcpState: UInt8?
    /// Counters need `net.netfilter.nf_conntrack_acct=1` when the entry was made; otherwise 0.
    /// The kernel sends them in dumps and destroy events, not in new/update events.
    public var originalPackets: UInt64
    public var originalBytes: UInt64
    public var replyPackets: UInt64
    public var replyBytes: UInt64
    /// IPS_ASSURED: traffic was seen both ways (early drop will not pick this entry).
    public var isAssured: Bool
    /// CTA_TIMEOUT: seconds until the entry expires unless a packet comes (rounded down);
    /// nil when the message did not carry it.
    public var timeout: UInt32?

    public init(
        id: UInt32, protocolNumber: UInt8, original: ConntrackTuple, reply: ConntrackTuple,
        mark: UInt32 = 0, tcpState: UInt8? = nil,
        originalPackets: UInt64 = 0, originalBytes: UInt64 = 0, replyPackets: UInt64 = 0, replyBytes: UInt64 = 0,
        isAssured: Bool = false, timeout: UInt32? = nil
    ) {
        self.id = id
        self.protocolNumber = protocolNumber
        self.original = original
        self.reply = reply
        self.mark = mark
        self.tcpState = tcpState
        self.originalPackets = originalPackets
        self.originalBytes = originalBytes
        self.replyPackets = replyPackets
        self.replyBytes = replyBytes
        self.isAssured = isAssured
        self.timeout = timeout
    }

    /// Whether `mark & mask == wanted & mask`, the test `Conntrack.dump(mark:mask:)` applies.
    public func matches(mark wanted: UInt32, mask: UInt32) -> Bool {
        mark & mask == wanted & mask
    }
}
