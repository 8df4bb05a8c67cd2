/// Idle timeouts per state, in milliseconds: a flow whose last packet is at least this old
/// is expired (`now - lastSeen >= timeout`). The configuration (Policy) reads them from the
/// file in seconds into this same type.
public struct FlowTimeouts: Sendable, Equatable, Hashable, Codable {
    public var opening: UInt64
    public var established: UInt64
    public var closing: UInt64
    public var closed: UInt64
    public var udp: UInt64
    public var udpStream: UInt64

    public init(
        opening: UInt64 = FlowTimeouts.standard.opening, established: UInt64 = FlowTimeouts.standard.established,
        closing: UInt64 = FlowTimeouts.standard.closing, closed: UInt64 = FlowTimeouts.standard.closed,
        udp: UInt64 = FlowTimeouts.standard.udp, udpStream: UInt64 = FlowTimeouts.standard.udpStream
    ) {
        self.opening = opening
        self.established = established
        self.closing = closing
        self.closed = closed
        self.udp = udp
        self.udpStream = udpStream
    }

    /// Close to conntrack's defaults: 30 s, 5 days, 2 min, 10 s, 30 s, 3 min.
    public static let standard = FlowTimeouts(
        opening: 30_000,
        established: 5 * 24 * 3_600_000,
        closing: 120_000,
        closed: 10_000,
        udp: 30_000,
        udpStream: 180_000
    )

    /// The idle timeout of `state`.
    public func timeout(for state: FlowState) -> UInt64 {
        switch state {
        case .opening: opening
        case .established: established
        case .closing: closing
        case .closed: closed
        case .udp: udp
        case .udpStream: udpStream
        }
    }
}
