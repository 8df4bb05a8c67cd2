/// One recorded flow, as the control plane sees it: who talks to which instance, in which
/// state, since when, how much.
public struct Translation: Sendable, Equatable {
    public var key: FlowKey
    /// The port that really carries the flow's traffic at the server.
    public var virtualPort: UInt16
    /// The AID of the instance the flow belongs to.
    public var aid: AID
    public var mode: FlowMode
    /// The peer engine that negotiated the flow (cooperative mode), else nil.
    public var peer: String?
    public var state: FlowState
    /// Monotonic milliseconds of the flow's first packet (of the latest reuse of its key).
    public var firstSeen: UInt64
    /// Monotonic milliseconds of the flow's latest packet.
    public var lastSeen: UInt64
    public var counters: FlowCounters

    public init(
        key: FlowKey, virtualPort: UInt16, aid: AID, mode: FlowMode, peer: String?,
        state: FlowState, firstSeen: UInt64, lastSeen: UInt64, counters: FlowCounters
    ) {
        self.key = key
        self.virtualPort = virtualPort
        self.aid = aid
        self.mode = mode
        self.peer = peer
        self.state = state
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.counters = counters
    }
}
