public import FlowTable

/// What to do with one packet, whatever carries the connection's bytes: the decision layer
/// says it, a datapath turns it into a verdict (a rewrite, or a mark for kernel NAT).
public enum Decision: Equatable, Sendable {
    /// Not vpm's, or vpm's and needing no change: accept unchanged.
    case accept
    /// A decided connection's packet to its server: it goes to `virtualPort` (userspace:
    /// rewrite the destination port; kernel: leave with the decision's mark).
    case toVirtualPort(Decided)
    /// A packet from a virtual port back to its client: its source port becomes the initial
    /// port (userspace datapath only; the kernel datapath never queues one).
    case toInitialPort(UInt16)
    /// A negotiated connection arriving on its virtual port (cooperative server side):
    /// unchanged (userspace) or marked (kernel).
    case admit(Decided)
    /// The connection is refused: the rules answer with a TCP reset or ICMP unreachable.
    case refuse
    case drop
    /// Held (a copy is kept) while its connection is negotiated; answered later.
    case hold
}

/// A connection's decision, as the kernel datapath's mark carries it.
public struct Decided: Equatable, Sendable {
    public var mode: FlowMode
    /// The AID's kernel mark slot (1 + its position in `applications:` at start; the engine's
    /// `AIDSlots` give later ones); 0 when unknown.
    public var aidSlot: Int
    public var virtualPort: UInt16
    /// A connection to a fleet's service address: the slot of the host it goes to
    /// (`ServiceRoutes`), whose address the kernel datapath's NAT puts in place of the
    /// service's; 0 otherwise. Only the kernel datapath carries such connections.
    public var hostSlot: Int

    public init(mode: FlowMode, aidSlot: Int, virtualPort: UInt16, hostSlot: Int = 0) {
        self.mode = mode
        self.aidSlot = aidSlot
        self.virtualPort = virtualPort
        self.hostSlot = hostSlot
    }
}
