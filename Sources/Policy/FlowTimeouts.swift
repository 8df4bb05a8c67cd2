/// How long an idle flow is kept, per state, in whole seconds (what the configuration file
/// can express; the flow table converts to its own unit).
public struct FlowTimeouts: Sendable, Equatable, Hashable {
    /// TCP after the SYN, before the handshake completes.
    public var opening: UInt32
    public var established: UInt32
    /// TCP after the first FIN.
    public var closing: UInt32
    /// TCP after the last FIN is acknowledged, or after a RST.
    public var closed: UInt32
    /// UDP that has seen packets in one direction only.
    public var udp: UInt32
    /// UDP that has seen replies.
    public var udpStream: UInt32

    public init(
        opening: UInt32 = FlowTimeouts.standard.opening,
        established: UInt32 = FlowTimeouts.standard.established,
        closing: UInt32 = FlowTimeouts.standard.closing,
        closed: UInt32 = FlowTimeouts.standard.closed,
        udp: UInt32 = FlowTimeouts.standard.udp,
        udpStream: UInt32 = FlowTimeouts.standard.udpStream
    ) {
        self.opening = opening
        self.established = established
        self.closing = closing
        self.closed = closed
        self.udp = udp
        self.udpStream = udpStream
    }

    /// Close to conntrack's defaults, and the same as the flow table's: 30s, 5d, 2m, 10s, 30s, 3m.
    public static let standard = FlowTimeouts(
        opening: 30, established: 5 * 86_400, closing: 120, closed: 10, udp: 30, udpStream: 180
    )
}
