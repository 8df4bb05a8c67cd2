public import Packet

/// A well-known port that applications use and vpm multiplexes, with its transport:
/// 9000/tcp and 9000/udp are different ports.
public struct InitialPort: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var port: UInt16
    public var transport: TransportProtocol

    public init(port: UInt16, transport: TransportProtocol = .tcp) {
        self.port = port
        self.transport = transport
    }

    /// Reads "9000" (TCP), "9000/tcp" or "5353/udp"; nil for anything else.
    public init?(_ text: String) {
        guard let parsed = try? Self.parse(text) else { return nil }
        self = parsed
    }

    /// "9000/tcp": always with the transport, so a UDP port is never mistaken for TCP.
    public var description: String {
        "\(port)/\(transport.name)"
    }

    public static func < (lhs: InitialPort, rhs: InitialPort) -> Bool {
        (lhs.port, lhs.transport.rawValue) < (rhs.port, rhs.transport.rawValue)
    }

    static func parse(_ text: String) throws(InvalidValue) -> InitialPort {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let port = try DecimalNumber.port(parts[0])
        guard parts.count == 2 else { return InitialPort(port: port, transport: .tcp) }
        guard let transport = TransportProtocol(name: parts[1].lowercased()) else {
            throw InvalidValue("unknown transport '\(parts[1])' in '\(text)'; write \(port)/tcp or \(port)/udp")
        }
        return InitialPort(port: port, transport: transport)
    }
}
